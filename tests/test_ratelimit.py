"""Photos per user per minute counted by `limits`, in memory or in a real `redis-server` shared by replicas."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot import ratelimit
from bot.ratelimit import RateLimiter, limiter_storage
from testkit.redis_server import RedisServer

USERS = itertools.count()


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as server:
        yield server


def test_two_replicas_sharing_redis_count_one_users_photos_together(redis: RedisServer) -> None:
    """Two replicas, each with its own client, take 25 photos each of one user at once: 10 a minute in total."""

    async def scenario() -> tuple[list[float], list[float]]:
        first, second = (RateLimiter(10, storage=limiter_storage(redis.url)) for _ in range(2))
        user = f"telegram:{next(USERS)}"
        waits = await asyncio.gather(*(replica.take(user) for _ in range(25) for replica in (first, second)))
        other = await asyncio.gather(first.take("telegram:someone-else"), second.take("telegram:someone-else"))
        return list(waits), list(other)

    waits, other = asyncio.run(scenario())
    assert waits.count(0) == 10, waits
    assert all(55 <= wait <= 60 for wait in waits if wait), waits  # the first place frees about a minute on
    assert other == [0, 0]


def test_each_process_counts_alone_without_redis() -> None:
    async def scenario() -> list[float]:
        first, second = RateLimiter(1, storage=limiter_storage(None)), RateLimiter(1, storage=limiter_storage(None))
        return [await first.take("u"), await second.take("u"), await first.take("u")]

    assert [wait == 0 for wait in asyncio.run(scenario())] == [True, True, False]


def test_photos_go_through_while_redis_is_gone_and_are_counted_again_once_it_is_back(monkeypatch) -> None:
    """Refusing every photo would stop the bot; `ping` (for /readyz) says what is wrong meanwhile."""
    monkeypatch.setattr(ratelimit, "RETRY_STORAGE_SECONDS", 0.5)  # how long a failed storage is left alone
    server = RedisServer()
    server.start()

    async def scenario() -> list[tuple[list[float], str | None]]:
        limiter = RateLimiter(1, storage=limiter_storage(server.url))
        seen = []
        for step in (None, server.stop, server.start):
            if step is not None:
                step()  # blocks the loop a moment: nothing else runs on it here
                await asyncio.sleep(0.6)
            seen.append(([await limiter.take("u"), await limiter.take("u")], await limiter.ping()))
        return seen

    try:
        (before, healthy), (during, down), (after, back) = asyncio.run(scenario())
    finally:
        server.stop()
    assert before[0] == 0 and before[1] > 0 and healthy is None
    assert during == [0, 0] and down is not None and down.startswith("redis")
    # A fresh redis-server holds no counts: the user starts again from nothing.
    assert after[0] == 0 and after[1] > 0 and back is None


def test_identify_turns_fall_back_to_this_process_while_redis_is_gone() -> None:
    """Discord's IDENTIFY gate: with Redis out of reach, this process's shards still take their turns one at a time
    (back to back, Discord refuses the second), where the photos' limit lets everything through."""
    server = RedisServer()
    server.start()

    async def scenario() -> tuple[list[float], list[float]]:
        gate = RateLimiter(1, 6, limiter_storage(server.url), local_fallback=True)
        photos = RateLimiter(1, 6, limiter_storage(server.url))
        first = await gate.take("discord:1:identify:0")  # taken in Redis, and known here
        server.stop()  # blocks the loop a moment: nothing else runs on it here
        turns = [first, await gate.take("discord:1:identify:0"), await gate.take("discord:1:identify:1")]
        return turns, [await photos.take("u"), await photos.take("u")]

    try:
        turns, photos = asyncio.run(scenario())
    finally:
        server.stop()
    assert turns[0] == 0 and 1 <= turns[1] <= 6, turns  # the turn taken before Redis went is still counted
    assert turns[2] == 0  # another bucket has its own turn
    assert photos == [0, 0]
