"""Inference off the event loop: one thread, a bounded queue, and a short window that batches bursts.

Photos that arrive within `batch_window` seconds of each other share one forward pass. A full
queue refuses at once (the caller tells the user to retry) instead of letting waits grow without
bound. The model can be swapped while running: requests already taken finish on the old one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.answers import PhotoAnswer

__all__ = ["Busy", "InferenceWorker", "ModelWatcher", "Result"]

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full: try again later."""


@dataclass
class Result:
    """The model's answer for one photo, and the annotated photo when it has several faces."""

    answer: PhotoAnswer
    annotated: bytes | None = None  # JPEG


@dataclass
class _Job:
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


_STOP = object()


class InferenceWorker:
    """Runs a `FaceClassifier` on its own thread; `await worker.classify(data)` from any event loop."""

    def __init__(
        self,
        classifier,
        queue_size: int = 32,
        batch_window: float = 0.03,
        max_batch: int = 16,
        annotate_from: int = 2,
    ) -> None:
        self.classifier = classifier
        self.batch_window = batch_window
        self.max_batch = max_batch
        self.annotate_from = annotate_from  # faces from which the photo is sent back with boxes
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.batches: list[int] = []  # sizes of the last batches run, for tests and logs
        self._thread.start()

    async def classify(self, data: bytes) -> Result:
        """The answer for one photo; raises `Busy` at once when the queue is full."""
        loop = asyncio.get_running_loop()
        job = _Job(data, loop, loop.create_future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy from None
        return await job.future

    def swap(self, classifier) -> None:
        """Serve the next batches with `classifier`; the batch in progress finishes on the old one."""
        self.classifier = classifier

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued photo, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _take_batch(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.batch_window
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)  # stop after this batch
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            classifier = self.classifier
            try:
                answers = classifier.classify_many([job.data for job in batch])
                results = [self._result(classifier, job.data, a) for job, a in zip(batch, answers, strict=True)]
            except Exception as e:  # the thread must outlive any one bad batch
                log.exception("inference failed for a batch of %d", len(batch))
                for job in batch:
                    job.loop.call_soon_threadsafe(_settle, job.future, None, e)
                continue
            self.batches = [*self.batches[-99:], len(batch)]
            for job, result in zip(batch, results, strict=True):
                job.loop.call_soon_threadsafe(_settle, job.future, result, None)

    def _result(self, classifier, data: bytes, answer: PhotoAnswer) -> Result:
        if len(answer.faces) < self.annotate_from:
            return Result(answer)
        from model.annotate import annotate

        image = annotate(data, answer, classifier.limits)
        out = _jpeg(image)
        return Result(answer, out)


def _jpeg(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def _settle(future: asyncio.Future, result: Result | None, error: BaseException | None) -> None:
    if future.cancelled():
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
