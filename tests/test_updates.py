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
    prefix = f"test:{id(object())}:"
    return [RedisUpdateLog(redis.url, claim_seconds, prefix=prefix) for _ in range(replicas)]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_update_is_handled_once_then_answered_done(kind: str, redis: RedisServer) -> None:
    async def scenario() -> list[str]:
        log = logs(kind, redis)[0]
        first = await log.claim("7")
        seen = [first.state, (await log.claim("7")).state]  # the second is a redelivery while in hand
        assert await log.answered("7", first.token)
        seen.append((await log.claim("7")).state)  # a redelivery after the reply went out
        eight = await log.claim("8")
        seen.append(eight.state)
        await log.release("8", eight.token)  # handling failed before any reply: the next delivery is handled
        seen.append((await log.claim("8")).state)
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
        return [first.state, again.state]

    assert asyncio.run(scenario()) == ["new", "new"]


def test_replicas_sharing_redis_handle_each_update_exactly_once(redis: RedisServer) -> None:
    """Two replicas, each offered the same 50 updates at the same moment: each update is handled by one."""
    prefix = "test:shared:"

    async def scenario() -> list[int]:
        replicas = [RedisUpdateLog(redis.url, prefix=prefix) for _ in range(2)]
        claims = await asyncio.gather(*(r.claim(str(u)) for u in range(50) for r in replicas))
        for r in replicas:
            await r.close()
        return [sum(c.state == "new" for c in claims[2 * u : 2 * u + 2]) for u in range(50)]

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
    async def scenario() -> list[object]:
        log = logs(kind, redis, claim_seconds=0.3)[0]
        mine = await log.claim("held")
        held = []
        for _ in range(4):  # 0.6 s of work, held every 0.15 s
            await asyncio.sleep(0.15)
            held.append(await log.hold("held", mine.token))
        seen = [held, (await log.claim("held")).state]
        await asyncio.sleep(0.5)  # no longer held: as if the replica died
        seen.append((await log.claim("held")).state)
        await log.close()
        return seen

    assert asyncio.run(scenario()) == [[True] * 4, "claimed", "new"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_replica_that_lost_its_claim_learns_it_and_leaves_the_new_owners_claim_alone(
    kind: str, redis: RedisServer
) -> None:
    """A lapses (stuck), B takes the redelivery: A's hold says so and changes nothing, A's release spares B's claim."""

    async def scenario() -> list[object]:
        a, b = logs(kind, redis, claim_seconds=0.2, replicas=2)
        lost = await a.claim("u")
        await asyncio.sleep(0.4)
        taken = await b.claim("u")
        seen: list[object] = [taken.state, await a.hold("u", lost.token)]
        await a.release("u", lost.token)
        seen.append((await a.claim("u")).state)  # still B's
        assert await b.hold("u", taken.token)
        await b.release("u", taken.token)
        seen.append((await a.claim("u")).state)  # B's own release did drop it
        await a.close()
        await b.close()
        return seen

    assert asyncio.run(scenario()) == ["new", False, "claimed", "new"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_answered_is_final_a_late_hold_never_turns_it_back_into_a_claim(kind: str, redis: RedisServer) -> None:
    """The renewal still running after the reply went out must not undo "answered" (SET XX did)."""

    async def scenario() -> list[object]:
        log = logs(kind, redis, claim_seconds=0.3)[0]
        mine = await log.claim("done")
        assert await log.answered("done", mine.token)
        seen: list[object] = [await log.hold("done", mine.token)]
        await log.release("done", mine.token)  # a late release is as harmless
        await asyncio.sleep(0.5)  # past the claim period: an "answered" turned into a claim would have lapsed
        seen.append((await log.claim("done")).state)
        await log.close()
        return seen

    assert asyncio.run(scenario()) == [False, "answered"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_reply_sent_after_the_claim_lapsed_is_still_recorded_answered(kind: str, redis: RedisServer) -> None:
    """The reply went out: whoever holds the update now, a redelivery must not be answered again."""

    async def scenario() -> list[object]:
        a, b = logs(kind, redis, claim_seconds=0.2, replicas=2)
        late = await a.claim("slow")
        await asyncio.sleep(0.4)
        seen: list[object] = [await a.answered("slow", late.token), (await b.claim("slow")).state]
        await a.close()
        await b.close()
        return seen

    assert asyncio.run(scenario()) == [True, "answered"]
