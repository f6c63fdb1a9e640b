"""Which chat updates were already answered: so that a redelivered update is answered once, by one replica.

A replica `claim`s an update before handling it, `hold`s the claim while it works (a photo may wait in
a queue for longer than a claim lasts), and marks it `answered` after its reply went out. A claim
expires `claim_seconds` after it was last held: a replica that died while handling an update leaves
a claim that lapses, and the redelivery is then handled by whoever gets it. Each claim carries its own
token: `hold` and `release` act only on the claim they were given, so a replica whose claim lapsed (and
was taken by another) neither renews nor deletes the other's, and `hold` tells it that the claim was lost.
Without Redis the log lives in this process (one replica); with `REDIS_URL`, in Redis, shared by every
replica (compare-and-set in Lua scripts, with an expiry).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["ANSWERED_SECONDS", "Claim", "MemoryUpdateLog", "RedisUpdateLog", "State", "UpdateLog", "update_log"]

State = Literal["new", "claimed", "answered"]
# Telegram redelivers an update for up to a day; past that, an id is never seen again.
ANSWERED_SECONDS = 24 * 3600
_ANSWERED = b"answered"


@dataclass(frozen=True)
class Claim:
    """What `claim` found: "new" (this replica handles it now, under `token`), "claimed" (another is on it), or
    "answered" (done before)."""

    state: State
    token: str = ""  # this claim's owner, for hold / answered / release; set only when `state` is "new"


class UpdateLog(Protocol):
    claim_seconds: float  # how long a claim lasts unless held

    async def claim(self, key: str) -> Claim:
        """Take `key` if nobody holds it and it was never answered."""
        ...

    async def answered(self, key: str, token: str) -> bool:
        """The update's reply went out: any redelivery is answered "done" without handling it again. Recorded
        whoever holds the claim now (the reply went out all the same); False when the claim was no longer ours."""
        ...

    async def hold(self, key: str, token: str) -> bool:
        """Still handling it: our claim runs for another `claim_seconds`. False when it is no longer ours (it
        lapsed, and maybe another replica took it, or the update was answered): nothing is changed then."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Handling failed before any reply: a redelivery may be handled at once (only our own claim is dropped)."""
        ...

    async def ping(self) -> str | None:
        """None when the log can be used, else why not."""
        ...

    async def close(self) -> None: ...


def _token() -> bytes:
    # Never b"answered": a token is 16 hex digits.
    return secrets.token_hex(8).encode()


class MemoryUpdateLog:
    """The log in this process: enough for one replica, and forgets the oldest ids past `capacity`."""

    def __init__(self, claim_seconds: float = 30.0, capacity: int = 100_000) -> None:
        self.claim_seconds, self.capacity = claim_seconds, capacity
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (token or answered, expires)

    async def claim(self, key: str) -> Claim:
        current = self._current(key)
        if current is not None:
            return Claim("answered" if current == _ANSWERED else "claimed")
        token = _token()
        self._put(key, token, time.monotonic() + self.claim_seconds)
        return Claim("new", token.decode())

    async def answered(self, key: str, token: str) -> bool:
        ours = self._current(key) in (token.encode(), None)
        self._put(key, _ANSWERED, time.monotonic() + ANSWERED_SECONDS)
        return ours

    async def hold(self, key: str, token: str) -> bool:
        if self._current(key) != token.encode():
            return False
        self._put(key, token.encode(), time.monotonic() + self.claim_seconds)
        return True

    async def release(self, key: str, token: str) -> None:
        if self._current(key) == token.encode():
            del self._entries[key]

    async def ping(self) -> str | None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def _current(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    def _put(self, key: str, value: bytes, expires: float) -> None:
        self._entries[key] = (value, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


# Each a compare-and-set in one step: Redis runs a script with nothing in between, so no claim can lapse and be
# taken by another replica between reading it and writing it.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'new' end
if redis.call('GET', KEYS[1]) == 'answered' then return 'answered' end
return 'claimed'
"""
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_ANSWER = """
local current = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], 'answered', 'EX', ARGV[2])
if current == ARGV[1] or not current then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisUpdateLog:
    """The log in Redis, shared by every replica pointed at the same `url`."""

    def __init__(self, url: str, claim_seconds: float = 30.0, prefix: str = "doppelbot:update:") -> None:
        import redis.asyncio as redis

        self.claim_seconds, self.prefix = claim_seconds, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._claim, self._hold = self._redis.register_script(_CLAIM), self._redis.register_script(_HOLD)
        self._answer, self._release = self._redis.register_script(_ANSWER), self._redis.register_script(_RELEASE)

    async def claim(self, key: str) -> Claim:
        token = _token()
        state = await self._claim(keys=[self.prefix + key], args=[token, self._claim_ms])
        state = state.decode()
        return Claim("new", token.decode()) if state == "new" else Claim(state)

    async def answered(self, key: str, token: str) -> bool:
        return bool(await self._answer(keys=[self.prefix + key], args=[token, ANSWERED_SECONDS]))

    async def hold(self, key: str, token: str) -> bool:
        return bool(await self._hold(keys=[self.prefix + key], args=[token, self._claim_ms]))

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[self.prefix + key], args=[token])

    async def ping(self) -> str | None:
        try:
            await self._redis.ping()
        except Exception as e:  # any failure to reach it is the answer
            return f"redis: {type(e).__name__}: {e}"
        return None

    async def close(self) -> None:
        await self._redis.aclose()

    @property
    def _claim_ms(self) -> int:
        return max(1, int(self.claim_seconds * 1000))


def update_log(redis_url: str | None, claim_seconds: float = 30.0) -> UpdateLog:
    """The shared log when `redis_url` is set, else this process's own."""
    return RedisUpdateLog(redis_url, claim_seconds) if redis_url else MemoryUpdateLog(claim_seconds)
