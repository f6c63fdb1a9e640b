"""Each chat adapter on its own: one that fails is reported, and started again where a retry can help.

One adapter's failure must not stop the others: a Discord that refuses the bot's session starts for a day, or
answers 5xx at login, would otherwise take Telegram and the web page down with it. Each adapter says what its
failures mean (`Failure`): a refused token is not retried (the adapter stays down, said in the log and in
`/readyz`), a network fault or a 5xx is retried with a backoff, and a wait the service names (Discord's session
starts reset, Telegram's flood control) is waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

__all__ = ["FIRST_RETRY_SECONDS", "MAX_RETRY_SECONDS", "Failure", "Supervised", "network_failure"]

log = logging.getLogger("doppelbot")

# The first retry comes soon (a 5xx at login is often one bad moment); each next one waits twice as long, up to
# five minutes, so that an outage of the service is not met with a request every second from every replica.
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0
# An adapter that ran this long before failing was up, not failing to start: its next retry is the first again.
STEADY_SECONDS = 60.0

Check = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Failure:
    """What an adapter's failure means: `reason`, in words; whether to `retry`; `after`: the wait the service named
    (None: the backoff's); `unexpected`: no rule names it, so its traceback is logged too."""

    reason: str
    retry: bool
    after: float | None = None
    unexpected: bool = False


def network_failure(error: BaseException) -> Failure:
    """Any adapter's failure that its own rules do not name: retried if the network is at fault, else not."""
    if isinstance(error, ConnectionError | TimeoutError | aiohttp.ClientError):
        return Failure(f"cannot reach the service ({type(error).__name__}: {_first_line(error)})", retry=True)
    return Failure(f"{type(error).__name__}: {_first_line(error)}", retry=False, unexpected=True)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


class Supervised:
    """Runs `attempt()` again after each failure that `judge` says a retry can help, until `stop`.

    `ready` is the adapter's own readiness check while an attempt runs; `check` (for `/readyz`) says instead
    why the adapter is down while it waits to retry, or for good.
    """

    def __init__(
        self,
        name: str,
        attempt: Callable[[], Awaitable[None]],
        judge: Callable[[BaseException], Failure],
        stop: asyncio.Event,
        ready: Check | None = None,
    ) -> None:
        self.name = name
        self.attempt, self.judge, self.stop, self.ready = attempt, judge, stop, ready
        self.problem: str | None = None  # why the adapter is down now, or None while an attempt runs

    async def check(self) -> str | None:
        if self.problem is not None:
            return self.problem
        return await self.ready() if self.ready is not None else None

    async def run(self) -> bool:
        """True when it ended because `stop` was set; False when it failed in a way no retry mends."""
        loop = asyncio.get_running_loop()
        backoff = FIRST_RETRY_SECONDS
        while not self.stop.is_set():
            started = loop.time()
            self.problem = None
            try:
                await self.attempt()
            except Exception as e:
                if self.stop.is_set():  # an echo of the stop, not a failure
                    return True
                failure = self.judge(e)
                # An error no rule names is shown whole (the log's filter keeps tokens out of it).
                details = e if failure.unexpected else None
            else:
                if self.stop.is_set():
                    return True
                failure, details = Failure("it ended by itself", retry=True), None
            if not failure.retry:
                self.problem = f"{self.name}: {failure.reason} (not retried)"
                log.error(
                    "%s failed: %s; not retried, the other adapters go on", self.name, failure.reason, exc_info=details
                )
                return False
            if loop.time() - started >= STEADY_SECONDS:
                backoff = FIRST_RETRY_SECONDS
            wait = failure.after if failure.after is not None else backoff
            backoff = min(backoff * 2, MAX_RETRY_SECONDS)
            self.problem = f"{self.name}: {failure.reason}; retrying in {wait:.0f} s"
            log.warning("%s failed: %s; retrying in %.0f s, the other adapters go on", self.name, failure.reason, wait)
            with contextlib.suppress(TimeoutError):  # the wait is over, or the stop came first
                await asyncio.wait_for(self.stop.wait(), wait)
        return True
