"""Which updates were answered: in this process, or in a real `redis-server` shared by several replicas."""

from __future__ import annotations

import asyncio

import pytest

from bot.updates import MemoryUpdateLog, RedisUpdateLog
from testkit.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as server:
        yield server


def logs(kind: str, redis: RedisServer, claim_seconds: float = 30.0, replicas: int = 1) -> list:
    if kind == "memory":
        one = MemoryUpdateLog(claim_seconds)
        return [one] * replicas  # one process: every "replica" is the same log
    return [RedisUpdateLog(redis.url, claim_seconds, prefix=f"test:{id(object())}:") for _ in range(replicas)]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_update_is_handled_once_then_answered_done(kind: str, redis: RedisServer) -> None:
    async def scenario() -> list[str]:
        log = logs(kind, redis)[0]
        seen = [await log.claim("7"), await log.claim("7")]  # the second is a redelivery while in hand
        await log.answered("7")
        seen.append(await log.claim("7"))  # a redelivery after the reply went out
        seen.append(await log.claim("8"))
        await log.release("8")  # handling failed before any reply: the next delivery is handled
        seen.append(await log.claim("8"))
        await log.close()
        return seen

    assert asyncio.run(scenario()) == ["new", "claimed", "answered", "new", "new"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_claim_of_a_replica_that_died_lapses(kind: str, redis: RedisServer) -> None:
    async def scenario() -> list[str]:
        log = logs(kind, redis, claim_seconds=0.2)[0]
        first = await log.claim("9")  # then the replica dies: no answered, no release
        await asyncio.sleep(0.5)
        again = await log.claim("9")
        await log.close()
        return [first, again]

    assert asyncio.run(scenario()) == ["new", "new"]


def test_replicas_sharing_redis_handle_each_update_exactly_once(redis: RedisServer) -> None:
    """Two replicas, each offered the same 50 updates at the same moment: each update is handled by one."""
    prefix = "test:shared:"

    async def scenario() -> list[int]:
        replicas = [RedisUpdateLog(redis.url, prefix=prefix) for _ in range(2)]
        claims = await asyncio.gather(*(r.claim(str(u)) for u in range(50) for r in replicas))
        for r in replicas:
            await r.close()
        return [sum(c == "new" for c in claims[2 * u : 2 * u + 2]) for u in range(50)]

    assert asyncio.run(scenario()) == [1] * 50


def test_redis_gone_is_reported_and_back_is_usable_again() -> None:
    server = RedisServer()
    server.start()

    async def ping(log: RedisUpdateLog) -> str | None:
        return await log.ping()

    log = RedisUpdateLog(server.url)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(ping(log)) is None
        server.stop()
        reason = loop.run_until_complete(ping(log))
        assert reason is not None and reason.startswith("redis: ")
        server.start()
        assert loop.run_until_complete(ping(log)) is None
    finally:
        loop.run_until_complete(log.close())
        loop.close()
        server.stop()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_held_claim_outlives_its_period_and_a_dropped_one_lapses(kind: str, redis: RedisServer) -> None:
    async def scenario() -> list[str]:
        log = logs(kind, redis, claim_seconds=0.3)[0]
        await log.claim("held")
        for _ in range(4):  # 0.6 s of work, held every 0.15 s
            await asyncio.sleep(0.15)
            await log.hold("held")
        seen = [await log.claim("held")]
        await asyncio.sleep(0.5)  # no longer held: as if the replica died
        seen.append(await log.claim("held"))
        await log.close()
        return seen

    assert asyncio.run(scenario()) == ["claimed", "new"]
