"""The Discord adapter: the real discord.py client against a fake Discord (REST and gateway) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

import discord
import pytest

from bot.core import ChatCore, RateLimiter, describe
from bot.discord_adapter import SessionStartsUsedUp, build_client, run_discord
from bot.worker import InferenceWorker
from testkit.bots import discord_bot
from testkit.crowd import CrowdWorker
from testkit.fake_discord import MAX_CONTENT, FakeDiscord, RestCall
from testkit.imagery import jpeg, noise_image, scene

TOKEN = "fake-token.never-logged"
ONE_FACE = re.compile(r"Eileen, (9\d|100)% sure")
JPEG_MAGIC = b"\xff\xd8\xff"
# Long enough for a reply that was going to come to have come: nothing to classify, one round trip.
QUIET_S = 1.0


def run_with_bot(core: ChatCore, scenario: Callable[[FakeDiscord], Awaitable[None]]) -> None:
    async def main() -> None:
        async with discord_bot(core) as fake:
            await scenario(fake)

    asyncio.run(main())


def replies(fake: FakeDiscord) -> list[RestCall]:
    """The messages the bot posted in the guild's channel."""
    return fake.calls_where(lambda call: call.is_message_to(fake.channel_id))


async def reply_to(fake: FakeDiscord, message: dict) -> RestCall:
    return await fake.wait_for(lambda call: call.is_message_to(fake.channel_id) and call.reply_to == int(message["id"]))


async def followup_to(fake: FakeDiscord, interaction: dict) -> RestCall:
    """The bot's followup message for a slash command."""
    path = f"/webhooks/{fake.application_id}/{interaction['token']}"
    return await fake.wait_for(lambda call: call.method == "POST" and call.path.endswith(path))


def test_a_mention_with_a_one_face_photo_gets_a_reply(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(jpeg(scene(1)))
        message = await fake.send_message(fake.user(), "who is this?", attachments=[photo])
        reply = await reply_to(fake, message)
        assert ONE_FACE.fullmatch(reply.content), reply.content
        assert reply.files == []
        typing = fake.calls_where(lambda call: call.path.endswith("/typing"))
        assert typing and fake.calls.index(typing[0]) < fake.calls.index(reply), "no typing before the answer"

    run_with_bot(core, scenario)


def test_three_faces_get_a_numbered_list_and_the_boxed_photo(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(jpeg(scene(3, twins=(True, False, True))), "party.jpg")
        message = await fake.send_message(fake.user(), attachments=[photo])
        reply = await reply_to(fake, message)
        lines = reply.content.splitlines()
        assert lines[0] == "I found 3 faces:"
        assert [line.split(",")[0] for line in lines[1:]] == ["1. Twin", "2. Eileen", "3. Twin"]
        [upload] = reply.files
        assert upload.filename.endswith(".jpg") and upload.data.startswith(JPEG_MAGIC)

    run_with_bot(core, scenario)


def test_a_mention_replying_to_a_photo_answers_about_that_photo(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(jpeg(scene(1)))
        posted = await fake.send_message(fake.user("alice"), "look at her", mention_bot=False, attachments=[photo])
        question = await fake.send_message(fake.user("bob"), "who is that?", reply_to=posted)
        reply = await reply_to(fake, question)
        assert ONE_FACE.fullmatch(reply.content), reply.content
        assert len(fake.downloads(photo)) == 1
        assert all(call.reply_to != int(posted["id"]) for call in replies(fake)), "answered the unmentioned photo"
        # Without the replied-to message in the event, the bot fetches it.
        question = await fake.send_message(fake.user("carol"), "and now?", reply_to=posted, include_referenced=False)
        reply = await reply_to(fake, question)
        assert ONE_FACE.fullmatch(reply.content), reply.content
        assert fake.calls_where(lambda call: call.method == "GET" and call.path.endswith(f"/messages/{posted['id']}"))

    run_with_bot(core, scenario)


def test_whois_defers_then_follows_up_with_the_answer(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        # Synced at start, with the users' rights beside it.
        assert [(c["name"], c["type"]) for c in fake.commands] == [
            ("whois", 1),
            ("privacy", 1),
            ("forget", 1),
            ("Who is this?", 3),  # in a message's Apps menu
        ]
        whois = fake.commands[0]
        assert [(o["name"], o["type"], o.get("required")) for o in whois["options"]] == [("photo", 11, True)]
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": fake.attachment(jpeg(scene(1)))})
        followup = await followup_to(fake, interaction)
        assert ONE_FACE.fullmatch(followup.content), followup.content
        [callback] = fake.calls_where(
            lambda call: call.path.endswith(f"/interactions/{interaction['id']}/{interaction['token']}/callback")
        )
        assert callback.json["type"] == 5, "the bot should show it is thinking first"
        assert fake.calls.index(callback) < fake.calls.index(followup)

    run_with_bot(core, scenario)


def test_whois_with_three_faces_sends_the_boxed_photo(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(jpeg(scene(3, twins=(True, False, True))))
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": photo})
        followup = await followup_to(fake, interaction)
        assert followup.content.startswith("I found 3 faces:")
        [upload] = followup.files
        assert upload.data.startswith(JPEG_MAGIC)

    run_with_bot(core, scenario)


def test_messages_not_asking_the_bot_are_ignored(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(jpeg(scene(1)))
        await fake.send_message(fake.user(), "nice photo", mention_bot=False, attachments=[photo])
        await fake.send_message(fake.bot_user, "my own words", attachments=[photo])
        # Events are handled in the order they come, and ignoring one needs no request: once the bot has
        # answered a later mention, it has passed over the earlier messages.
        hint = await fake.send_message(fake.user(), "hello")
        reply = await reply_to(fake, hint)
        assert reply.content == core.mention_hint().text
        # Replying to the bot's answer notifies the bot, but is no question to it.
        await fake.send_message(fake.user(), "thanks!", mention_bot=False, reply_to=reply.response, reply_ping=True)
        last = await reply_to(fake, await fake.send_message(fake.user(), "bye"))
        assert replies(fake) == [reply, last]
        assert fake.downloads(photo) == []

    run_with_bot(core, scenario)


def test_files_that_are_not_images_or_too_large_are_refused_without_download(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        notes = fake.attachment(b"%PDF-1.7 minutes of the meeting", "notes.pdf", "application/pdf")
        message = await fake.send_message(fake.user(), attachments=[notes])
        assert (await reply_to(fake, message)).content == core.not_an_image().text

        huge = fake.attachment(jpeg(scene(1)), "huge.jpg", size=25 * 1024 * 1024)
        message = await fake.send_message(fake.user(), attachments=[huge])
        reply = await reply_to(fake, message)
        assert reply.content.startswith("That file is 25 MB; I can look at files up to 20 MB")
        assert fake.downloads(huge) == [] and fake.downloads(notes) == []

        nameless = fake.attachment(jpeg(noise_image()), "scan.png", content_type=None)  # an image by its name
        message = await fake.send_message(fake.user(), attachments=[nameless])
        assert (await reply_to(fake, message)).content == "I can't find a face in this photo."
        # The one image rule of every adapter: a .jfif sent as octet-stream is a photo here too.
        jfif = fake.attachment(jpeg(scene(1)), "portrait.jfif", content_type="application/octet-stream")
        message = await fake.send_message(fake.user(), attachments=[jfif])
        assert ONE_FACE.fullmatch((await reply_to(fake, message)).content)

    run_with_bot(core, scenario)


def test_a_stop_delivers_the_answer_in_progress(core: ChatCore) -> None:
    async def main() -> None:
        async with FakeDiscord() as fake:
            stop = asyncio.Event()
            bot = asyncio.create_task(run_discord(build_client(core, fake.api_base, fake.gateway_url), TOKEN, stop))
            await fake.wait_ready()
            fake.cdn_delay = 1.0  # the photo is still downloading when the stop comes
            photo = fake.attachment(jpeg(scene(1)))
            message = await fake.send_message(fake.user(), attachments=[photo])
            await fake.wait_for(lambda call: call.path == photo["url"].removeprefix(fake.base_url))
            stop.set()
            await asyncio.wait_for(bot, 30)
            [reply] = replies(fake)
            assert reply.reply_to == int(message["id"]) and reply.status == 200
            assert ONE_FACE.fullmatch(reply.content), reply.content
            # The endpoints pointed at the fake were discord.py-wide: they are put back on close.
            assert discord.http.Route.BASE == "https://discord.com/api/v10"
            assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"

    asyncio.run(main())


def test_a_wrong_token_stops_with_a_login_failure_that_does_not_show_the_token(
    core: ChatCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with FakeDiscord(token="the-real-token") as fake:
            client = build_client(core, fake.api_base, fake.gateway_url)
            with pytest.raises(discord.LoginFailure):
                await asyncio.wait_for(run_discord(client, TOKEN, asyncio.Event()), 20)
            assert fake.identifies == []

    asyncio.run(main())
    assert TOKEN not in caplog.text


class BrokenClassifier:
    """A model that fails on every photo, as a corrupt model file would."""

    limits = None

    def classify_many(self, photos: list[bytes]) -> list:
        raise RuntimeError("the model is broken")


def test_a_failing_handler_apologises_logs_no_secrets_and_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="doppelbot")
    worker = InferenceWorker(BrokenClassifier())
    broken = ChatCore(worker, RateLimiter(100))
    failed = broken.failed().text
    photo_bytes = jpeg(scene(1))

    async def scenario(fake: FakeDiscord) -> None:
        message = await fake.send_message(fake.user(), attachments=[fake.attachment(photo_bytes)])
        assert (await reply_to(fake, message)).content == failed
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": fake.attachment(photo_bytes)})
        followup = await followup_to(fake, interaction)
        assert followup.content == failed
        hint = await fake.send_message(fake.user(), "still there?")
        assert (await reply_to(fake, hint)).content == broken.mention_hint().text

    try:
        run_with_bot(broken, scenario)
    finally:
        worker.close(timeout=30)
    assert "the on_message handler failed" in caplog.text and "/whois command failed" in caplog.text
    assert TOKEN not in caplog.text
    assert repr(photo_bytes[:32])[2:-1] not in caplog.text


async def attempts(fake: FakeDiscord, message: dict, count: int) -> list[RestCall]:
    """The bot's first `count` tries at replying to `message`, once it has made them and had time for more."""

    def tries() -> list[RestCall]:
        return fake.calls_where(
            lambda call: call.is_message_to(fake.channel_id) and call.reply_to == int(message["id"])
        )

    await fake.wait_for(lambda _: len(tries()) >= count)
    await asyncio.sleep(QUIET_S)
    return tries()


def test_a_failing_typing_indicator_never_costs_the_answer(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        fake.fail_next("typing", 503, times=10)
        message = await fake.send_message(fake.user(), attachments=[fake.attachment(jpeg(scene(1)))])
        [reply] = await attempts(fake, message, 1)
        assert ONE_FACE.fullmatch(reply.content) and reply.status == 200, reply.content
        typing = fake.calls_where(lambda call: call.path.endswith("/typing"))
        assert typing and all(call.status == 503 for call in typing)

    run_with_bot(core, scenario)


def test_a_5xx_or_a_dropped_connection_on_the_reply_still_delivers_it_exactly_once(core: ChatCore) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        # discord.py sends again by itself after a 502 (checked here too); not after a 503 or a dropped connection.
        for fault in ("502", "503", "dropped"):
            if fault == "dropped":
                fake.drop_next("create_message")
            else:
                fake.fail_next("create_message", int(fault))
            message = await fake.send_message(fake.user(), attachments=[fake.attachment(jpeg(scene(1)))])
            failed, delivered = await attempts(fake, message, 2)
            assert failed.fault == fault and delivered.fault is None and delivered.status == 200
            assert ONE_FACE.fullmatch(delivered.content), delivered.content

    run_with_bot(core, scenario)


def test_a_long_reply_comes_whole_in_messages_within_discords_limit() -> None:
    crowd = CrowdWorker(100)
    text = describe(crowd.answer, crowd.boxed, max_listed=100).text
    assert len(text) > 2 * MAX_CONTENT

    async def scenario(fake: FakeDiscord) -> None:
        message = await fake.send_message(fake.user(), attachments=[fake.attachment(jpeg(scene(1)))])
        await fake.wait_for(lambda _: len(replies(fake)) >= 3)
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": fake.attachment(jpeg(scene(1)))})
        path = f"/webhooks/{fake.application_id}/{interaction['token']}"

        def followups() -> list[RestCall]:
            return fake.calls_where(lambda call: call.method == "POST" and call.path.endswith(path))

        await fake.wait_for(lambda _: len(followups()) >= 3)
        await asyncio.sleep(QUIET_S)
        for sent in (replies(fake), followups()):
            assert all(call.status == 200 and len(call.content) <= MAX_CONTENT for call in sent)
            assert "\n".join(call.content for call in sent) == text
            assert [len(call.files) for call in sent] == [1] + [0] * (len(sent) - 1)  # the boxed photo first
        assert replies(fake)[0].reply_to == int(message["id"])

    run_with_bot(ChatCore(crowd, RateLimiter(1000), max_faces_listed=100), scenario)


def test_past_the_rate_limit_nothing_is_downloaded_and_refusals_use_no_quota(worker: InferenceWorker) -> None:
    limited = ChatCore(worker, RateLimiter(1))

    async def scenario(fake: FakeDiscord) -> None:
        notes = fake.attachment(b"%PDF-1.7 minutes", "notes.pdf", "application/pdf")
        huge = fake.attachment(jpeg(scene(1)), "huge.jpg", size=25 * 1024 * 1024)
        first, second = fake.attachment(jpeg(scene(1))), fake.attachment(jpeg(scene(1)))
        message = await fake.send_message(fake.user(), attachments=[notes, huge, first, second])
        texts = [call.content for call in await attempts(fake, message, 4)]
        assert texts[:2] == [limited.not_an_image().text, limited.refuse_size(25 * 1024 * 1024).text]
        assert ONE_FACE.fullmatch(texts[2]), texts
        assert texts[3].startswith("You're sending photos faster than I can look at them"), texts
        assert [len(fake.downloads(a)) for a in (notes, huge, first, second)] == [0, 0, 1, 0]

    run_with_bot(limited, scenario)


def test_unset_shards_are_discords_recommended_count_all_in_this_process(core: ChatCore) -> None:
    """Discord recommends 2 shards: both run here, and each server's mention, and a direct message, get one reply."""

    async def main() -> None:
        async with discord_bot(core, shards=2, guilds=2) as fake:
            assert fake.identified_shards == [[0, 2], [1, 2]]
            asked = [
                await fake.send_message(fake.user(), "who?", attachments=[fake.attachment(jpeg(scene(1)))], guild=1),
                await fake.send_message(fake.user(), "who?", attachments=[fake.attachment(jpeg(scene(1)))], guild=0),
                await fake.send_message(
                    fake.user(), "and her?", attachments=[fake.attachment(jpeg(scene(1)))], dm=True
                ),
            ]
            answers = [await fake.wait_for(lambda c, m=m: c.reply_to == int(m["id"]), timeout=60) for m in asked]
            await asyncio.sleep(QUIET_S)
            for message, answer in zip(asked, answers, strict=True):
                assert answer.is_message_to(int(message["channel_id"])) and ONE_FACE.fullmatch(answer.content)
                assert len(fake.calls_where(lambda c, m=message: c.reply_to == int(m["id"]))) == 1

            # Server 1 lies on shard 1, server 0 and direct messages on shard 0: each shard's session was sent
            # only its own servers and messages.
            def sent(event: str) -> dict[int, list[str]]:
                return {s.shard[0]: [e["d"]["id"] for e in s.events if e["t"] == event] for s in fake.sessions}

            assert sent("GUILD_CREATE") == {0: [str(fake.guild_ids[0])], 1: [str(fake.guild_ids[1])]}
            assert sent("MESSAGE_CREATE") == {0: [asked[1]["id"], asked[2]["id"]], 1: [asked[0]["id"]]}

    asyncio.run(main())


def test_with_no_session_starts_left_today_the_bot_does_not_connect_and_says_why(core: ChatCore) -> None:
    """Past Discord's daily session starts every session of the bot is ended: better not to connect at all."""

    async def main() -> None:
        async with FakeDiscord(token=TOKEN) as fake:
            fake.session_starts_left = 0
            client = build_client(core, fake.api_base, fake.gateway_url)
            with pytest.raises(SessionStartsUsedUp, match=r"0 more session start\(s\) for 4\.0 h .* would start 1"):
                await asyncio.wait_for(run_discord(client, TOKEN, asyncio.Event()), 30)
            assert fake.connections == [] and fake.identifies == []

    asyncio.run(main())


def test_what_each_discord_failure_means_for_a_retry() -> None:
    """A refused token or gateway stays down; an outage is retried; a used-up day is waited out, to the second."""
    from types import SimpleNamespace

    import aiohttp

    from bot.discord_adapter import failure_of

    closed = SimpleNamespace(close_code=None)
    response = SimpleNamespace(status=503, reason="Service Unavailable")
    refused = [
        discord.LoginFailure("Improper token has been passed."),
        discord.ConnectionClosed(closed, shard_id=0, code=4004),
        discord.ConnectionClosed(closed, shard_id=0, code=4013),
        discord.PrivilegedIntentsRequired(0),
        ValueError("a bug of ours"),
    ]
    retried = [
        discord.DiscordServerError(response, "down"),
        discord.GatewayNotFound(),
        aiohttp.ClientConnectionError("refused"),
        TimeoutError(),
    ]
    assert [failure_of(error).retry for error in refused] == [False] * len(refused)
    assert "token (4004" in failure_of(refused[1]).reason and failure_of(refused[4]).unexpected
    assert [failure_of(error).retry for error in retried] == [True] * len(retried)
    assert all(failure_of(error).after is None for error in retried)  # the backoff's wait
    used_up = failure_of(SessionStartsUsedUp("none left", 3600.0))
    assert used_up.retry and used_up.after == 3601.0
