"""The real chat adapters started against the fake services, for tests: `async with telegram_bot(core) as fake`
runs our Telegram application polling the fake Bot API, `discord_bot(core)` our Discord client on the fake
gateway; both stop the bot (and check it stopped) on the way out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.core import ChatCore
from bot.discord_adapter import build_client, run_discord
from bot.telegram_adapter import build_application, run_telegram

from .fake_discord import FakeDiscord
from .fake_telegram import FakeTelegram

__all__ = ["DISCORD_TOKEN", "discord_bot", "telegram_bot"]

DISCORD_TOKEN = "fake-token.never-logged"


@asynccontextmanager
async def telegram_bot(core: ChatCore, until_polling: bool = False) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API with our application polling it; `until_polling`: entered once the bot polls (its menus
    are published before that)."""
    async with FakeTelegram() as fake:
        stop = asyncio.Event()
        app = build_application(fake.token, core, fake.base_url, fake.base_file_url)
        running = asyncio.create_task(run_telegram(app, stop))
        try:
            if until_polling:
                await fake.wait_for("getUpdates")
            yield fake
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)


@asynccontextmanager
async def discord_bot(
    core: ChatCore, fake: FakeDiscord | None = None, shards: int = 1, guilds: int = 1
) -> AsyncIterator[FakeDiscord]:
    """A fake Discord (or `fake`, not yet started; else one recommending `shards`, with `guilds` servers) with the
    real bot connected to it and its commands synced."""
    async with fake or FakeDiscord(token=DISCORD_TOKEN, shards=shards, guilds=guilds) as fake:
        stop = asyncio.Event()
        client = build_client(core, fake.api_base, fake.gateway_url)
        bot = asyncio.create_task(run_discord(client, DISCORD_TOKEN, stop))
        # discord.py waits 5 s before each IDENTIFY after a process's first, as Discord's limit asks.
        ready = asyncio.create_task(fake.wait_ready(20 + 5 * (fake.shards - 1)))
        await asyncio.wait({bot, ready}, timeout=30 + 5 * fake.shards, return_when=asyncio.FIRST_COMPLETED)
        if bot.done():
            ready.cancel()
            bot.result()  # the bot failed to start: raise why
        assert ready.done(), "the bot never identified on the gateway"
        try:
            yield fake
        finally:
            stop.set()
            await asyncio.wait_for(bot, 30)
