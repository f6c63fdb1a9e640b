"""Photo bytes to faces: in this process, or in a pool of processes that no photo can take down.

dlib's detector holds Python's GIL, so threads cannot find faces in two photos at once (tried:
0.78x); processes can. The pool's workers import dlib, NumPy and Pillow, never torch, and are
started with `spawn`, which is safe beside torch's threads. A photo that hangs a worker past the
deadline, or kills it, costs that photo alone: its worker is replaced and the others are run again.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import NamedTuple

from .answers import PhotoAnswer
from .decode import DecodedImage, DecodeLimits, ImageError, decode_image
from .faces import FaceFinder, FaceOptions, FaceSearch
from .resources import DEFAULT_PHOTO_TIMEOUT

__all__ = ["DEFAULT_PHOTO_TIMEOUT", "FacePool", "Searched", "default_workers", "search_photo"]

log = logging.getLogger(__name__)

Found = FaceSearch | PhotoAnswer


class Searched(NamedTuple):
    """One photo's faces (or the answer that says why there are none), and its image when kept for drawing."""

    found: Found
    image: DecodedImage | None = None  # the decoded photo, so that its boxes are drawn without decoding it again


def _failed() -> PhotoAnswer:
    return PhotoAnswer("error", error="Something went wrong reading this photo.", error_kind="Internal")


def _too_long() -> PhotoAnswer:
    return PhotoAnswer(
        "error", error="This photo took too long to look at, so I gave up on it.", error_kind="PhotoTimeout"
    )


def _crashed() -> PhotoAnswer:
    return PhotoAnswer(
        "error", error="This photo made my face finder crash, so I can't answer it.", error_kind="PhotoCrashed"
    )


def search_photo(data: bytes, finder: FaceFinder, limits: DecodeLimits, images_from: int | None = None) -> Searched:
    """The faces in one photo, or the answer that says why it cannot be read.

    The decoded image comes along when the photo has at least `images_from` faces (None: never).
    """
    start = time.perf_counter()
    try:
        image = decode_image(data, limits, first_side=finder.options.detect_side)
        decode_s = time.perf_counter() - start
        search = finder.find(image)
    except ImageError as e:
        return Searched(PhotoAnswer("error", error=str(e), error_kind=type(e).__name__))
    except Exception:  # a photo that breaks a library must not take the others down
        log.exception("unexpected failure reading a photo")
        return Searched(_failed())
    search.decode_s = decode_s
    keep = images_from is not None and len(search.faces) >= images_from
    return Searched(search, image if keep else None)


def default_workers() -> int:
    """One worker per core this process may use, at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


# Each worker's face finders, by kind and options: made once, on the first photo that needs them.
_finders: dict[tuple[type[FaceFinder], FaceOptions], FaceFinder] = {}


def _finder(kind: type[FaceFinder], options: FaceOptions) -> FaceFinder:
    if (kind, options) not in _finders:
        _finders[kind, options] = kind(options)
    return _finders[kind, options]


def _search_in_worker(
    kind: type[FaceFinder], options: FaceOptions, limits: DecodeLimits, images_from: int | None, data: bytes
) -> Searched:
    return search_photo(data, _finder(kind, options), limits, images_from)


def _warm_up(options: FaceOptions) -> None:
    _finder(FaceFinder, options)  # the finder stays in the worker: dlib's objects do not pickle


class FacePool:
    """Finds the faces of several photos in parallel; `search_in_parts` answers in the photos' order.

    `photo_timeout`: seconds a photo may take from the moment it is handed to the pool.
    """

    def __init__(self, workers: int, photo_timeout: float = DEFAULT_PHOTO_TIMEOUT) -> None:
        if not (math.isfinite(photo_timeout) and photo_timeout > 0):
            raise ValueError(f"photo_timeout must be a positive number of seconds, not {photo_timeout!r}")
        self.workers = workers
        self.photo_timeout = photo_timeout
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _pool(self) -> ProcessPoolExecutor:
        if self._closed:
            # After close, no new processes: one started now could outlive the bot's shutdown.
            raise RuntimeError("the face-finding processes were closed")
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._executor

    def start(self, options: FaceOptions | None = None) -> bool:
        """Start every worker now (about a second each), so that the first burst does not wait.

        False when they cannot start (say, no way to spawn processes here): then serve without the pool.
        """
        options = options or FaceOptions()
        try:
            list(self._pool().map(_warm_up, [options] * self.workers))
        except (BrokenProcessPool, OSError) as e:
            log.warning("the face-finding processes could not start (%s); finding faces in one process", e)
            self.close()
            return False
        return True

    def search_in_parts(
        self,
        photos: Sequence[bytes],
        finder: FaceFinder,
        limits: DecodeLimits,
        part_size: int | None = None,
        images_from: int | None = None,
    ) -> Iterator[list[Searched]]:
        """The photos' faces, found as `finder` finds them, in runs of `part_size` photos, each as soon as done.

        All photos are handed out at once. A run is two photos per worker unless told otherwise: enough
        for the network to batch, few enough that the workers are never long without the next photos.
        Every photo is answered: one that takes longer than `photo_timeout` is answered "took too
        long", one that crashes its worker "crashed"; either way the workers are replaced and the other
        photos run again (never in this process). `images_from`: as for `search_photo`.
        """
        batch = _Batch(self, photos, partial(_search_in_worker, type(finder), finder.options, limits, images_from))
        size = max(1, part_size or 2 * self.workers)
        for start in range(0, len(photos), size):
            yield [batch.result(i) for i in range(start, min(start + size, len(photos)))]

    def _replace(self) -> None:
        """Kill the workers now (one may be stuck on a photo for good); the next photo starts new ones."""
        self._stop(grace=0.0)

    def _stop(self, grace: float) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # Taken before shutdown, which forgets them; a worker stuck on a photo never exits by itself.
        processes = list((executor._processes or {}).values())
        manager = executor._executor_manager_thread
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        if manager is not None:
            manager.join(10)  # it settles every future of the old workers, then ends

    def close(self, grace: float = 5.0) -> None:
        """Stop the workers (killed after `grace` seconds); no process starts after this, photos get errors."""
        self._closed = True
        self._stop(grace)


class _Batch:
    """One call's photos in the pool, each answered whatever another photo does to the workers.

    When the pool breaks, nobody says which photo broke it: every photo then unfinished becomes a
    suspect and runs again alone, so that a photo that breaks the pool while alone is the one.
    A suspect that comes through (its worker was killed from outside, say) is answered as usual.
    """

    def __init__(self, pool: FacePool, photos: Sequence[bytes], task: Callable[[bytes], Searched]) -> None:
        self.pool, self.photos, self.task = pool, photos, task
        self.done: dict[int, Searched] = {}
        self.running: dict[int, tuple[Future, float]] = {}  # photo → its future and deadline
        self.suspects: set[int] = set()
        self._submit(range(len(photos)))

    def result(self, i: int) -> Searched:
        """Photo `i`'s faces, or its error answer; waits no longer than its deadline (and any re-runs')."""
        while i not in self.done:
            if i not in self.running:
                self._submit([i])  # a suspect's turn: alone in the pool
                continue
            future, deadline = self.running[i]
            try:
                found = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.error("a photo took over %.0f s; replacing the face-finding processes", self.pool.photo_timeout)
                self._lost(i, _too_long())
            except BrokenProcessPool:
                if i in self.suspects:
                    log.error("a photo crashed a face-finding process on its own; answering it with an error")
                    self._lost(i, _crashed())
                else:
                    log.error("a face-finding process died; running its batch's unfinished photos again, one by one")
                    self._lost(i, None)
            except CancelledError:  # the pool was closed or replaced under this photo: not its doing
                self._lost(i, None, suspect=False)
            except Exception:  # the search itself failed in the worker (search_photo catches what it can)
                log.exception("unexpected failure finding faces in a photo")
                self._finish(i, Searched(_failed()))
            else:
                self._finish(i, found)
        return self.done[i]

    def _finish(self, i: int, searched: Searched) -> None:
        self.done[i] = searched
        self.running.pop(i, None)

    def _lost(self, i: int, answer: PhotoAnswer | None, suspect: bool = True) -> None:
        """The pool is replaced; photo `i` is answered with `answer` (None: it runs again), the others are settled."""
        self.pool._replace()  # every future of the old workers is settled once it returns
        if answer is not None:
            self._finish(i, Searched(answer))
        broke = answer is None and suspect  # the pool broke with no culprit known
        again = []
        for j, (future, _) in list(self.running.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                self._finish(j, future.result())  # finished before the pool went
                continue
            del self.running[j]
            if broke:
                self.suspects.add(j)
            elif j not in self.suspects:
                again.append(j)  # cut short by the replacement, through no fault of its own
        self._submit(again)

    def _submit(self, indices: Sequence[int]) -> None:
        for attempt in range(2):
            try:
                pool = self.pool._pool()
                for i in indices:
                    if i not in self.running:
                        deadline = time.monotonic() + self.pool.photo_timeout
                        self.running[i] = (pool.submit(self.task, self.photos[i]), deadline)
                return
            except BrokenProcessPool:  # it broke before these photos came (a worker died while idle)
                for i in indices:
                    self.running.pop(i, None)
                if attempt == 0:
                    self.pool._replace()
            except (OSError, RuntimeError):  # no process can start, or the pool is closed
                log.exception("the face-finding processes are unavailable")
                break
        for i in indices:
            self.running.pop(i, None)
            self._finish(i, Searched(_failed()))
