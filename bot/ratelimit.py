"""Photos per user per minute, counted by the `limits` package: in this process, or in Redis for every replica.

A moving window (at most `limit` photos in any `period` seconds), as the reply's "try again in N seconds"
promises. `wait` looks before a photo is downloaded, so nothing is fetched for a user already at the limit;
`take` counts it once it is in hand, in one step in the storage, so that photos sent together, to one replica
or to several, cannot all slip past the limit. `limits` has no way to give a place back: a photo turned away
as "busy" after it was counted keeps its place, and the busy reply asks for a minute's wait, by when that
place is free again.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

__all__ = ["RateLimiter", "limiter_storage"]

log = logging.getLogger(__name__)
KEY_PREFIX = "doppelbot:limits"
# After the storage failed, photos go uncounted this long before it is tried again: an unreachable Redis
# would otherwise hold every photo for its connect timeout, twice.
RETRY_STORAGE_SECONDS = 5.0


def limiter_storage(redis_url: str | None) -> Storage:
    """Redis storage shared by every replica when `redis_url` is set (redis://, rediss://, unix://), else this
    process's memory."""
    if not redis_url:
        return MemoryStorage()
    # `limits` names its asyncio storages async+redis://; the client is redis-py's, which the update log uses too.
    scheme, rest = redis_url.split("://", 1)
    return RedisStorage(
        f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}",
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        socket_timeout=5,
        socket_connect_timeout=5,
    )


class RateLimiter:
    """At most `limit` photos per user in any `period` seconds, in `storage` (this process's memory by default).

    When `storage` cannot be reached, what it counts goes uncounted; with `local_fallback`, it is counted in this
    process's memory instead (Discord's IDENTIFY turns: shards that identify back to back are refused).
    """

    def __init__(
        self, limit: int, period: int = 60, storage: Storage | None = None, local_fallback: bool = False
    ) -> None:
        self.limit, self.period = limit, period
        self.storage = storage if storage is not None else MemoryStorage()
        self._item = RateLimitItemPerSecond(limit, period)
        self._window = MovingWindowRateLimiter(self.storage)
        self._uncounted_until = 0.0  # time.monotonic() before which the failed storage is not tried
        shared = not isinstance(self.storage, MemoryStorage)
        self._local = RateLimiter(limit, period) if local_fallback and shared else None

    async def wait(self, user: str) -> float:
        """0 if this user may send a photo now, else the seconds until a place frees; takes nothing."""
        return await self._counted(user, take=False)

    async def take(self, user: str) -> float:
        """0 and a place is taken for this user's photo, or the seconds until one frees (nothing is taken then)."""
        return await self._counted(user, take=True)

    async def _counted(self, user: str, take: bool) -> float:
        # If the storage cannot be reached (Redis down), the photo goes through: a missing count lets a few photos
        # too many in, while refusing everyone would stop the bot. `/readyz` reports Redis meanwhile.
        if time.monotonic() < self._uncounted_until:
            return await self._fallback(user, take)
        step = self._window.hit if take else self._window.test
        try:
            if await step(self._item, user):
                if take and self._local is not None:  # this process's turns, known should the storage fail
                    await self._local.take(user)
                return 0.0
            reset_at, _ = await self._window.get_window_stats(self._item, user)
        except StorageError as e:
            self._uncounted_until = time.monotonic() + RETRY_STORAGE_SECONDS
            where = "counted in this process" if self._local is not None else "not counted"
            log.warning(
                "rate limits %s for %.0f s: their storage failed (%s)",
                where,
                RETRY_STORAGE_SECONDS,
                type(e.__cause__ or e).__name__,
            )
            return await self._fallback(user, take)
        # At least a second: the oldest place may free in a few milliseconds, and "0 seconds" reads as "now".
        return max(reset_at - time.time(), 1.0)

    async def _fallback(self, user: str, take: bool) -> float:
        """While the storage is out of reach: this process's own count, or none."""
        if self._local is None:
            return 0.0
        return await (self._local.take(user) if take else self._local.wait(user))

    async def ping(self) -> str | None:
        """None when the count can be kept, else why not."""
        try:
            if await self.storage.check():
                return None
        except Exception as e:  # any failure to reach it is the answer
            return f"redis: {type(e).__name__}: {e}"
        return "redis: does not answer"
