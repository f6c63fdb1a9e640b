"""Which chat adapters run in this process, each wired to the chat core and to its `/readyz` check, and each
run on its own (`bot.supervisor`): one that fails is reported and retried where that can help, the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .settings import Settings
from .supervisor import Failure, Supervised, network_failure

if TYPE_CHECKING:
    from .core import ChatCore
    from .operations import Operations
    from .web_guards import WebGuards

__all__ = ["TELEGRAM_REFUSED", "run_adapters"]

log = logging.getLogger("doppelbot")

TELEGRAM_REFUSED = "Telegram refused the token (401/404: check TELEGRAM_TOKEN and TELEGRAM_BASE_URL)"


def _telegram(settings: Settings, core: ChatCore, stop: asyncio.Event) -> Supervised:
    """Telegram by polling, with a new application for each attempt."""
    from .telegram_adapter import build_application, run_telegram

    def application():
        return build_application(
            settings.telegram_token, core, settings.telegram_base_url, settings.telegram_base_file_url
        )

    current = None

    async def attempt() -> None:
        nonlocal current
        current = application()
        await run_telegram(current, stop)

    async def telegram_ready() -> str | None:
        polling = current is not None and current.running and current.updater is not None and current.updater.running
        return None if polling else "telegram: not polling for updates"

    return Supervised("telegram", attempt, _telegram_failure, stop, telegram_ready)


def _discord(settings: Settings, core: ChatCore, stop: asyncio.Event) -> Supervised:
    """Discord, with a new client for each attempt (a closed discord.py client cannot start again)."""
    from .discord_adapter import IDENTIFY_TURN_SECONDS, build_client, connected, failure_of, run_discord
    from .ratelimit import RateLimiter

    # IDENTIFY turns are kept where the rate limits are: in Redis, every process of the bot takes its turn; with
    # Redis out of reach, this process's own shards still take theirs, in its memory.
    gate = RateLimiter(1, IDENTIFY_TURN_SECONDS, core.limiter.storage, local_fallback=True)
    client = None

    async def attempt() -> None:
        nonlocal client
        client = build_client(
            core,
            settings.discord_api_base,
            settings.discord_gateway_url,
            settings.discord_shard_count,
            settings.discord_shard_ids,
            gate,
        )
        await run_discord(client, settings.discord_token, stop)

    async def discord_ready() -> str | None:
        return None if client is not None and connected(client) else "discord: not connected to the gateway"

    return Supervised("discord", attempt, failure_of, stop, discord_ready)


def _web_guards(settings: Settings) -> WebGuards:
    """The page's guards; the webhook's public host, when there is one, reaches the webhook's path only."""
    from .web_guards import AllowedHosts, WebGuards, WebhookHost, proxy_networks

    hosts = AllowedHosts.configured(settings.web_allowed_hosts, settings.web_host)
    webhook = WebhookHost.of(settings.telegram_webhook_url) if settings.telegram_webhook_url else None
    return WebGuards(
        hosts,
        settings.web_max_uploads,
        settings.web_upload_seconds,
        webhook=webhook,
        trusted_proxies=proxy_networks(settings.web_trusted_proxies),
    )


def _telegram_failure(error: BaseException) -> Failure:
    """What a failed Telegram run means: a refused token is not retried; flood control and network faults are."""
    from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter

    from .telegram_adapter import WebhookIsSet

    if isinstance(error, WebhookIsSet):  # polling would delete the fleet's webhook: its message says what to do
        return Failure(str(error), retry=False)
    if isinstance(error, InvalidToken):
        # PTB raises it for a 404 as for a 401: a wrong TELEGRAM_BASE_URL reads the same as a wrong token.
        return Failure(TELEGRAM_REFUSED, retry=False)
    if isinstance(error, RetryAfter):
        seconds = error.retry_after
        wait = seconds.total_seconds() if hasattr(seconds, "total_seconds") else float(seconds)
        return Failure("Telegram's flood control", retry=True, after=wait)
    if isinstance(error, NetworkError) and not isinstance(error, BadRequest):  # PTB's BadRequest is a NetworkError
        return Failure(f"cannot reach Telegram ({type(error).__name__})", retry=True)
    return network_failure(error)


def _web_failure(error: BaseException) -> Failure:
    """The web server that cannot listen (a port in use, an address not of this machine): not retried."""
    if isinstance(error, RuntimeError):  # start_web's words for a socket that cannot be opened
        return Failure(str(error), retry=False)
    return network_failure(error)


async def run_adapters(
    settings: Settings,
    core: ChatCore,
    stop: asyncio.Event,
    model_problem: Callable[[], str | None],
    operations: Operations,
) -> bool:
    """Run every adapter `settings` configures on `core` until `stop`, each with its readiness check in
    `operations`; `model_problem` says why photos cannot be answered yet, for the web page.

    An adapter that fails is reported (the log, `/readyz`) and retried where a retry can help, while the others
    go on. Returns False when the adapters all ended before `stop` (none is left to answer, or the webhook lost
    its web server), else True.
    """
    supervised: list[Supervised] = []
    runs: list[asyncio.Task] = []  # runs that are not retried here: they report their own failures
    extra_routes = []
    if settings.telegram_token and settings.telegram_webhook_url:
        from .telegram_webhook import webhook_route

        extra_routes.append(webhook_route(settings, core, stop, operations, runs))
    elif settings.telegram_token:
        supervised.append(_telegram(settings, core, stop))
    if settings.discord_token:
        supervised.append(_discord(settings, core, stop))
    if settings.web_port is not None:
        from .web_adapter import build_web_app, run_web

        page = build_web_app(core, model_problem, _web_guards(settings), operations, review_token=settings.review_token)
        for path, handler in extra_routes:
            page.router.add_post(path, handler)

        def serve_web() -> Awaitable[None]:
            return run_web(page, settings.web_host, settings.web_port, stop)

        supervised.append(Supervised("web", serve_web, _web_failure, stop))
    for adapter in supervised:
        operations.checks[adapter.name] = adapter.check
        runs.append(asyncio.create_task(adapter.run(), name=adapter.name))
    log.info("running: %s", ", ".join(task.get_name() for task in runs))
    stranded = False  # the webhook's adapter left without its web server
    try:
        pending = set(runs)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for run in done:
                if not run.cancelled() and (error := run.exception()) is not None:
                    judge = _telegram_failure if run.get_name() == "telegram" else network_failure
                    reason = judge(error).reason
                    log.error("%s failed: %s; the other adapters go on", run.get_name(), reason, exc_info=error)
                elif run.get_name() == "web" and extra_routes and not stop.is_set():
                    # Telegram's webhook is served by the web server: without it, that adapter is down too.
                    log.error("the webhook has no web server to take updates on: stopping")
                    stranded = True
                    stop.set()
        if not stop.is_set():
            log.error("no adapter is left running: stopping")
        return stop.is_set() and not stranded
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
