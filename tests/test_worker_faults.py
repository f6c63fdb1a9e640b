"""Faults in the inference thread and the face-finding processes: every photo is answered, the bot lives on.

The pool's faults happen in real processes: a face finder that misbehaves on marked photos runs in
the pool's workers (they import this module to unpickle it), and a worker is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.core import ChatCore, RateLimiter, Reply, Request
from bot.worker import Busy, InferenceWorker, Result
from model.decode import DecodedImage
from model.faces import FaceFinder, FaceSearch
from testkit.imagery import jpeg, scene

# Marked photos are told apart by their width, which survives JPEG and reaches the finder.
WIDTHS = {"crash": 1001, "hang": 1003, "slow": 1005, "slowish": 1007}
KINDS = {width: kind for kind, width in WIDTHS.items()}
SEEN = "DOPPELBOT_TEST_SEEN"  # a folder where the finder notes each photo it looks at, and in which process
PHOTO_TIMEOUT = 10.0  # generous for a worker started on a busy two-core machine; a hang costs this much
BOUND = 120  # seconds after which a photo counts as left hanging


class FaultyFinder(FaceFinder):
    """dlib's finder, except on marked photos: "crash" ends its process at once (as a segfault in dlib would),
    "hang" never returns, "slow" takes two seconds (time to kill its process from outside), "slowish" one."""

    def find(self, image: DecodedImage) -> FaceSearch:
        kind = KINDS.get(image.original_size[0], "plain")
        if folder := os.environ.get(SEEN):
            (Path(folder) / f"{kind}.{os.getpid()}.{uuid.uuid4().hex}").touch()
        if kind == "crash":
            os._exit(70)
        if kind == "hang":
            time.sleep(3600)
        if kind == "slow":
            time.sleep(2)
        if kind == "slowish":
            time.sleep(1)
        return super().find(image)


def marked(kind: str) -> bytes:
    """A photo of one face (Eileen's) that the faulty finder treats as `kind`."""
    return jpeg(scene(1, width=WIDTHS[kind]))


def pids(folder: Path, kind: str | None = None) -> set[int]:
    """The processes in which the faulty finder looked at photos (of `kind`)."""
    noted = (name.split(".") for name in os.listdir(folder))
    return {int(pid) for k, pid, _ in noted if kind in (None, k)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def asking(core: ChatCore, photos: Sequence[bytes]) -> list[Coroutine[Any, Any, Reply]]:
    """Each photo sent by a user of its own."""
    return [core.answer_photo(p, Request("test", "private", str(i))) for i, p in enumerate(photos)]


def replies(core: ChatCore, photos: Sequence[bytes]) -> list[Reply]:
    """Every photo sent at once; fails if any is left without a reply."""

    async def send() -> list[Reply]:
        return await asyncio.wait_for(asyncio.gather(*asking(core, photos)), BOUND)

    return asyncio.run(send())


def outcomes(worker: InferenceWorker, photos: Sequence[bytes]) -> list[Result | BaseException]:
    """What `classify` gives for each photo, sent at once: a result or the error it raised."""

    async def send() -> list[Result | BaseException]:
        asking = (worker.classify(p) for p in photos)
        return await asyncio.wait_for(asyncio.gather(*asking, return_exceptions=True), BOUND)

    return asyncio.run(send())


def first_words(reply: Reply) -> list[str]:
    """The names in a reply, in its order: `["Eileen"]`, `["Twin", "Eileen", ...]`."""
    lines = reply.text.splitlines()
    lines = lines[1:] if len(lines) > 1 else lines
    return [line.split(", ")[0].split(". ")[-1] for line in lines]


# -- the face-finding processes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("seen")
    patch = pytest.MonkeyPatch()
    patch.setenv(SEEN, str(folder))  # set before the pool's processes start: they inherit it
    yield folder
    patch.undo()


@pytest.fixture(scope="module")
def pooled(exported: Path, seen: Path):
    """The session's model, its faces found by the faulty finder in two real processes."""
    from model.search import FacePool
    from model.serving import FaceClassifier

    pool = FacePool(2, photo_timeout=PHOTO_TIMEOUT)
    try:
        assert pool.start()
        classifier = FaceClassifier.load(exported, pool=pool)
        classifier.finder = FaultyFinder(classifier.finder.options)
        yield classifier
    finally:
        pool.close()


@pytest.fixture
def pooled_core(pooled) -> Iterator[ChatCore]:
    worker = InferenceWorker(pooled, batch_window=0.3)  # photos sent together share a batch
    try:
        yield ChatCore(worker, RateLimiter(1000))
    finally:
        worker.close(timeout=30)


GROUP = ("Twin", "Eileen", "Eileen", "Twin")


def group_photo() -> bytes:
    return jpeg(scene(4, twins=tuple(name == "Twin" for name in GROUP)))


def test_a_photo_that_hangs_is_answered_took_too_long_and_its_process_replaced(pooled_core, seen) -> None:
    hang, twin, group = replies(pooled_core, [marked("hang"), jpeg(scene(1, twins=(True,))), group_photo()])
    assert hang.answer.outcome == "error" and hang.answer.error_kind == "PhotoTimeout"
    assert hang.text == "This photo took too long to look at, so I gave up on it."
    assert first_words(twin) == ["Twin"]
    assert first_words(group) == list(GROUP) and group.image is not None and group.image[:3] == b"\xff\xd8\xff"
    hung = pids(seen, "hang")
    assert hung and not any(alive(pid) for pid in hung)  # the stuck process is gone ...
    (later,) = replies(pooled_core, [jpeg(scene(1))])
    assert first_words(later) == ["Eileen"]  # ... and new ones answer


def test_a_photo_that_crashes_its_process_gets_an_error_and_never_runs_in_the_bot(pooled_core, seen) -> None:
    eileen, crash, group = replies(pooled_core, [jpeg(scene(1)), marked("crash"), group_photo()])
    assert crash.answer.outcome == "error" and crash.answer.error_kind == "PhotoCrashed"
    assert crash.text == "This photo made my face finder crash, so I can't answer it."
    assert first_words(eileen) == ["Eileen"]
    assert first_words(group) == list(GROUP) and group.image is not None
    (alone,) = replies(pooled_core, [marked("crash")])  # sent on its own, as most photos are
    assert alone.answer.error_kind == "PhotoCrashed"
    (later,) = replies(pooled_core, [jpeg(scene(1, twins=(True,)))])
    assert first_words(later) == ["Twin"]
    assert os.getpid() not in pids(seen)  # had it run here, this process would have ended


def test_a_process_killed_during_a_photo_costs_no_answer(pooled_core, seen) -> None:
    """A worker killed from outside (the kernel's OOM killer, say) while on a photo: that photo is run again."""
    before = pids(seen, "slow")

    async def kill_during_the_slow_photo() -> list[Reply]:
        photos = [marked("slow"), jpeg(scene(1, twins=(True,))), group_photo()]
        sent = [asyncio.create_task(c) for c in asking(pooled_core, photos)]
        for _ in range(BOUND * 20):
            if started := pids(seen, "slow") - before:
                break
            await asyncio.sleep(0.05)
        (pid,) = started
        os.kill(pid, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.gather(*sent), BOUND)

    slow, twin, group = asyncio.run(kill_during_the_slow_photo())
    assert first_words(slow) == ["Eileen"]
    assert first_words(twin) == ["Twin"]
    assert first_words(group) == list(GROUP)
    assert os.getpid() not in pids(seen)  # run again in a new process, not in the bot's


# Eight slowish photos' time, and room for a first photo's finder to load on a busy machine: a
# worker's share of the batch below (ten photos) takes longer.
SHORT_TIMEOUT = 8.0


@pytest.fixture(scope="module")
def short_deadline_core(exported: Path, seen: Path) -> Iterator[ChatCore]:
    """The faulty finder in two real processes that give a photo `SHORT_TIMEOUT` seconds."""
    from model.search import FacePool
    from model.serving import FaceClassifier

    pool = FacePool(2, photo_timeout=SHORT_TIMEOUT)
    try:
        assert pool.start()
        classifier = FaceClassifier.load(exported, pool=pool)
        classifier.finder = FaultyFinder(classifier.finder.options)
        worker = InferenceWorker(classifier, batch_window=0.3)  # photos sent together share a batch
        try:
            yield ChatCore(worker, RateLimiter(1000))
        finally:
            worker.close(timeout=30)
    finally:
        pool.close()


def slowish(n: int) -> list[bytes]:
    """`n` different slowish photos of Eileen (JPEG's quality tells them apart)."""
    return [jpeg(scene(1, width=WIDTHS["slowish"]), quality=80 + i) for i in range(n)]


def test_photos_queued_behind_slow_ones_are_not_late_and_no_process_is_replaced(short_deadline_core, seen) -> None:
    """20 photos of a second each on two workers: ten seconds each, past the 8 s timeout, each photo within it."""
    before = pids(seen, "slowish")
    answered = replies(short_deadline_core, slowish(20))
    assert [first_words(reply) for reply in answered] == [["Eileen"]] * 20, [r.text for r in answered]
    workers = pids(seen, "slowish") - before
    assert 1 <= len(workers) <= 2 and all(alive(pid) for pid in workers)  # the same two: none was replaced


def test_a_stuck_photo_in_a_big_batch_times_out_alone(short_deadline_core, seen) -> None:
    photos = slowish(6)
    photos.insert(2, marked("hang"))
    answered = replies(short_deadline_core, photos)
    hang = answered.pop(2)
    assert hang.answer.error_kind == "PhotoTimeout"
    assert [first_words(reply) for reply in answered] == [["Eileen"]] * 6, [r.text for r in answered]
    assert not any(alive(pid) for pid in pids(seen, "hang"))


# -- the inference thread ------------------------------------------------------------------------


class Gated:
    """The session's model, answering only once `gate` opens (as when it is stuck on a photo)."""

    def __init__(self, model) -> None:
        self.model, self.limits = model, model.limits
        self.gate = threading.Event()

    def classify_many(self, photos: Sequence[bytes]) -> list:
        if not self.gate.wait(BOUND):
            raise TimeoutError("the test never opened the gate")
        return self.model.classify_many(photos)


def test_a_caller_whose_event_loop_closed_stops_nothing(classifier) -> None:
    model = Gated(classifier)
    worker = InferenceWorker(model, batch_window=0)

    async def leave_early() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.classify(jpeg(scene(1))), 0.3)

    try:
        asyncio.run(leave_early())  # its loop is closed when the answer comes
        model.gate.set()
        (later,) = outcomes(worker, [jpeg(scene(1))])
        assert later.answer.faces[0].label == "Eileen"
    finally:
        model.gate.set()
        worker.close(timeout=30)


class Exits:
    """The session's model, except that a library calls `sys.exit()` on one photo: that ends any thread."""

    def __init__(self, model, fatal: bytes) -> None:
        self.model, self.limits, self.fatal = model, model.limits, fatal

    def classify_many(self, photos: Sequence[bytes]) -> list:
        if self.fatal in photos:
            raise SystemExit(1)
        return self.model.classify_many(photos)


def test_a_photo_that_ends_the_thread_is_answered_and_a_new_thread_takes_the_queue(classifier) -> None:
    fatal = jpeg(scene(1), quality=70)
    worker = InferenceWorker(Exits(classifier, fatal), batch_window=0, max_batch=1)
    try:
        # The two photos behind the fatal one are answered with nobody sending another.
        lost, eileen, twin = outcomes(worker, [fatal, jpeg(scene(1)), jpeg(scene(1, twins=(True,)))])
        assert isinstance(lost, RuntimeError)  # the adapters apologise for it
        assert [eileen.answer.faces[0].label, twin.answer.faces[0].label] == ["Eileen", "Twin"]
        (later,) = outcomes(worker, [jpeg(scene(1))])
        assert later.answer.faces[0].label == "Eileen"
    finally:
        worker.close(timeout=30)


class BadBoxes:
    """The session's model, except that one photo's faces come back with boxes that cannot be drawn."""

    def __init__(self, model, bad: bytes) -> None:
        self.model, self.limits, self.bad = model, model.limits, bad

    def classify_keeping_images(self, photos: Sequence[bytes], images_from: int | None = None) -> list:
        pairs = self.model.classify_keeping_images(photos, images_from)
        return [(self._spoilt(p, a), image) for p, (a, image) in zip(photos, pairs, strict=True)]

    def classify_many(self, photos: Sequence[bytes]) -> list:
        return [self._spoilt(p, a) for p, a in zip(photos, self.model.classify_many(photos), strict=True)]

    def _spoilt(self, photo: bytes, answer):
        if photo != self.bad:
            return answer
        turned = [dataclasses.replace(f, box=(f.box[2], f.box[1], f.box[0], f.box[3])) for f in answer.faces]
        return dataclasses.replace(answer, faces=turned)  # right of left: Pillow refuses to draw it


def test_boxes_that_cannot_be_drawn_cost_only_that_photo_its_picture(classifier) -> None:
    bad, good = group_photo(), jpeg(scene(3, twins=(False, True, False)))
    worker = InferenceWorker(BadBoxes(classifier, bad), batch_window=0.5)  # both in one batch
    try:
        spoilt, fine = replies(ChatCore(worker, RateLimiter(100)), [bad, good])
    finally:
        worker.close(timeout=30)
    assert first_words(spoilt) == list(GROUP) and spoilt.image is None  # the names, without the boxes
    assert first_words(fine) == ["Eileen", "Twin", "Eileen"]
    assert fine.image is not None and fine.image[:3] == b"\xff\xd8\xff"


def test_close_returns_in_time_and_every_waiting_photo_is_answered(classifier) -> None:
    model = Gated(classifier)  # stuck on the first photo until the test ends
    worker = InferenceWorker(model, queue_size=2, batch_window=0, max_batch=1)

    async def close_while_stuck() -> tuple[bool, list, BaseException | None]:
        waiting = [asyncio.create_task(worker.classify(jpeg(scene(1))))]
        await asyncio.sleep(0.3)  # the thread has it in hand, and is stuck on it
        waiting += [asyncio.create_task(worker.classify(jpeg(scene(1)))) for _ in range(2)]
        await asyncio.sleep(0.2)  # two queued: the queue is full
        closing = threading.Thread(target=worker.close, args=(1.0,))
        closing.start()
        await asyncio.to_thread(closing.join, 20)
        closed = not closing.is_alive()
        try:
            await asyncio.wait_for(worker.classify(jpeg(scene(1))), 5)
            after = None
        except (Busy, TimeoutError) as e:
            after = e
        model.gate.set()  # let a worker that did not stop finish, so the test ends either way
        answers = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), BOUND)
        return closed, answers, after

    try:
        closed, answers, after = asyncio.run(close_while_stuck())
    finally:
        model.gate.set()
    assert closed
    assert all(isinstance(a, Busy) for a in answers), answers  # "I'm busy ... try again in a minute"
    assert isinstance(after, Busy)  # at once, not after a wait


_POOL_OWNER = """
import sys, time
from model.search import FacePool

pool = FacePool(2)
assert pool.start()
print(" ".join(str(pid) for pid in pool._executor._processes), flush=True)
time.sleep(600)
"""


def test_face_finding_processes_end_when_the_bot_that_started_them_is_killed() -> None:
    """A bot SIGKILLed (an OOM kill, a deploy's last resort) closes nothing: its workers must go by themselves."""
    import subprocess
    import sys

    owner = subprocess.Popen([sys.executable, "-c", _POOL_OWNER], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + BOUND
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers), "face-finding processes outlived the bot that started them"


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, which may take its time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
