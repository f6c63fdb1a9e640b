"""Inference off the event loop: one thread, a bounded queue, and a short window that batches bursts.

Photos that arrive within `batch_window` seconds of each other are taken together (up to
`max_batch`); the classifier answers them a run at a time, each run in one forward pass, and each
run's callers get their answers as soon as it is done, not when the whole batch is. A full
queue refuses at once (the caller tells the user to retry) instead of letting waits grow without
bound. The model can be swapped while running: requests already taken finish on the old one.
Nothing one photo or one caller does stops the thread, and a thread that stops anyway is replaced:
every photo taken is answered, with an error if it must be.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.answers import Examined, PhotoAnswer
from model.decode import DecodedImage
from model.evidence import Explained, FaceEvidence, explain_chip_jpeg, explain_photo

__all__ = ["Busy", "InferenceWorker", "ModelWatcher", "Result", "boxed_jpeg"]

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full, or the worker is stopping: try again later."""


@dataclass
class Result:
    """The model's answer for one photo, and the annotated photo when it has several faces."""

    answer: PhotoAnswer
    annotated: bytes | None = None  # JPEG


_Answered = tuple[PhotoAnswer, DecodedImage | None]  # an answer, and the decoded photo when its boxes are drawn


@dataclass
class _Job:
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future  # of an `_Answered`


_STOP = object()


class InferenceWorker:
    """Runs a `FaceClassifier` on its own thread; `await worker.classify(data)` from any event loop."""

    def __init__(
        self,
        classifier,
        queue_size: int = 32,
        batch_window: float = 0.03,
        max_batch: int = 64,
        annotate_from: int = 2,
    ) -> None:
        self.classifier = classifier
        self.batch_window = batch_window
        self.max_batch = max_batch
        self.annotate_from = annotate_from  # faces from which the photo is sent back with boxes
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.batches: list[int] = []  # sizes of the last batches taken, for tests and logs
        self.on_batch: Callable[[int], None] | None = None  # told each batch's size (the bot's /metrics)
        self._lock = threading.Lock()  # closing, and starting a thread, against taking a photo
        self._closing = False
        self._in_hand: list[_Job] = []  # the batch the thread is on, answered by whoever stops it
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    async def classify(self, data: bytes) -> Result:
        """The answer for one photo; raises `Busy` at once when the queue is full or the worker is stopping."""
        loop = asyncio.get_running_loop()
        job = _Job(data, loop, loop.create_future())
        with self._lock:
            if self._closing:
                raise Busy
            if not self._thread.is_alive():  # should never be needed: a dying thread starts its successor
                log.error("the inference thread had stopped; starting a new one")
                self._start_thread()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise Busy from None
        answer, image = await job.future
        if len(answer.faces) < self.annotate_from:
            return Result(answer)
        # Drawn here, off the inference thread, which is already on the next photos.
        limits = getattr(self.classifier, "limits", None)
        return Result(answer, await asyncio.to_thread(boxed_jpeg, data, answer, image, limits))

    async def examine(self, data: bytes) -> Examined:
        """A photo's answer with its faces' chips and descriptors, for a feedback press.

        Off the event loop, beside the inference thread rather than in its queue: presses are rare, and one
        must not wait behind a burst of photos nor take a place in the queue that refuses them.
        """
        return await asyncio.to_thread(self.classifier.examine, data)

    async def why(self, data: bytes) -> Explained:
        """A photo's answer with each face's evidence, for a "Why?" press: beside the queue, as `examine` is."""
        return await asyncio.to_thread(explain_photo, self.classifier, data)

    async def why_chip(self, jpeg: bytes) -> FaceEvidence:
        """The evidence for one stored face chip (JPEG), for the review page; ValueError when it is not one."""
        return await asyncio.to_thread(explain_chip_jpeg, self.classifier, jpeg)

    def swap(self, classifier) -> None:
        """Serve the next batches with `classifier`; the batch in progress finishes on the old one."""
        self.classifier = classifier

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued photos, then stop the thread; within `timeout` seconds if given.

        Photos not answered by then (the thread is stuck on one) are answered with `Busy`, so no
        caller waits for ever; new photos get `Busy` at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closing = True
        with contextlib.suppress(queue.Full):  # full: the thread is stuck, and the photos are answered below
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        left = [*self._in_hand, *_drain(self._queue)]
        if left:
            log.warning("stopping with %d photos unanswered; telling their senders to try again", len(left))
        for job in left:
            _deliver(job, None, Busy())
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)  # the thread stops if it ever comes back

    def _take_batch(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.batch_window
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(_STOP)  # stop after this batch
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                self._in_hand = batch
                self._serve(batch)
                self._in_hand = []
        except BaseException:  # beyond one batch's handling (a library's SystemExit, say): this thread ends
            log.exception("the inference thread was stopped")
        finally:
            # The photos in hand are answered, and unless the worker is closing, a new thread takes the queue on.
            for job in self._in_hand:
                _deliver(job, None, RuntimeError("the inference thread stopped while on this photo"))
            self._in_hand = []
            with self._lock:
                if not self._closing:
                    log.error("the inference thread stopped; starting a new one")
                    self._start_thread()

    def _serve(self, batch: list[_Job]) -> None:
        # Counted as it is taken: its first answers go out before the batch is done, and whoever reads
        # the counts after an answer (a test, a /metrics scrape) must find this batch in them.
        self.batches = [*self.batches[-99:], len(batch)]
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch))
            except Exception:  # counting must never cost an answer
                log.exception("could not count a batch")
        classifier = self.classifier
        waiting = list(batch)
        try:
            for part in _classify_in_parts(classifier, [job.data for job in batch], self.annotate_from):
                answered, waiting = waiting[: len(part)], waiting[len(part) :]
                for job, result in zip(answered, part, strict=True):
                    _deliver(job, result, None)
                self._in_hand = waiting
            if waiting:
                raise RuntimeError(f"the classifier answered {len(batch) - len(waiting)} of {len(batch)} photos")
        except Exception as e:  # the thread must outlive any one bad batch
            log.exception("inference failed for %d photos of a batch of %d", len(waiting), len(batch))
            for job in waiting:
                _deliver(job, None, e)

    def waiting(self) -> int:
        """Photos queued for the model, not yet taken."""
        return self._queue.qsize()


def _classify_in_parts(classifier, photos: Sequence[bytes], images_from: int) -> Iterator[list[_Answered]]:
    """The answers a run of photos at a time, as the classifier gives them (all at once where it cannot)."""
    in_parts = getattr(classifier, "classify_in_parts", None)
    if in_parts is not None:
        yield from in_parts(photos, images_from)
        return
    keeping = getattr(classifier, "classify_keeping_images", None)
    if keeping is None:  # stand-ins (no model yet, tests' fakes) only answer
        yield [(answer, None) for answer in classifier.classify_many(photos)]
        return
    yield keeping(photos, images_from)


def boxed_jpeg(data: bytes, answer: PhotoAnswer, image: DecodedImage | None, limits) -> bytes | None:
    """The photo with its boxes, as JPEG; None when they cannot be drawn (the answer goes without them)."""
    from model.annotate import annotate, draw_faces

    try:
        boxed = draw_faces(image, answer) if image is not None else annotate(data, answer, limits)
        buffer = io.BytesIO()
        boxed.save(buffer, "JPEG", quality=88)
    except Exception:
        log.exception("could not draw the boxes on a photo; answering without them")
        return None
    return buffer.getvalue()


def _drain(jobs: queue.Queue) -> list[_Job]:
    taken = []
    with contextlib.suppress(queue.Empty):
        while True:
            job = jobs.get_nowait()
            if job is not _STOP:
                taken.append(job)
    return taken


def _deliver(job: _Job, result: _Answered | None, error: BaseException | None) -> None:
    """Hand an answer to its caller's event loop; a caller whose loop has closed is gone, which stops nothing."""
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
    except RuntimeError:  # the loop is closed
        log.info("a photo's caller left before its answer")


def _settle(future: asyncio.Future, result: _Answered | None, error: BaseException | None) -> None:
    if future.done():  # cancelled, or already answered (when stopping)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelWatcher:
    """Loads a replaced model file aside and swaps it into the worker."""

    def __init__(self, path: Path, worker: InferenceWorker, load: Callable[[Path], object]) -> None:
        self.path = path
        self.worker = worker
        self.load = load
        self._stamp = self._current()

    def _current(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def check(self) -> bool:
        """Swap in the model if its file changed; True when it did. Runs the load in the caller's thread."""
        stamp = self._current()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            classifier = self.load(self.path)
        except Exception:
            log.exception("the new model at %s did not load; still serving the old one", self.path)
            self._stamp = stamp  # do not retry the same broken file every few seconds
            return False
        self._stamp = stamp
        self.worker.swap(classifier)
        log.info("now serving the model from %s", self.path)
        return True

    async def watch(self, interval: float) -> None:
        """Check every `interval` seconds, loading in a thread so the event loop never waits."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.check)
