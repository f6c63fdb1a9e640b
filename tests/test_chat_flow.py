"""The one photo flow every adapter goes through (`ChatCore.answer`): type and announced size first, then the
rate limit, then the download, then the model; a photo counts against the limit once it is in hand and fits."""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.core import ChatCore, Photo, RateLimiter, Refused, Request, is_image
from bot.worker import InferenceWorker
from testkit.imagery import jpeg, scene

USER = Request("test", "private", "7")
ONE_FACE = re.compile(r"Eileen, (9\d|100)% sure")


class Sent:
    """A photo as a chat service announces it; counts how often the bot fetched it."""

    def __init__(self, data: bytes, size: int | None = None, content_type: str | None = "image/jpeg", name=None):
        self.data, self.fetched = data, 0
        self.photo = Photo(self.download, len(data) if size is None else size, content_type, name)

    async def download(self) -> bytes:
        self.fetched += 1
        return self.data


def test_refusals_use_no_quota_and_nothing_is_downloaded_past_the_limit(worker: InferenceWorker) -> None:
    core = ChatCore(worker, RateLimiter(1))
    huge = Sent(b"\xff\xd8\xff", size=25 * 1024 * 1024)
    pdf = Sent(b"%PDF-1.7", content_type="application/pdf", name="notes.pdf")
    first, second = Sent(jpeg(scene(1))), Sent(jpeg(scene(1)))

    async def lost() -> bytes:
        raise Refused(core.download_failed())

    async def scenario() -> list[str]:
        replies = [
            await core.answer(huge.photo, USER),
            await core.answer(pdf.photo, USER),
            await core.answer(Photo(lost, 1000), USER),
            await core.answer_photo(bytes(21 * 1024 * 1024), USER),  # announced nothing, held too much
            await core.answer(first.photo, USER),
            await core.answer(second.photo, USER),
        ]
        return [reply.text for reply in replies]

    texts = asyncio.run(scenario())
    assert texts[:4] == [
        core.refuse_size(25 * 1024 * 1024).text,
        core.not_an_image().text,
        core.download_failed().text,
        core.refuse_size(21 * 1024 * 1024).text,
    ]
    # Four refusals, and the user's one photo a minute is still there for a photo the model looks at.
    assert ONE_FACE.fullmatch(texts[4]), texts[4]
    assert texts[5].startswith("You're sending photos faster than I can look at them"), texts[5]
    # Nothing is fetched that is refused before: the huge file, the PDF, the photo past the limit.
    assert (huge.fetched, pdf.fetched, first.fetched, second.fetched) == (0, 0, 1, 0)


def test_a_busy_refusal_keeps_its_place_until_the_period_is_over(classifier, worker: InferenceWorker) -> None:
    limiter = RateLimiter(1, period=1)
    stopped = InferenceWorker(classifier)
    stopped.close(timeout=30)  # a stopping worker answers "busy" at once, as a full queue does

    async def scenario() -> list[str]:
        busy = await ChatCore(stopped, limiter).answer_photo(jpeg(scene(1)), USER)
        at_once = await ChatCore(worker, limiter).answer_photo(jpeg(scene(1)), USER)
        await asyncio.sleep(1.1)  # the busy reply asks for a minute; here the period is a second
        later = await ChatCore(worker, limiter).answer_photo(jpeg(scene(1)), USER)
        return [busy.text, at_once.text, later.text]

    busy, at_once, later = asyncio.run(scenario())
    assert "busy" in busy and at_once.startswith("You're sending photos faster"), (busy, at_once)
    assert ONE_FACE.fullmatch(later), later


def test_photos_sent_together_are_limited_each_once(worker: InferenceWorker) -> None:
    """Ten photos at once from one user, with three a minute: three answered, seven told to wait, none twice."""
    core = ChatCore(worker, RateLimiter(3))
    sent = [Sent(jpeg(scene(1))) for _ in range(10)]

    async def slowly(photo: Sent) -> bytes:
        await asyncio.sleep(0.05)  # every photo is past the first look before any is counted
        return await photo.download()

    async def scenario() -> list[str]:
        replies = await asyncio.gather(
            *(core.answer(Photo(lambda p=p: slowly(p), len(p.data), "image/jpeg"), USER) for p in sent)
        )
        return [reply.text for reply in replies]

    texts = asyncio.run(scenario())
    answered = [t for t in texts if ONE_FACE.fullmatch(t)]
    waiting = [t for t in texts if t.startswith("You're sending photos faster than I can look at them")]
    assert (len(answered), len(waiting)) == (3, 7), texts
    assert all(p.fetched <= 1 for p in sent)


@pytest.mark.parametrize(
    ("content_type", "name", "image"),
    [
        ("image/jpeg", None, True),
        ("image/png; charset=binary", "photo.png", True),
        ("application/octet-stream", "IMG_0001.JPG", True),  # phones send files like this
        ("application/octet-stream", "portrait.jfif", True),  # Discord's copy refused it
        (None, "scan.png", True),
        (None, None, True),  # says nothing of itself: the decoder reads the bytes
        ("application/octet-stream", None, True),
        ("", "photo", True),
        ("application/octet-stream", "data.bin", False),  # the web page's copy took it
        ("application/pdf", "notes.pdf", False),
        ("text/plain", None, False),
        ("video/mp4", "clip.mp4", False),
    ],
)
def test_one_rule_says_what_is_an_image(content_type: str | None, name: str | None, image: bool) -> None:
    assert is_image(content_type, name) is image
