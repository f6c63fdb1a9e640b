"""The webhook's intake in this process: the real python-telegram-bot application and aiohttp server, the fake
Bot API, and a real `redis-server`; what each update's handling came to, and what Telegram is answered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from telegram import Update

from bot.core import ChatCore
from bot.telegram_adapter import Outcome, build_application, handle_update
from bot.telegram_webhook import DRAIN_SECONDS, SECRET_HEADER, WebhookIntake, run_telegram_webhook
from bot.updates import MemoryUpdateLog, RedisUpdateLog, UpdateLog
from bot.web_adapter import start_web
from testkit.fake_telegram import DOWNLOAD, FakeTelegram
from testkit.imagery import jpeg, scene
from testkit.redis_server import RedisServer

ONE_FACE = re.compile(r"Eileen, (9\d|100)% sure")
SECRET = "intake-secret"


@dataclass
class Hook:
    fake: FakeTelegram
    url: str
    stop: asyncio.Event
    running: asyncio.Task
    updates: UpdateLog

    async def post(self, update: dict) -> int:
        async with aiohttp.ClientSession() as s, s.post(self.url, json=update, headers={SECRET_HEADER: SECRET}) as r:
            return r.status

    def replies(self, message: dict) -> list[str]:
        sent = [c for c in self.fake.replies if c.reply_to == message["message_id"]]
        return [c.params.get("text") or c.params.get("caption") or "" for c in sent]


@asynccontextmanager
async def webhook(
    core: ChatCore, updates: UpdateLog | None = None, drain: float = DRAIN_SECONDS, fake: FakeTelegram | None = None
) -> AsyncIterator[Hook]:
    """Our webhook on a free port, its application running against `fake` (a new fake Bot API when None)."""
    async with fake or FakeTelegram() as telegram:
        app = build_application(telegram.token, core, telegram.base_url, telegram.base_file_url, polling=False)
        updates = updates or MemoryUpdateLog(2.0)
        intake = WebhookIntake(app, SECRET, updates, telegram.token.partition(":")[0])
        page = web.Application()
        page.router.add_post("/hook", intake.receive)
        runner = await start_web(page, "127.0.0.1", 0)
        stop = asyncio.Event()
        running = asyncio.create_task(run_telegram_webhook(app, intake, stop, drain))
        try:
            while not intake.accepting:
                assert not running.done(), running
                await asyncio.sleep(0.01)
            yield Hook(telegram, f"http://127.0.0.1:{runner.addresses[0][1]}/hook", stop, running, updates)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            await runner.cleanup()


def test_each_update_comes_to_replied_nothing_or_failed(core: ChatCore) -> None:
    """Three values a caller can see; a reply Telegram would not take is FAILED, and not apologized for."""

    async def scenario() -> None:
        async with FakeTelegram() as fake:
            app = build_application(fake.token, core, fake.base_url, fake.base_file_url, polling=False)
            async with app:

                async def handle(message: dict) -> Outcome:
                    return await handle_update(app, Update.de_json(fake.pushed[-1], app.bot))

                photo = fake.push_private_photo(jpeg(scene(1)))
                assert await handle(photo) is Outcome.REPLIED
                assert ONE_FACE.fullmatch(fake.replies[-1].params["text"])
                assert await handle(fake.push_group_photo(jpeg(scene(1)), "holiday")) is Outcome.NOTHING
                fake.fail_next("sendMessage", 500, "Internal Server Error", times=2)  # sent once more, refused again
                refused = fake.push_private_photo(jpeg(scene(1)))
                assert await handle(refused) is Outcome.FAILED
                assert [c.error for c in fake.called("sendMessage")[-2:]] == ["Internal Server Error"] * 2
                assert not [c for c in fake.replies if c.reply_to == refused["message_id"]]  # no apology either
                # A failure of ours (here: Telegram refusing the reply for good) is apologized for, as when polling.
                fake.fail_next("sendMessage", 400, "Bad Request: can't parse entities")
                broken = fake.push_private_photo(jpeg(scene(1)))
                assert await handle(broken) is Outcome.REPLIED
                assert [c.params["text"] for c in fake.replies if c.reply_to == broken["message_id"]] == [
                    core.failed().text
                ]

    asyncio.run(scenario())


def test_a_reply_that_could_not_be_sent_is_released_and_answered_500(core: ChatCore) -> None:
    async def scenario() -> None:
        async with webhook(core) as hook:
            hook.fake.fail_next("sendMessage", 502, "Bad Gateway", times=2)
            message = hook.fake.push_private_photo(jpeg(scene(1)))
            update = hook.fake.pushed[-1]
            assert await hook.post(update) == 500
            assert hook.replies(message) == []
            assert await hook.post(update) == 200  # Telegram's redelivery, handled at once: the claim was released
            (reply,) = hook.replies(message)
            assert ONE_FACE.fullmatch(reply)

    asyncio.run(scenario())


def test_stopping_answers_the_updates_in_hand_and_turns_new_ones_away(core: ChatCore) -> None:
    """Their replies go out before the bot's HTTP client is closed; an update arriving meanwhile gets 503."""

    async def scenario() -> None:
        async with webhook(core) as hook:
            hook.fake.download_delay = 0.5
            messages = [hook.fake.push_private_photo(jpeg(scene(1))) for _ in range(3)]
            updates = list(hook.fake.pushed[-3:])
            posts = [asyncio.create_task(hook.post(u)) for u in updates]
            await hook.fake.wait_until(lambda: len(hook.fake.called(DOWNLOAD)) >= 3, what="three downloads")
            hook.stop.set()
            late = hook.fake.push_private_photo(jpeg(scene(1)))
            assert await hook.post(hook.fake.pushed[-1]) == 503
            assert await asyncio.gather(*posts) == [200, 200, 200]
            assert all(len(hook.replies(m)) == 1 and ONE_FACE.fullmatch(hook.replies(m)[0]) for m in messages)
            assert hook.replies(late) == []
            await asyncio.wait_for(hook.running, 30)

    asyncio.run(scenario())


def test_an_update_still_unanswered_when_the_drain_ends_is_given_back_to_telegram(core: ChatCore) -> None:
    async def scenario() -> None:
        updates = MemoryUpdateLog(30.0)
        async with webhook(core, updates, drain=0.5) as hook:
            hook.fake.download_delay = 10.0  # far longer than the drain
            message = hook.fake.push_private_photo(jpeg(scene(1)))
            update = hook.fake.pushed[-1]
            post = asyncio.create_task(hook.post(update))
            await hook.fake.wait_for(DOWNLOAD)
            hook.stop.set()
            assert await post == 503  # not 2xx: Telegram delivers it again
            assert hook.replies(message) == []
            # Released, not left claimed for 30 s: the redelivery is handled at once by whoever gets it.
            key = f"{hook.fake.token.partition(':')[0]}:{update['update_id']}"
            assert (await updates.claim(key)).state == "new"

    asyncio.run(scenario())


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def test_with_redis_gone_updates_are_still_answered_once_and_never_apologized_for(
    core: ChatCore, redis: RedisServer
) -> None:
    """Redis stops while a photo is handled (recording "answered" fails) and stays down for the next (the claim
    fails): both are answered once, 200, no apology."""

    async def scenario() -> None:
        updates = RedisUpdateLog(redis.url, 2.0, prefix="test:blip:")
        async with webhook(core, updates) as hook:
            hook.fake.download_delay = 0.5
            first = hook.fake.push_private_photo(jpeg(scene(1)))
            post = asyncio.create_task(hook.post(hook.fake.pushed[-1]))
            await hook.fake.wait_for(DOWNLOAD)  # claimed in Redis by now
            await asyncio.to_thread(redis.stop)
            assert await post == 200
            second = hook.fake.push_private_photo(jpeg(scene(1)))
            assert await hook.post(hook.fake.pushed[-1]) == 200
            for message in (first, second):
                (reply,) = hook.replies(message)
                assert ONE_FACE.fullmatch(reply), reply
        await updates.close()

    asyncio.run(scenario())


def test_two_bots_sharing_redis_each_answer_their_own_update_with_the_same_id(
    core: ChatCore, redis: RedisServer
) -> None:
    """Update ids are per bot: the same id from two bots is two updates."""

    async def scenario() -> None:
        shared = "test:two-bots:"
        one, two = (RedisUpdateLog(redis.url, 2.0, prefix=shared) for _ in range(2))
        other = FakeTelegram(token="987654321:AAAnotherBotsTokenForTests_0123456")
        async with webhook(core, one) as first, webhook(core, two, fake=other) as second:
            mine = first.fake.push_private_photo(jpeg(scene(1)))
            theirs = second.fake.push_private_photo(jpeg(scene(1)))
            assert first.fake.pushed[-1]["update_id"] == second.fake.pushed[-1]["update_id"]
            assert await first.post(first.fake.pushed[-1]) == 200
            assert await second.post(second.fake.pushed[-1]) == 200
            assert len(first.replies(mine)) == 1 and len(second.replies(theirs)) == 1
            keys = sorted(k.decode() for k in await one._redis.keys(shared + "*"))
            assert "AAA" not in "".join(keys) and "AAF" not in "".join(keys)  # the bot's id, never its token
            assert keys == [f"{shared}123456789:100000", f"{shared}987654321:100000"]
        await one.close()
        await two.close()

    asyncio.run(scenario())
