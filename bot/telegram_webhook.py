"""Telegram's webhook: updates POSTed to this bot's web server, for replicas behind any load balancer.

Polling admits one poller per bot (a second gets 409 Conflict); a webhook lets several replicas with the
same settings share the updates. Each update is answered 2xx only after its reply went out, and
`bot.updates` keeps a redelivered update from being answered twice, in one replica or (with Redis)
across all of them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, Update
from telegram.ext import Application

from .core import ChatCore
from .operations import Operations
from .settings import Settings
from .telegram_adapter import REPLIED, set_commands
from .updates import UpdateLog

__all__ = [
    "SECRET_HEADER",
    "delete_webhook",
    "run_telegram_webhook",
    "set_webhook",
    "webhook_handler",
    "webhook_route",
    "webhook_step",
]

log = logging.getLogger("doppelbot.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def run_telegram_webhook(app: Application, stop: asyncio.Event) -> None:
    """Take updates from the webhook (`webhook_handler`) until `stop` is set, then finish the ones in hand."""
    async with app:
        await app.start()
        try:
            await set_commands(app.bot)
            await stop.wait()
        finally:
            await app.stop()


def webhook_handler(
    app: Application, secret: str, updates: UpdateLog
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler for Telegram's webhook: each update handled, its reply sent, and only then 200.

    A replica that dies mid-update never answers 2xx, so Telegram delivers the update again, maybe to
    another replica; `updates` sees that it is answered once. The secret header is compared in
    constant time; anything else is 403.
    """

    async def receive(request: web.Request) -> web.Response:
        """One update from Telegram."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret.encode()):
            return web.Response(status=403, text="wrong secret token")
        try:
            data = await request.json()
            key = str(int(data["update_id"]))
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an update")
        if not app.running:  # starting or stopping: Telegram delivers it again in a moment
            return web.Response(status=503, headers={"Retry-After": "1"}, text="not ready")
        state = await updates.claim(key)
        if state == "answered":
            return web.Response(status=200)
        if state == "claimed":  # in hand here or on another replica; if that one died, its claim lapses
            return web.Response(status=503, headers={"Retry-After": "5"}, text="in hand")
        holding = asyncio.create_task(_hold(updates, key))
        recorded = False

        async def replied() -> None:
            nonlocal recorded
            holding.cancel()
            await updates.answered(key)
            recorded = True

        REPLIED.set(replied)  # this request's task: the handlers run in it, and see it
        try:
            await app.process_update(Update.de_json(data, app.bot))
        except Exception:
            await updates.release(key)
            log.exception("an update could not be handled; Telegram will deliver it again")
            return web.Response(status=500, text="not handled")
        finally:
            holding.cancel()
        if not recorded:  # an update that needed no reply (a message not for the bot)
            await updates.answered(key)
        return web.Response(status=200)

    return receive


async def _hold(updates: UpdateLog, key: str) -> None:
    """Keep the claim on `key` alive while it is handled: renewed three times per claim period."""
    every = max(0.1, updates.claim_seconds / 3)
    while True:
        await asyncio.sleep(every)
        try:
            await updates.hold(key)
        except Exception:  # Redis gone for a moment: the claim may lapse; the answer still goes out
            log.warning("could not renew the claim on an update", exc_info=True)


async def set_webhook(token: str, url: str, secret: str, base_url: str | None = None) -> None:
    """Register the webhook once, as a deploy step (replicas never do, so they never fight over it)."""
    async with _bot(token, base_url) as bot:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=[Update.MESSAGE])


async def delete_webhook(token: str, base_url: str | None = None) -> None:
    """Remove the webhook: Telegram keeps the updates for polling again."""
    async with _bot(token, base_url) as bot:
        await bot.delete_webhook()


def _bot(token: str, base_url: str | None) -> Bot:
    return Bot(token, base_url=base_url) if base_url else Bot(token)


def webhook_route(settings: Settings, core: ChatCore, stop: asyncio.Event, operations: Operations, runs: list):
    """Telegram by webhook: its run joins `runs`; returns the route (path, handler) for the web server."""
    from .telegram_adapter import build_application
    from .updates import update_log

    app = build_application(
        settings.telegram_token, core, settings.telegram_base_url, settings.telegram_base_file_url, polling=False
    )
    updates = update_log(settings.redis_url, settings.update_claim_seconds)

    async def run() -> None:
        try:
            await run_telegram_webhook(app, stop)
        finally:
            await updates.close()

    runs.append(asyncio.create_task(run(), name="telegram"))

    async def telegram_ready() -> str | None:
        return None if app.running else "telegram: not taking webhook updates yet"

    operations.checks["telegram"] = telegram_ready
    path = urlsplit(settings.telegram_webhook_url).path or "/"
    log.info("Telegram updates are taken at %s (webhook)", path)
    return path, webhook_handler(app, settings.telegram_webhook_secret, updates)


def webhook_step(settings: Settings, delete: bool) -> int:
    """`--set-webhook` / `--delete-webhook`: a deploy step, once, never by the replicas themselves."""
    from telegram.error import TelegramError

    if not settings.telegram_token:
        print("No TELEGRAM_TOKEN: the webhook belongs to a Telegram bot (see .env.example).", file=sys.stderr)
        return 2
    if not delete and not (settings.telegram_webhook_url and settings.telegram_webhook_secret):
        print(
            "--set-webhook needs TELEGRAM_WEBHOOK_URL and TELEGRAM_WEBHOOK_SECRET (see .env.example).", file=sys.stderr
        )
        return 2
    try:
        if delete:
            asyncio.run(delete_webhook(settings.telegram_token, settings.telegram_base_url))
            print("Webhook removed: the bot polls again when started without TELEGRAM_WEBHOOK_URL.")
        else:
            asyncio.run(
                set_webhook(
                    settings.telegram_token,
                    settings.telegram_webhook_url,
                    settings.telegram_webhook_secret,
                    settings.telegram_base_url,
                )
            )
            print(f"Webhook set: Telegram posts updates to {settings.telegram_webhook_url}")
    except TelegramError as e:
        print(f"Telegram refused: {str(e).replace(settings.telegram_token, '<token>')}", file=sys.stderr)
        return 1
    return 0
