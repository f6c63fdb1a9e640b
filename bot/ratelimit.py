"""Photos per user per minute, remembered only as long as they count."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most `limit` photos per user in any `period` seconds (a sliding window).

    A user with no photo in the window is forgotten, so memory holds only the users of the last period or two,
    not everyone who ever wrote.
    """

    def __init__(self, limit: int, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self._seen: dict[str, deque[float]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        """How many users are remembered."""
        return len(self._seen)

    def wait_for(self, user: str) -> float:
        """0 and a place is taken for this user's photo (`release` gives it back), or the seconds until one frees."""
        now = self.clock()
        self._sweep(now)
        seen = self._seen.setdefault(user, deque())
        while seen and seen[0] <= now - self.period:
            seen.popleft()
        if len(seen) >= self.limit:
            return seen[0] + self.period - now
        seen.append(now)
        return 0.0

    def release(self, user: str) -> None:
        """Give back the place `wait_for` took for `user`: the model never took that photo."""
        seen = self._seen.get(user)
        if seen:
            # The newest place: any of this user's places in the window would do, and this one is surely ours.
            seen.pop()
        if not seen:
            self._seen.pop(user, None)

    def _sweep(self, now: float) -> None:
        # Once a period, at the cost of one pass over the users, so each call stays cheap on average.
        if now - self._swept < self.period:
            return
        self._swept = now
        idle = [user for user, seen in self._seen.items() if not seen or seen[-1] <= now - self.period]
        for user in idle:
            del self._seen[user]
