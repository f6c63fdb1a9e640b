"""The chat core and its worker: wording, batching, the busy answer, rate limits, model swaps."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from bot.core import ChatCore, Photo, RateLimiter, Request, read_model_info
from bot.worker import InferenceWorker, ModelWatcher
from testkit.imagery import jpeg, noise_image, scene

USER = Request("test", "private", "42")


def run(coro):
    return asyncio.run(coro)


def test_one_face_is_a_single_line(core: ChatCore) -> None:
    reply = run(core.answer_photo(jpeg(scene(1)), USER))
    assert re.fullmatch(r"Eileen, (9\d|100)% sure", reply.text), reply.text
    assert reply.image is None


def test_several_faces_are_numbered_and_the_photo_comes_back_boxed(core: ChatCore) -> None:
    reply = run(core.answer_photo(jpeg(scene(3, twins=(True, False, True))), USER))
    lines = reply.text.splitlines()
    assert lines[0] == "I found 3 faces:"
    assert [line.split(",")[0] for line in lines[1:]] == ["1. Twin", "2. Eileen", "3. Twin"]
    assert reply.image is not None and reply.image[:3] == b"\xff\xd8\xff"


def test_no_face_bad_files_and_not_sure(core: ChatCore, exported) -> None:
    assert run(core.answer_photo(jpeg(noise_image()), USER)).text == "I can't find a face in this photo."
    broken = run(core.answer_photo(jpeg(scene(1))[:4000], USER)).text
    assert "damaged" in broken and "\n" not in broken
    assert "isn't an image" in run(core.answer_photo(b"hello", USER)).text
    from model.serving import FaceClassifier

    strict = InferenceWorker(FaceClassifier.load(exported, threshold=0.99999999))
    try:
        text = run(ChatCore(strict, RateLimiter(100)).answer_photo(jpeg(scene(1)), USER)).text
    finally:
        strict.close(timeout=30)
    assert text.startswith("Not sure (maybe Eileen, ")


def test_a_group_photo_is_decoded_once_and_its_boxes_drawn_as_before(core: ChatCore, monkeypatch) -> None:
    import io

    import numpy as np
    from PIL import Image

    import model.annotate
    import model.search
    from model.annotate import annotate
    from model.decode import decode_image

    decoded_on = []

    def counted(data, limits=None, first_side=None):
        decoded_on.append(threading.current_thread().name)
        return decode_image(data, limits, first_side)

    monkeypatch.setattr(model.search, "decode_image", counted)
    monkeypatch.setattr(model.annotate, "decode_image", counted)
    photo = jpeg(scene(4, twins=(True, False, False, True)))
    reply = run(core.answer_photo(photo, USER))
    monkeypatch.undo()
    assert decoded_on == ["inference"]  # the face search's decode: the boxes are drawn on the image it kept
    boxed = np.asarray(Image.open(io.BytesIO(reply.image)), dtype=float)
    expected = np.asarray(annotate(photo, reply.answer), dtype=float)
    assert boxed.shape == expected.shape and np.abs(boxed - expected).mean() < 2


def test_too_large_is_refused_before_and_after_download(core: ChatCore) -> None:
    assert core.refuse_size(25 * 1024 * 1024).text.startswith("That file is 25 MB; I can look at files up to 20 MB")
    assert core.refuse_size(1000) is None
    assert "20 MB" in run(core.answer_photo(bytes(21 * 1024 * 1024), USER)).text


def test_a_burst_shares_forward_passes(classifier) -> None:
    worker = InferenceWorker(classifier, batch_window=0.2)
    core = ChatCore(worker, RateLimiter(100))

    async def burst():
        photos = [jpeg(scene(1, twins=(i % 2 == 1,))) for i in range(6)]
        return await asyncio.gather(
            *(core.answer_photo(p, Request("t", "private", str(i))) for i, p in enumerate(photos))
        )

    try:
        replies = run(burst())
    finally:
        worker.close(timeout=30)
    assert [r.text.split(",")[0] for r in replies] == ["Eileen", "Twin"] * 3
    assert len(worker.batches) < 6 and sum(worker.batches) == 6


class InRuns:
    """The session's model, answering two photos at a time and held before its second run until told."""

    def __init__(self, model, fail_second: bool = False) -> None:
        self.model, self.limits, self.fail_second = model, model.limits, fail_second
        self.second_run = threading.Event()

    def classify_in_parts(self, photos, images_from=None):
        yield self.model.classify_keeping_images(photos[:2], images_from)
        self.second_run.wait(30)
        if self.fail_second:
            raise RuntimeError("the network broke")
        yield self.model.classify_keeping_images(photos[2:], images_from)


@pytest.mark.parametrize("fail_second", [False, True])
def test_each_run_of_a_batch_is_answered_as_soon_as_it_is_done(classifier, fail_second: bool) -> None:
    model = InRuns(classifier, fail_second)
    worker = InferenceWorker(model, batch_window=0.3)
    core = ChatCore(worker, RateLimiter(100))

    async def burst():
        tasks = [
            asyncio.create_task(core.answer_photo(jpeg(scene(1)), Request("t", "private", str(i)))) for i in range(4)
        ]
        for _ in range(200):  # the first run's answers come while the second run is held
            await asyncio.sleep(0.05)
            if sum(t.done() for t in tasks) == 2:
                break
        early = [t.done() for t in tasks]
        model.second_run.set()
        return early, await asyncio.gather(*tasks, return_exceptions=True)

    try:
        early, replies = run(burst())
    finally:
        model.second_run.set()
        worker.close(timeout=30)
    assert early == [True, True, False, False]
    assert [r.text.split(",")[0] for r in replies[:2]] == ["Eileen", "Eileen"]
    if fail_second:  # the run that failed raises to the adapters' error handlers; the first run kept its answers
        assert [str(r) for r in replies[2:]] == ["the network broke"] * 2
    else:
        assert [r.text.split(",")[0] for r in replies[2:]] == ["Eileen", "Eileen"]


def test_a_full_queue_answers_busy_at_once(classifier) -> None:
    gate = threading.Event()

    class Slow:
        limits = classifier.limits

        def classify_many(self, photos):
            gate.wait(30)
            return classifier.classify_many(photos)

    worker = InferenceWorker(Slow(), queue_size=1, batch_window=0, max_batch=1)
    core = ChatCore(worker, RateLimiter(100))

    async def flood():
        tasks = [
            asyncio.create_task(core.answer_photo(jpeg(scene(1)), Request("t", "private", str(i)))) for i in range(4)
        ]
        await asyncio.sleep(0.5)
        done = [t.result().text for t in tasks if t.done()]
        gate.set()
        rest = await asyncio.gather(*[t for t in tasks if not t.done()])
        return done, [r.text for r in rest]

    try:
        busy, answered = run(flood())
    finally:
        gate.set()
        worker.close(timeout=30)
    assert busy and all("busy" in text for text in busy)
    assert answered and all(text.startswith("Eileen") for text in answered)


def test_rate_limit_per_user() -> None:
    """Two photos a minute: a third waits about a minute, another user does not, and looking takes no place."""

    async def scenario() -> None:
        limiter = RateLimiter(2, period=60)
        assert [await limiter.take("a"), await limiter.take("a")] == [0, 0]
        assert await limiter.wait("a") == pytest.approx(60, abs=1)
        assert await limiter.take("a") == pytest.approx(60, abs=1)
        assert [await limiter.wait("b") for _ in range(3)] == [0, 0, 0]
        assert [await limiter.take("b"), await limiter.take("b")] == [0, 0]
        assert await limiter.take("b") > 0

    asyncio.run(scenario())


def test_a_place_frees_when_its_period_is_over() -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(1, period=1)
        waits = [await limiter.take("a"), await limiter.take("a")]
        await asyncio.sleep(1.1)
        return [*waits, await limiter.take("a")]

    first, refused, later = asyncio.run(scenario())
    assert first == 0 and refused >= 1 and later == 0


def test_rate_limited_user_is_told_to_wait(worker) -> None:
    core = ChatCore(worker, RateLimiter(1))
    run(core.answer_photo(jpeg(scene(1)), USER))
    assert "try again in 60 seconds" in run(core.answer_photo(jpeg(scene(1)), USER)).text


def test_a_replaced_model_is_swapped_in(exported, tmp_path, classifier) -> None:
    import shutil

    from model.serving import FaceClassifier

    path = tmp_path / "export.pkl"
    shutil.copy(exported, path)
    worker = InferenceWorker(classifier)
    loaded = []

    def load(p):
        loaded.append(FaceClassifier.load(p, threshold=0.99999999))
        return loaded[-1]

    watcher = ModelWatcher(path, worker, load)
    try:
        assert not watcher.check()
        shutil.copy(exported, tmp_path / "new.pkl")
        (tmp_path / "new.pkl").replace(path)  # as the training script publishes: a rename
        assert watcher.check() and worker.classifier is loaded[0]
        text = run(ChatCore(worker, RateLimiter(100)).answer_photo(jpeg(scene(1)), USER)).text
        assert text.startswith("Not sure")
        path.write_bytes(b"not a model")
        assert not watcher.check() and worker.classifier is loaded[0]  # a broken file keeps the old model
    finally:
        worker.close(timeout=30)


def test_about_reads_the_training_metadata(core: ChatCore, tmp_path) -> None:
    (tmp_path / "export.json").write_text(
        '{"classes": ["Jessica Chastain", "Bryce Dallas Howard"], "accuracy": 0.985, '
        '"trained_at": "2026-11-20T10:00:00+00:00", "n_valid": 73}'
    )
    info = read_model_info(tmp_path / "export.pkl")
    about = ChatCore(core.worker, RateLimiter(1), lambda: info)
    text = about.about_text()
    assert "Jessica Chastain or Bryce Dallas Howard" in text
    assert "98.5%" in text and "73 faces" in text and "November 20, 2026" in text
    assert "Jessica Chastain or Bryce Dallas Howard" in about.start_text()


class SlowDownloads:
    """Photos whose downloads, once started, hang until the test lets them finish."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.done = asyncio.Event()

    def photo(self, i: int) -> Photo:
        data = jpeg(scene(1))

        async def download() -> bytes:
            self.started.append(i)
            await self.done.wait()
            self.finished.append(i)
            return data

        return Photo(download, len(data), "image/jpeg")

    async def until_started(self, n: int) -> None:
        while len(self.started) < n:
            await asyncio.sleep(0)


def test_photos_downloaded_at_once_are_bounded_across_adapters_the_next_waits_its_turn(worker) -> None:
    """Memory is downloads x MAX_PHOTO_MB: Discord's handlers and Telegram's 256 concurrent updates are one bound."""
    slow = SlowDownloads()
    core = ChatCore(worker, RateLimiter(100), max_downloads=2)

    async def scenario() -> tuple[list[int], list[str]]:
        asking = [Request(adapter, "private", "u") for adapter in ("telegram", "discord", "web")]
        tasks = [asyncio.create_task(core.answer(slow.photo(i), request)) for i, request in enumerate(asking)]
        await slow.until_started(2)
        for _ in range(100):  # the loop runs the third request as far as it can go
            await asyncio.sleep(0)
        started_before = list(slow.started)
        slow.done.set()
        replies = await asyncio.gather(*tasks)
        return started_before, [reply.text for reply in replies]

    started_before, texts = run(scenario())
    assert started_before == [0, 1]  # the third waited for a place
    assert slow.started == [0, 1, 2] and all(text.startswith("Eileen") for text in texts), texts


def test_a_photo_that_finds_no_download_place_in_time_hears_busy_and_is_not_fetched(worker) -> None:
    slow = SlowDownloads()
    core = ChatCore(worker, RateLimiter(100), max_downloads=1, download_wait=0)

    async def scenario() -> tuple[str | None, list[str]]:
        first = asyncio.create_task(core.answer(slow.photo(0), USER))
        await slow.until_started(1)
        late = await core.answer(slow.photo(1), Request("discord", "guild", "7"))
        slow.done.set()
        answered = await first
        again = await core.answer(slow.photo(2), Request("discord", "guild", "7"))  # the place is free again
        return late.refused, [answered.text, again.text]

    refused, texts = run(scenario())
    assert refused == "busy" and slow.started == [0, 2]
    assert all(text.startswith("Eileen") for text in texts), texts
