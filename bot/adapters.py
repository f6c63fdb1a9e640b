"""Which chat adapters run in this process, each wired to the chat core and to its `/readyz` check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from .core import ChatCore
    from .operations import Operations

__all__ = ["run_adapters"]

log = logging.getLogger("doppelbot")


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


async def run_adapters(
    settings: Settings,
    core: ChatCore,
    stop: asyncio.Event,
    model_problem: Callable[[], str | None],
    operations: Operations,
) -> None:
    """Run every adapter `settings` configures on `core` until `stop` (or until one of them ends), each with its
    readiness check in `operations`; `model_problem` says why photos cannot be answered yet, for the web page."""
    runs = []
    extra_routes = []
    if settings.telegram_token and settings.telegram_webhook_url:
        from .telegram_webhook import webhook_route

        extra_routes.append(webhook_route(settings, core, stop, operations, runs))
    elif settings.telegram_token:
        from .telegram_adapter import build_application, run_telegram

        app = build_application(
            settings.telegram_token, core, settings.telegram_base_url, settings.telegram_base_file_url
        )
        runs.append(asyncio.create_task(run_telegram(app, stop), name="telegram"))

        async def telegram_ready() -> str | None:
            polling = app.running and app.updater is not None and app.updater.running
            return None if polling else "telegram: not polling for updates"

        operations.checks["telegram"] = telegram_ready
    if settings.discord_token:
        from .discord_adapter import IDENTIFY_TURN_SECONDS, build_client, connected, run_discord
        from .ratelimit import RateLimiter

        # IDENTIFY turns are kept where the rate limits are: in Redis, every process of the bot takes its turn.
        gate = RateLimiter(1, IDENTIFY_TURN_SECONDS, core.limiter.storage)
        client = build_client(
            core,
            settings.discord_api_base,
            settings.discord_gateway_url,
            settings.discord_shard_count,
            settings.discord_shard_ids,
            gate,
        )
        runs.append(asyncio.create_task(run_discord(client, settings.discord_token, stop), name="discord"))

        async def discord_ready() -> str | None:
            return None if connected(client) else "discord: not connected to the gateway"

        operations.checks["discord"] = discord_ready
    if settings.web_port is not None:
        from .web_adapter import build_web_app, run_web
        from .web_guards import AllowedHosts, WebGuards

        allowed = settings.web_allowed_hosts
        if settings.telegram_webhook_url:  # Telegram's requests name the webhook's public host
            allowed = (*allowed, _host_of(settings.telegram_webhook_url))
        hosts = AllowedHosts.configured(allowed, settings.web_host)
        guards = WebGuards(hosts, settings.web_max_uploads, settings.web_upload_seconds)
        page = build_web_app(core, model_problem, guards, operations)
        for path, handler in extra_routes:
            page.router.add_post(path, handler)
        runs.append(asyncio.create_task(run_web(page, settings.web_host, settings.web_port, stop), name="web"))
    log.info("running: %s", ", ".join(task.get_name() for task in runs))
    try:
        for finished in asyncio.as_completed(runs):
            await finished  # an adapter that ends early (a bad token, say) ends the process
            stop.set()
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
