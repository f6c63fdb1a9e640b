"""Photo bytes to faces: in this process, or for several photos at once in a pool of processes.

dlib's detector holds Python's GIL, so threads cannot find faces in two photos at once (tried:
0.78x); processes can. The pool's workers import dlib, NumPy and Pillow, never torch, and are
started with `spawn`, which is safe beside torch's threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .answers import PhotoAnswer
from .decode import DecodeLimits, ImageError, decode_image
from .faces import FaceFinder, FaceOptions, FaceSearch

__all__ = ["FacePool", "default_workers", "search_photo"]

log = logging.getLogger(__name__)

Found = FaceSearch | PhotoAnswer


def search_photo(data: bytes, finder: FaceFinder, limits: DecodeLimits) -> Found:
    """The faces in one photo, or the answer that says why it cannot be read."""
    start = time.perf_counter()
    try:
        image = decode_image(data, limits)
        decode_s = time.perf_counter() - start
        search = finder.find(image)
    except ImageError as e:
        return PhotoAnswer("error", error=str(e), error_kind=type(e).__name__)
    except Exception:  # a photo that breaks a library must not take the others down
        log.exception("unexpected failure reading a photo")
        return PhotoAnswer("error", error="Something went wrong reading this photo.", error_kind="Internal")
    search.decode_s = decode_s
    return search


def default_workers() -> int:
    """One worker per core this process may use, at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


# Each worker's face finders, by options: made once, on the first photo that needs them.
_finders: dict[FaceOptions, FaceFinder] = {}


def _finder(options: FaceOptions) -> FaceFinder:
    if options not in _finders:
        _finders[options] = FaceFinder(options)
    return _finders[options]


def _search_in_worker(data: bytes, options: FaceOptions, limits: DecodeLimits) -> Found:
    return search_photo(data, _finder(options), limits)


def _warm_up(options: FaceOptions) -> None:
    _finder(options)  # the finder stays in the worker: dlib's objects do not pickle


class FacePool:
    """Finds the faces of several photos in parallel; `search_in_parts` answers in the photos' order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
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
        self, photos: Sequence[bytes], finder: FaceFinder, limits: DecodeLimits, parts: int = 4
    ) -> Iterator[list[Found]]:
        """The photos' faces, found as `finder` finds them, in up to `parts` runs of photos, each as soon as done.

        All photos are handed out at once; a dead worker shows as `BrokenProcessPool` from the iterator
        (the caller closes the pool and searches in-process; new workers start with the next photos).
        """
        futures = [self._pool().submit(_search_in_worker, data, finder.options, limits) for data in photos]
        size = -(-len(futures) // max(1, parts))
        for start in range(0, len(futures), size):
            yield [f.result() for f in futures[start : start + size]]

    def close(self) -> None:
        """Stop the workers; a later search starts new ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
