"""Telegram's webhook: updates POSTed to this bot's web server, for replicas behind any load balancer.

Polling admits one poller per bot (a second gets 409 Conflict); a webhook lets several replicas with the
same settings share the updates. Each update is answered 2xx only after its reply went out, and
`bot.updates` keeps a redelivered update from being answered twice, in one replica or (with Redis)
across all of them. Anything else (a reply Telegram would not take, a replica stopping before the reply
went out) is answered 5xx, so Telegram delivers the update again, maybe to another replica.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from .core import ChatCore
from .operations import Operations
from .settings import Settings
from .telegram_adapter import Outcome, handle_update, set_commands
from .updates import Claim, UpdateLog

__all__ = ["DRAIN_SECONDS", "SECRET_HEADER", "WebhookIntake", "run_telegram_webhook", "webhook_route"]

log = logging.getLogger("doppelbot.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Stopping (SIGTERM, a rolling deploy): how long the updates in hand have to be answered before they are
# given back to Telegram. Within Kubernetes' 30 s grace, with time left to release them and close.
DRAIN_SECONDS = 20.0


class WebhookIntake:
    """Telegram's POSTs to the webhook (`receive`), and the updates in hand while they are answered.

    Each update is claimed in `updates` under `bot_id:update_id` (two bots may share one Redis), handled by
    the application's handlers, and answered by what came of it: 200 once its reply went out or it needed
    none, 500 when the reply could not be sent (the claim released), 503 while starting or stopping. The
    secret header is compared in constant time; anything else is 403.
    """

    def __init__(self, app: Application, secret: str, updates: UpdateLog, bot_id: str) -> None:
        self.app, self.secret, self.updates, self.bot_id = app, secret, updates, bot_id
        self.accepting = False  # taking updates: from the application's start until `drain`
        self._in_hand: set[asyncio.Task[web.Response]] = set()

    def open(self) -> None:
        """The application runs: take updates."""
        self.accepting = True

    async def drain(self, seconds: float) -> int:
        """Take no more updates (503) and let those in hand be answered for up to `seconds`; the ones still
        unanswered then are cut off, their claims released and their requests answered 503, so Telegram delivers
        them again. Returns how many were cut off. The bot's HTTP client must stay open until this returns."""
        self.accepting = False
        in_hand = set(self._in_hand)
        if not in_hand:
            return 0
        _, late = await asyncio.wait(in_hand, timeout=seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        return len(late)

    async def receive(self, request: web.Request) -> web.Response:
        """One update from Telegram."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret.encode()):
            return web.Response(status=403, text="wrong secret token")
        try:
            data = await request.json()
            key = f"{self.bot_id}:{int(data['update_id'])}"
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an update")
        if not self.accepting:  # starting or stopping: Telegram delivers it again in a moment, maybe elsewhere
            return _later(1, "not taking updates")
        # In hand from here (no await between the check and this), so that `drain` waits for it.
        task = asyncio.create_task(self._take(key, data))
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)
        try:
            # Shielded: a request aiohttp gives up on still has its reply sent and recorded.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            return _later(1, "stopped before the reply went out")  # cut off by `drain`, its claim released

    async def _take(self, key: str, data: dict) -> web.Response:
        """Claim the update, handle it, and record what came of it."""
        claim = await self._claim(key)
        if claim is not None and claim.state == "answered":
            return web.Response(status=200)
        if claim is not None and claim.state == "claimed":  # in hand here or on another replica; if that one
            return _later(5, "in hand")  # died, its claim lapses
        token = claim.token if claim is not None else None
        holding = asyncio.create_task(self._hold(key, token)) if token else None
        try:
            outcome = await handle_update(self.app, Update.de_json(data, self.app.bot))
        except asyncio.CancelledError:
            await self._release(key, token)
            raise
        except Exception:  # not even a handler's failure (those are outcomes): an update we cannot read
            log.exception("an update could not be handled; Telegram will deliver it again")
            outcome = Outcome.FAILED
        finally:
            if holding is not None:
                holding.cancel()
        if outcome is Outcome.FAILED:
            await self._release(key, token)
            return web.Response(status=500, text="the reply could not be sent")
        await self._answered(key, token)
        return web.Response(status=200)

    async def _claim(self, key: str) -> Claim | None:
        """The update's claim; None when the log cannot be reached (the update is handled all the same)."""
        try:
            return await self.updates.claim(key)
        except Exception as e:  # Redis gone: answering beats 500s, which would only bring the update back
            log.warning("could not claim an update (%s); handling it unclaimed", _reason(e))
            return None

    async def _hold(self, key: str, token: str) -> None:
        """Keep the claim on `key` alive while it is handled: renewed three times per claim period."""
        every = max(0.1, self.updates.claim_seconds / 3)
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.updates.hold(key, token):
                    log.warning("the claim on an update lapsed while it was handled; another replica may answer it")
                    return
            except Exception as e:  # Redis gone for a moment: the claim may lapse; the answer still goes out
                log.warning("could not renew the claim on an update (%s)", _reason(e))

    async def _answered(self, key: str, token: str | None) -> None:
        """Record the update answered; its reply went out, so a failure to record it is only logged."""
        if token is None:
            return
        try:
            if not await self.updates.answered(key, token):
                log.warning("an update was answered after its claim lapsed; another replica may answer it too")
        except Exception as e:  # a redelivery could be answered again, but the user already has this answer
            log.warning("could not record an update as answered (%s)", _reason(e))

    async def _release(self, key: str, token: str | None) -> None:
        if token is None:
            return
        try:
            await self.updates.release(key, token)
        except Exception as e:  # the claim lapses by itself; the redelivery is handled then
            log.warning("could not release the claim on an update (%s)", _reason(e))


def _later(seconds: int, why: str) -> web.Response:
    return web.Response(status=503, headers={"Retry-After": str(seconds)}, text=why)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:200]


async def run_telegram_webhook(
    app: Application, intake: WebhookIntake, stop: asyncio.Event, drain_seconds: float = DRAIN_SECONDS
) -> None:
    """Take updates through `intake` until `stop` is set; then answer the ones in hand (for up to `drain_seconds`)
    before the application, and with it the bot's HTTP client, is closed."""
    async with app:
        await app.start()
        intake.open()
        # The menus (three calls per language) go out while updates are taken, and never hold up a stop.
        menus = asyncio.create_task(set_commands(app), name="telegram menus")
        try:
            await stop.wait()
        finally:
            menus.cancel()
            await asyncio.wait({menus})  # a stop of this run itself still comes through
            if cut := await intake.drain(drain_seconds):
                log.warning(
                    "%d updates were not answered within %.0f s of stopping; Telegram delivers them again",
                    cut,
                    drain_seconds,
                )
            await app.stop()


def webhook_route(settings: Settings, core: ChatCore, stop: asyncio.Event, operations: Operations, runs: list):
    """Telegram by webhook: its run joins `runs`; returns the route (path, handler) for the web server."""
    from .telegram_adapter import build_application
    from .updates import update_log

    app = build_application(
        settings.telegram_token, core, settings.telegram_base_url, settings.telegram_base_file_url, polling=False
    )
    updates = update_log(settings.redis_url, settings.update_claim_seconds)
    # The bot's id is the token's part before ':' (the rest is the secret, never a key).
    intake = WebhookIntake(app, settings.telegram_webhook_secret, updates, settings.telegram_token.partition(":")[0])

    async def run() -> None:
        try:
            await run_telegram_webhook(app, intake, stop)
        finally:
            await updates.close()

    runs.append(asyncio.create_task(run(), name="telegram"))

    async def telegram_ready() -> str | None:
        return None if app.running and intake.accepting else "telegram: not taking webhook updates"

    operations.checks["telegram"] = telegram_ready
    path = urlsplit(settings.telegram_webhook_url).path or "/"
    log.info("Telegram updates are taken at %s (webhook)", path)
    return path, intake.receive
