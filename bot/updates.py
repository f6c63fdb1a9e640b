"""Which chat updates were already answered: so that a redelivered update is answered once, by one replica.

A replica `claim`s an update before handling it, `hold`s the claim while it works (a photo may wait in
a queue for longer than a claim lasts), and marks it `answered` after its reply went out. A claim
expires `claim_seconds` after it was last held: a replica that died while handling an update leaves
a claim that lapses, and the redelivery is then handled by whoever gets it. Without Redis the log lives in this
process (one replica); with `REDIS_URL`, in Redis, shared by every replica (`SET NX` with an expiry).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Literal, Protocol

__all__ = ["ANSWERED_SECONDS", "Claim", "MemoryUpdateLog", "RedisUpdateLog", "UpdateLog", "update_log"]

Claim = Literal["new", "claimed", "answered"]
# Telegram redelivers an update for up to a day; past that, an id is never seen again.
ANSWERED_SECONDS = 24 * 3600
_CLAIMED, _ANSWERED = b"claimed", b"answered"


class UpdateLog(Protocol):
    claim_seconds: float  # how long a claim lasts unless held

    async def claim(self, key: str) -> Claim:
        """ "new" (this replica handles it now), "claimed" (another is on it), or "answered" (done before)."""
        ...

    async def answered(self, key: str) -> None:
        """The update's reply went out: any redelivery is answered "done" without handling it again."""
        ...

    async def hold(self, key: str) -> None:
        """Still handling it: the claim runs for another `claim_seconds` (a live replica keeps its claims)."""
        ...

    async def release(self, key: str) -> None:
        """Handling failed before any reply: a redelivery may be handled at once."""
        ...

    async def ping(self) -> str | None:
        """None when the log can be used, else why not."""
        ...

    async def close(self) -> None: ...


class MemoryUpdateLog:
    """The log in this process: enough for one replica, and forgets the oldest ids past `capacity`."""

    def __init__(self, claim_seconds: float = 30.0, capacity: int = 100_000) -> None:
        self.claim_seconds, self.capacity = claim_seconds, capacity
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (state, expires at)

    async def claim(self, key: str) -> Claim:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return "answered" if entry[0] == _ANSWERED else "claimed"
        self._put(key, _CLAIMED, now + self.claim_seconds)
        return "new"

    async def answered(self, key: str) -> None:
        self._put(key, _ANSWERED, time.monotonic() + ANSWERED_SECONDS)

    async def hold(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == _CLAIMED:
            self._put(key, _CLAIMED, time.monotonic() + self.claim_seconds)

    async def release(self, key: str) -> None:
        self._entries.pop(key, None)

    async def ping(self) -> str | None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def _put(self, key: str, state: bytes, expires: float) -> None:
        self._entries[key] = (state, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class RedisUpdateLog:
    """The log in Redis, shared by every replica pointed at the same `url`."""

    def __init__(self, url: str, claim_seconds: float = 30.0, prefix: str = "doppelbot:update:") -> None:
        import redis.asyncio as redis

        self.claim_seconds, self.prefix = claim_seconds, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def claim(self, key: str) -> Claim:
        name = self.prefix + key
        if await self._redis.set(name, _CLAIMED, nx=True, px=int(self.claim_seconds * 1000)):
            return "new"
        state = await self._redis.get(name)
        if state is None:  # it lapsed between the two calls: try once more
            taken = await self._redis.set(name, _CLAIMED, nx=True, px=int(self.claim_seconds * 1000))
            return "new" if taken else "claimed"
        return "answered" if state == _ANSWERED else "claimed"

    async def answered(self, key: str) -> None:
        await self._redis.set(self.prefix + key, _ANSWERED, ex=ANSWERED_SECONDS)

    async def hold(self, key: str) -> None:
        # XX: only while the claim exists; a claim that lapsed meanwhile may be another replica's now.
        await self._redis.set(self.prefix + key, _CLAIMED, xx=True, px=int(self.claim_seconds * 1000))

    async def release(self, key: str) -> None:
        await self._redis.delete(self.prefix + key)

    async def ping(self) -> str | None:
        try:
            await self._redis.ping()
        except Exception as e:  # any failure to reach it is the answer
            return f"redis: {type(e).__name__}: {e}"
        return None

    async def close(self) -> None:
        await self._redis.aclose()


def update_log(redis_url: str | None, claim_seconds: float = 30.0) -> UpdateLog:
    """The shared log when `redis_url` is set, else this process's own."""
    return RedisUpdateLog(redis_url, claim_seconds) if redis_url else MemoryUpdateLog(claim_seconds)
