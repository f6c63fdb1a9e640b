"""Photo bytes to faces: in this process, or in a pool of processes that no photo can take down.

dlib's detector holds Python's GIL, so threads cannot find faces in two photos at once (tried:
0.78x); processes can. The pool's workers import dlib, NumPy and Pillow, never torch, and are
started with `spawn`, which is safe beside torch's threads. A photo that hangs a worker past the
deadline, or kills it, costs that photo alone: its worker is replaced and the others are run again.
The deadline runs from when a worker starts on the photo, which the worker notes on a queue: photos
waiting behind others in a big batch have not begun, and are not late.
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import multiprocessing.queues
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import NamedTuple

from .answers import PhotoAnswer, went_wrong
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
        return Searched(PhotoAnswer("error", error=str(e), error_kind=type(e).__name__, details=dict(e.details)))
    except Exception:  # a photo that breaks a library must not take the others down
        log.exception("unexpected failure reading a photo")
        return Searched(went_wrong())
    search.decode_s = decode_s
    keep = images_from is not None and len(search.faces) >= images_from
    return Searched(search, image if keep else None)


def default_workers() -> int:
    """One worker per core this process may use, at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


# Each worker's face finders, by kind and options: made once, on the first photo that needs them.
_finders: dict[tuple[type[FaceFinder], FaceOptions], FaceFinder] = {}
# Each worker's end of its pool's queue of starts: (photo's token, time.monotonic() as it began).
_starts: multiprocessing.queues.Queue | None = None
# While photos wait for a worker, how often the pool's queue of starts is read (a start is noted exact
# by the worker; this is only how soon the pool sees it, long before any photo's deadline).
START_POLL_S = 0.1


# How often a worker looks whether the process that started it is still there.
PARENT_CHECK_S = 1.0


def _note_starts_on(starts: multiprocessing.queues.Queue, owner: int) -> None:
    """Each worker's start: its end of the queue of starts, and a watch on `owner`, the process that owns the pool.

    The owner's pid comes from the owner: a worker still importing when its owner was killed would otherwise take
    init, its new parent, for the owner, and watch it for ever.
    """
    global _starts
    _starts = starts
    threading.Thread(target=_exit_with, args=(owner,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once `parent` is gone: a bot killed with SIGKILL never closes its pool, and its workers
    would otherwise live on (re-parented to init), each holding dlib's models, until the machine restarts."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _finder(kind: type[FaceFinder], options: FaceOptions) -> FaceFinder:
    if (kind, options) not in _finders:
        _finders[kind, options] = kind(options)
    return _finders[kind, options]


def _search_in_worker(
    kind: type[FaceFinder], options: FaceOptions, limits: DecodeLimits, images_from: int | None, token: int, data: bytes
) -> Searched:
    if _starts is not None:
        # CLOCK_MONOTONIC is the machine's, so the pool compares it with its own.
        _starts.put((token, time.monotonic()))
    return search_photo(data, _finder(kind, options), limits, images_from)


def _warm_up(options: FaceOptions) -> None:
    _finder(FaceFinder, options)  # the finder stays in the worker: dlib's objects do not pickle


class FacePool:
    """Finds the faces of several photos in parallel; `search_in_parts` answers in the photos' order.

    `photo_timeout`: seconds a photo may take from the moment a worker starts on it (not from when it
    was handed to the pool: in a big batch most photos wait for a worker first).
    """

    def __init__(self, workers: int, photo_timeout: float = DEFAULT_PHOTO_TIMEOUT) -> None:
        if not (math.isfinite(photo_timeout) and photo_timeout > 0):
            raise ValueError(f"photo_timeout must be a positive number of seconds, not {photo_timeout!r}")
        self.workers = workers
        self.photo_timeout = photo_timeout
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        # One queue per set of workers, dropped with them: one killed mid-write could leave it unreadable.
        self._starts: multiprocessing.queues.Queue | None = None
        self._started: dict[int, float] = {}  # token → when a worker began it (time.monotonic)
        self._tokens = itertools.count()

    def _pool(self) -> ProcessPoolExecutor:
        if self._closed:
            # After close, no new processes: one started now could outlive the bot's shutdown.
            raise RuntimeError("the face-finding processes were closed")
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._starts = context.Queue()
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_note_starts_on, initargs=(self._starts, os.getpid())
            )
        return self._executor

    def _token(self) -> int:
        """A new photo's name on the queue of starts; a photo run again gets a new one."""
        return next(self._tokens)

    def _read_starts(self) -> dict[int, float]:
        """When a worker began each photo still remembered: token → time.monotonic()."""
        while self._starts is not None:
            try:
                token, at = self._starts.get_nowait()
            except queue.Empty:
                break
            self._started[token] = at
        return self._started

    def _forget(self, token: int) -> None:
        self._started.pop(token, None)

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
        starts, self._starts = self._starts, None
        self._started.clear()  # the old workers' photos are settled below, and any run again get new tokens
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
        if starts is not None:
            starts.close()

    def close(self, grace: float = 5.0) -> None:
        """Stop the workers (killed after `grace` seconds); no process starts after this, photos get errors."""
        self._closed = True
        self._stop(grace)


class _Batch:
    """One call's photos in the pool, each answered whatever another photo does to the workers.

    When the pool breaks, nobody says which photo broke it: every photo then unfinished becomes a
    suspect and runs again alone, so that a photo that breaks the pool while alone is the one.
    A suspect that comes through (its worker was killed from outside, say) is answered as usual.

    Each photo's deadline runs from when a worker starts it. While waiting for one photo, every
    started photo of the batch is watched: a later photo stuck on a worker is answered "took too long"
    then, not after the photos queued behind it have waited for it.
    """

    def __init__(self, pool: FacePool, photos: Sequence[bytes], task: Callable[[int, bytes], Searched]) -> None:
        self.pool, self.photos, self.task = pool, photos, task
        self.done: dict[int, Searched] = {}
        self.running: dict[int, tuple[Future, int]] = {}  # photo → its future and its token on the queue of starts
        self.suspects: set[int] = set()
        # When a photo of the batch was last seen to start or finish: a pool where nothing moves for
        # twice the timeout (its workers stuck before any photo) must not keep the waiting photos for
        # ever. Twice: new workers take a few seconds to start, and no photo has begun meanwhile.
        self.moved = time.monotonic()
        self.seen_started: set[int] = set()  # tokens
        self._submit(range(len(photos)))

    def result(self, i: int) -> Searched:
        """Photo `i`'s faces, or its error answer; waits no longer than its deadline (and any re-runs')."""
        while i not in self.done:
            if i not in self.running:
                self._submit([i])  # a suspect's turn: alone in the pool
                continue
            late = self._late(i)
            if late is not None:
                log.error("a photo took over %.0f s; replacing the face-finding processes", self.pool.photo_timeout)
                self._lost(late, _too_long())
                continue
            future, _ = self.running[i]
            try:
                found = future.result(timeout=self._wait_s())
            except TimeoutError:
                continue  # a photo started, or a deadline came: look again
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
                self._finish(i, Searched(went_wrong()))
            else:
                self._finish(i, found)
        return self.done[i]

    def _unfinished(self) -> Iterator[tuple[int, float | None]]:
        """Each photo still on a worker or waiting for one, with when it started (None: not yet)."""
        starts = self.pool._read_starts()
        for j, (future, token) in self.running.items():
            if not future.done():
                started = starts.get(token)
                if started is not None and token not in self.seen_started:
                    self.seen_started.add(token)
                    self.moved = time.monotonic()
                yield j, started

    def _late(self, i: int) -> int | None:
        """A photo past its deadline, if any: one that started over `photo_timeout` ago, or `i` itself
        when it waits in a pool where nothing has started or finished for twice that."""
        now, timeout = time.monotonic(), self.pool.photo_timeout
        unfinished = dict(self._unfinished())
        for j, started in unfinished.items():
            if started is not None and now - started >= timeout:
                return j
        stalled = (
            i in unfinished
            and len(unfinished) == len(self.running)  # no finished photo waits to be collected
            and all(started is None for started in unfinished.values())
            and now - self.moved >= 2 * timeout
        )
        return i if stalled else None

    def _wait_s(self) -> float:
        """How long to wait for the photo asked for before looking at the others again."""
        now, timeout = time.monotonic(), self.pool.photo_timeout
        waits = [self.moved + 2 * timeout - now]
        for _, started in self._unfinished():
            waits.append(START_POLL_S if started is None else started + timeout - now)
        return max(0.0, min(waits))

    def _finish(self, i: int, searched: Searched) -> None:
        self.done[i] = searched
        if i in self.running:
            _, token = self.running.pop(i)
            self.pool._forget(token)
        self.moved = time.monotonic()

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
            self.pool._forget(self.running.pop(j)[1])
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
                        token = self.pool._token()
                        self.running[i] = (pool.submit(self.task, token, self.photos[i]), token)
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
            self._finish(i, Searched(went_wrong()))
