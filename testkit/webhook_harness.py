"""Telegram's side of a webhook, for tests and benchmarks: `python -m bot` replicas in webhook mode, and a
driver that delivers updates as Telegram does (one replica per try, again on a non-2xx or a dropped
connection, at most 40 connections at once)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from testkit.e2e import LiveBot
from testkit.fake_telegram import FakeTelegram
from testkit.processes import free_port

__all__ = ["HEADER", "SECRET", "TELEGRAM_CONNECTIONS", "WebhookBot", "deliver"]

SECRET = "webhook_secret-42"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookBot(LiveBot):
    """A `python -m bot` replica in webhook mode: up once Telegram's app started and the web server listens."""

    def __init__(self, model: Path, workdir: Path, telegram: FakeTelegram | None, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(
            model,
            workdir,
            discord=False,
            env={
                "WEB_PORT": str(self.port),
                "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{self.port}/telegram/hook",
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "UPDATE_CLAIM_SECONDS": "2",
                "RATE_LIMIT_PER_MINUTE": "10000",
                "QUEUE_SIZE": "1000",
                **env,
            },
        )
        if telegram is not None:
            self.telegram = telegram  # replicas share one Telegram; its server is started once, by the first
        self.hook = f"http://127.0.0.1:{self.port}/telegram/hook"

    async def _until_up(self) -> None:
        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        for _ in range(1200):
            if await ready():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the replica did not become ready: {self.log[-3000:]}")


# Telegram opens at most this many connections to a webhook at once (setWebhook's max_connections default).
TELEGRAM_CONNECTIONS = 40


async def deliver(
    update: dict, hooks: list[str], start: int = 0, secret: str = SECRET, deadline: float = 120, slots=None
) -> int:
    """As Telegram does: POST to one replica until one answers 2xx, moving on after a failure. Returns the tries."""
    async with slots or contextlib.nullcontext():
        return await _deliver(update, hooks, start, secret, deadline)


async def _deliver(update: dict, hooks: list[str], start: int, secret: str, deadline: float) -> int:
    loop = asyncio.get_running_loop()
    ends, tries = loop.time() + deadline, 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while loop.time() < ends:
            hook = hooks[(start + tries) % len(hooks)]
            tries += 1
            try:
                async with session.post(hook, json=update, headers={HEADER: secret}) as response:
                    if 200 <= response.status < 300:
                        return tries
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"update {update['update_id']} was never accepted")
