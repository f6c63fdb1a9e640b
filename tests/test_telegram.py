"""The Telegram adapter: the real python-telegram-bot application, polling a fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.core import ChatCore, RateLimiter, describe
from bot.telegram_adapter import build_application, run_telegram
from testkit.bots import telegram_bot
from testkit.crowd import CrowdWorker
from testkit.fake_telegram import MAX_TEXT, Call, FakeTelegram
from testkit.imagery import encode, jpeg, noise_image, scene

ONE_FACE = re.compile(r"Eileen, (9\d|100)% sure")
# Long enough for an answer that was going to come to have come: nothing to classify, one round trip.
QUIET_S = 1.0


def with_bot(core: ChatCore, scenario: Callable[[FakeTelegram], Awaitable[None]]) -> None:
    async def main() -> None:
        async with telegram_bot(core) as fake:
            await scenario(fake)

    asyncio.run(main())


def reply_to(fake: FakeTelegram, message: dict) -> list[Call]:
    """What the bot sent in answer to `message`."""
    return [
        c for c in fake.replies if c.reply_to == message["message_id"] and c.params["chat_id"] == message["chat"]["id"]
    ]


async def answers(fake: FakeTelegram, *messages: dict, timeout: float = 20.0) -> list[str]:
    """The text (or caption) of the one reply to each message, once all have come."""
    await fake.wait_until(lambda: all(reply_to(fake, m) for m in messages), timeout, "a reply to each message")
    texts = []
    for m in messages:
        sent = reply_to(fake, m)
        assert len(sent) == 1, f"message {m['message_id']}: {[c.params for c in sent]}"
        texts.append(sent[0].params.get("text") or sent[0].params.get("caption"))
    return texts


def test_a_private_photo_gets_a_one_line_reply_from_the_largest_size(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        sent = fake.push_private_photo(jpeg(scene(1)))
        (reply,) = await fake.wait_for("sendMessage")
        assert ONE_FACE.fullmatch(reply.params["text"]), reply.params["text"]
        assert reply.reply_to == sent["message_id"] and reply.params["chat_id"] == fake.private_chat["id"]
        largest = fake.files[sent["photo"][-1]["file_id"]].file_path
        assert fake.downloads == [largest]
        # "typing..." showed while the photo was looked at, before the answer came.
        actions = fake.called("sendChatAction")
        assert actions and actions[0].params["action"] == "typing" and actions[0].at < reply.at
        assert [c["command"] for c in fake.called("setMyCommands")[0].params["commands"]] == [
            "start",
            "help",
            "about",
            "whois",
            "privacy",
            "forget",
        ]
        assert "reply_markup" not in reply.params  # a core without feedback shows no buttons

    with_bot(core, scenario)


def test_several_faces_come_back_as_a_boxed_photo(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        sent = fake.push_private_photo(jpeg(scene(3, twins=(True, False, True))))
        (reply,) = await fake.wait_for("sendPhoto")
        caption = reply.params["caption"].splitlines()
        assert caption[0] == "I found 3 faces:"
        assert [line.split(",")[0] for line in caption[1:]] == ["1. Twin", "2. Eileen", "3. Twin"]
        assert reply.files["photo"][:3] == b"\xff\xd8\xff"
        assert reply.reply_to == sent["message_id"]
        assert "upload_photo" in [c.params["action"] for c in fake.called("sendChatAction")]
        assert not fake.called("sendMessage")

    with_bot(core, scenario)


def test_files_images_others_and_too_large(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        png = fake.push_document(encode(scene(1), "PNG"), "portrait.png", "image/png")
        unnamed = fake.push_document(jpeg(scene(1)), "IMG_0001.JPG", "application/octet-stream")
        pdf = fake.push_document(b"%PDF-1.7\n%...", "paper.pdf", "application/pdf")
        big = fake.push_document(b"\xff\xd8\xff", "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024)
        texts = await answers(fake, png, unnamed, pdf, big)
        assert ONE_FACE.fullmatch(texts[0]) and ONE_FACE.fullmatch(texts[1]), texts
        assert texts[2] == core.not_an_image().text
        assert texts[3] == core.refuse_size(25 * 1024 * 1024).text
        big_path = fake.files[big["document"]["file_id"]].file_path
        pdf_path = fake.files[pdf["document"]["file_id"]].file_path
        assert big_path not in fake.downloads and pdf_path not in fake.downloads
        assert len(fake.downloads) == 2

    with_bot(core, scenario)


def test_a_corrupt_photo_and_a_failed_download_get_one_line_answers(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        broken = fake.push_private_photo(jpeg(scene(1))[:4000])
        (damaged,) = await answers(fake, broken)
        assert "damaged" in damaged and "\n" not in damaged
        fake.fail_next("getFile", 400, "Bad Request: wrong file_id or the file is temporarily unavailable")
        lost = fake.push_private_photo(jpeg(scene(1)))
        assert await answers(fake, lost) == [core.download_failed().text]

    with_bot(core, scenario)


def test_commands_answer_with_the_cores_texts(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        for command in ("/start", "/help", "/about", "/whois"):
            fake.push_command(command)
        fake.push_text("hello?")
        sent = await fake.wait_for("sendMessage", count=5)
        # Handled concurrently, so in any order; a private chat's command is answered without quoting it.
        help_text = core.help_text()
        expected = [core.start_text(), help_text, core.about_text(), core.whois_without_photo().text, help_text]
        assert sorted(c.params["text"] for c in sent) == sorted(expected)
        await asyncio.sleep(QUIET_S)
        assert len(fake.replies) == 5

    with_bot(core, scenario)


def test_groups_answer_only_when_asked(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        photo = jpeg(scene(1))
        ignored = fake.push_group_photo(photo, caption="look at this")
        elsewhere = fake.push_group_photo(photo, caption="@some_other_bot who is it?")
        plain = fake.push_group_photo(photo)
        chatter = fake.push_reply(plain, "nice one")
        mentioned = fake.push_group_photo(photo, caption="who is it, @Doppel_Test_Bot?")
        named = fake.push_group_photo(
            photo,
            caption="Doppelbot, who?",
            caption_entities=[{"type": "text_mention", "offset": 0, "length": 9, "user": fake.bot_user}],
        )
        asked = fake.push_reply(plain, "@doppel_test_bot")
        whois = fake.push_reply(plain, "/whois")
        whois_at = fake.push_reply(plain, "/whois@doppel_test_bot")
        texts = await answers(fake, mentioned, named)
        # A mention or /whois replying to a photo is answered quoting the photo itself (where a press on the
        # answer's buttons finds it again): `plain` gets the three answers.
        await fake.wait_until(lambda: len(reply_to(fake, plain)) == 3, what="three answers quoting the photo")
        texts += [c.params["text"] for c in reply_to(fake, plain)]
        assert all(ONE_FACE.fullmatch(t) for t in texts), texts
        await asyncio.sleep(QUIET_S)
        assert len(fake.replies) == 5
        for message in (ignored, elsewhere, chatter, asked, whois, whois_at):
            assert not reply_to(fake, message)
        assert fake.downloads.count(fake.files[plain["photo"][-1]["file_id"]].file_path) == 3

    with_bot(core, scenario)


def test_an_album_gets_one_answer_per_photo(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        album = fake.push_media_group([jpeg(scene(1)), jpeg(noise_image())])
        texts = await answers(fake, *album)
        assert ONE_FACE.fullmatch(texts[0]) and texts[1] == "I can't find a face in this photo.", texts

    with_bot(core, scenario)


def test_a_failing_reply_is_answered_by_the_error_handler_without_the_token(
    core: ChatCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario(fake: FakeTelegram) -> None:
        fake.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        first = fake.push_private_photo(jpeg(scene(3)))
        assert await answers(fake, first) == [core.failed().text]
        # The bot lives on: the next photo is answered as usual.
        second = fake.push_private_photo(jpeg(scene(1)))
        assert ONE_FACE.fullmatch((await answers(fake, second))[0])
        assert fake.token not in caplog.text
        failures = [r for r in caplog.records if r.name == "doppelbot.telegram" and r.levelno == logging.ERROR]
        assert len(failures) == 1 and "photo_invalid_dimensions" in failures[0].getMessage().lower()

    with_bot(core, scenario)


def test_stopping_delivers_the_reply_in_progress(core: ChatCore) -> None:
    async def main() -> None:
        async with FakeTelegram() as fake:
            stop = asyncio.Event()
            running = asyncio.create_task(
                run_telegram(build_application(fake.token, core, fake.base_url, fake.base_file_url), stop)
            )
            fake.download_delay = 0.5
            sent = fake.push_private_photo(jpeg(scene(1)))
            await fake.wait_for("file download")
            stop.set()
            stopped_at = time.monotonic()
            await asyncio.wait_for(running, 30)
            (reply,) = reply_to(fake, sent)
            assert ONE_FACE.fullmatch(reply.params["text"])
            assert reply.at > stopped_at

    asyncio.run(main())


def test_a_long_reply_comes_whole_in_several_messages_within_telegrams_limits() -> None:
    crowd = CrowdWorker(100)
    text = describe(crowd.answer, crowd.boxed, max_listed=100).text
    assert len(text) > MAX_TEXT  # one message: "Bad Request: message is too long"

    async def scenario(fake: FakeTelegram) -> None:
        sent = fake.push_private_photo(jpeg(scene(1)))
        await fake.wait_until(lambda: len(reply_to(fake, sent)) >= 3, what="the photo and the list")
        await asyncio.sleep(QUIET_S)
        photo, *texts = reply_to(fake, sent)
        assert photo.method == "sendPhoto" and photo.files["photo"] == crowd.boxed
        assert "caption" not in photo.params  # the list is too long to go under the photo
        assert [c.method for c in texts] == ["sendMessage"] * len(texts) and len(texts) >= 2
        assert all(len(c.params["text"]) <= MAX_TEXT for c in texts)
        assert "\n".join(c.params["text"] for c in texts) == text
        assert "Bryce Dallas Howard" in text and "_" not in text
        assert not [c for c in fake.calls if c.error], [c.error for c in fake.calls if c.error]

    with_bot(ChatCore(crowd, RateLimiter(1000), max_faces_listed=100), scenario)


def test_a_502_or_a_dropped_connection_on_the_reply_still_delivers_it_exactly_once(core: ChatCore) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        fake.bad_gateway_next("sendMessage")
        first = fake.push_private_photo(jpeg(scene(1)))
        assert ONE_FACE.fullmatch((await answers(fake, first))[0])
        fake.drop_next("sendMessage")
        second = fake.push_private_photo(jpeg(scene(1)))
        assert ONE_FACE.fullmatch((await answers(fake, second))[0])
        await asyncio.sleep(QUIET_S)
        assert [len(reply_to(fake, m)) for m in (first, second)] == [1, 1]
        assert [c.fault for c in fake.called("sendMessage")] == ["bad_gateway", None, "drop", None]

    with_bot(core, scenario)


def test_past_the_rate_limit_nothing_is_downloaded_and_refusals_use_no_quota(worker) -> None:
    limited = ChatCore(worker, RateLimiter(1))

    async def scenario(fake: FakeTelegram) -> None:
        pdf = fake.push_document(b"%PDF-1.7\n%...", "paper.pdf", "application/pdf")
        big = fake.push_document(b"\xff\xd8\xff", "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024)
        too_large = limited.refuse_size(25 * 1024 * 1024).text
        assert await answers(fake, pdf, big) == [limited.not_an_image().text, too_large]
        fake.fail_next("getFile", 400, "Bad Request: wrong file_id or the file is temporarily unavailable")
        lost = fake.push_private_photo(jpeg(scene(1)))
        assert await answers(fake, lost) == [limited.download_failed().text]
        # Three refusals later, the user's one photo a minute is still there.
        answered = fake.push_private_photo(jpeg(scene(1)))
        assert ONE_FACE.fullmatch((await answers(fake, answered))[0])
        late = fake.push_private_photo(jpeg(scene(1)))
        (text,) = await answers(fake, late)
        assert text.startswith("You're sending photos faster than I can look at them"), text
        assert fake.files[late["photo"][-1]["file_id"]].file_path not in fake.downloads
        assert len(fake.downloads) == 1

    with_bot(limited, scenario)
