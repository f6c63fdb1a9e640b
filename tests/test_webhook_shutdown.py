"""Webhook replicas stopped and refused, through real `python -m bot` processes: a replica stopped with SIGTERM
answers the updates in hand before it exits, and a reply Telegram will not take is answered on redelivery."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import aiohttp
import pytest

from bot.core import ChatCore, RateLimiter
from testkit.e2e import model_folder, telegram_replies_to, telegram_text
from testkit.fake_telegram import DOWNLOAD
from testkit.imagery import jpeg, scene
from testkit.redis_server import RedisServer
from testkit.webhook_harness import WebhookBot, deliver

APOLOGY = ChatCore(None, RateLimiter(1)).failed().text


@pytest.fixture(scope="module")
def model(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(exported, tmp_path_factory.mktemp("webhook-shutdown-model"))


@pytest.fixture(scope="module")
def replicas(model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two replicas sharing Redis and one fake Telegram (started once: a replica takes seconds to start)."""
    folder = tmp_path_factory.mktemp("replicas")
    with RedisServer() as redis, WebhookBot(model, folder / "a", None, {"REDIS_URL": redis.url}) as first:
        second = WebhookBot(model, folder / "b", None, {"REDIS_URL": redis.url}).start_beside(first)
        try:
            yield first, second
        finally:
            second.stop_beside()


async def _ready(bot: WebhookBot) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{bot.port}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def test_a_reply_telegram_refuses_three_times_is_answered_once_on_redelivery_without_apology(replicas) -> None:
    bot = replicas[1]  # the one that is not stopped
    fake = bot.telegram
    before = bot.call(lambda: len(fake.called("sendMessage")))
    # The bot sends once more after a 5xx: the first delivery meets two refusals, the redelivery one.
    bot.call(lambda: fake.fail_next("sendMessage", 500, "Internal Server Error", times=3))
    message = bot.call(lambda: fake.push_private_photo(jpeg(scene(1))))
    tries = bot.run(deliver(bot.call(lambda: fake.pushed[-1]), [bot.hook], deadline=60))
    replies = bot.call(lambda: [telegram_text(c) for c in telegram_replies_to(fake, message)])
    refused = bot.call(lambda: [c.error for c in fake.called("sendMessage")[before:] if c.error])
    sent = bot.call(lambda: [c.params.get("text") for c in fake.called("sendMessage")[before:]])
    assert tries == 2  # answered 500 the first time: Telegram delivered it again
    assert len(replies) == 1 and replies[0].startswith("Eileen"), replies
    assert refused == ["Internal Server Error"] * 3
    assert APOLOGY not in sent, sent


def test_sigterm_with_20_photos_in_flight_answers_each_exactly_once(replicas) -> None:
    """All 20 in hand when the signal comes are answered by the stopping replica (each 200 at its first try);
    an update arriving after the signal is turned away and answered by the other replica."""
    first, second = replicas
    fake = first.telegram
    messages = [first.call(lambda: fake.push_private_photo(jpeg(scene(1)))) for _ in range(20)]
    updates = first.call(lambda: list(fake.pushed[-20:]))
    downloads = first.call(lambda: len(fake.called(DOWNLOAD)))

    async def scenario() -> tuple[list[int], int]:
        fake.download_delay = 1.0  # so that all 20 are surely in hand when the signal comes
        hooks = [first.hook, second.hook]
        pending = [asyncio.create_task(deliver(u, hooks, 0, deadline=60)) for u in updates]
        await fake.wait_until(lambda: len(fake.called(DOWNLOAD)) >= downloads + 20, 60, "20 downloads under way")
        first.process.send_signal(signal.SIGTERM)
        while await _ready(first):  # taking no more updates
            await asyncio.sleep(0.05)
        fake.push_private_photo(jpeg(scene(1)))
        late = await deliver(fake.pushed[-1], hooks, 0, deadline=60)
        return await asyncio.gather(*pending), late

    tries, late_tries = first.run(scenario(), timeout=120)
    code = first.process.wait(60)
    messages.append(first.call(lambda: fake.pushed[-1]["message"]))
    answers = collections.Counter(len(first.call(lambda m=m: telegram_replies_to(fake, m))) for m in messages)
    texts = first.call(lambda: [telegram_text(c) for m in messages for c in telegram_replies_to(fake, m)])
    assert answers == {1: 21}, answers  # every photo answered, none twice
    assert tries == [1] * 20, tries  # the ones in hand were answered before the replica exited
    assert late_tries >= 2  # the stopping replica turned it away; the other one answered it
    assert code == 0, first.log[-3000:]
    assert all(t.startswith("Eileen") for t in texts), texts
