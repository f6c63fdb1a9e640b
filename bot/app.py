"""`python -m bot`: every chat adapter with a token, in one asyncio process, on one inference worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from .core import ChatCore, RateLimiter, read_model_info
from .settings import Settings, SettingsError, load_settings

__all__ = ["main", "serve"]

log = logging.getLogger("doppelbot")


def _problems(settings: Settings) -> list[str]:
    """What is missing before the bot can start, each with how to fix it."""
    problems = []
    if not settings.telegram_token and not settings.discord_token:
        problems.append(
            "No chat token: put TELEGRAM_TOKEN (from @BotFather) and/or DISCORD_TOKEN (from the Discord "
            "developer portal) in .env (see .env.example), or in the environment."
        )
    if not settings.model_path.is_file():
        problems.append(
            f"No model at {settings.model_path}: make one with `python -m training` (needs internet) or "
            "`python -m training --from-folder DIR`, or set MODEL_PATH."
        )
    return problems


def _load_classifier(settings: Settings):
    import torch

    from model.serving import FaceClassifier

    torch.set_num_threads(settings.torch_threads)
    return FaceClassifier.load(settings.model_path, threshold=settings.threshold)


async def _run_adapters(settings: Settings, core: ChatCore, stop: asyncio.Event) -> None:
    runs = []
    if settings.telegram_token:
        from .telegram_adapter import build_application, run_telegram

        app = build_application(
            settings.telegram_token, core, settings.telegram_base_url, settings.telegram_base_file_url
        )
        runs.append(asyncio.create_task(run_telegram(app, stop), name="telegram"))
    if settings.discord_token:
        from .discord_adapter import build_client, run_discord

        client = build_client(core, settings.discord_api_base, settings.discord_gateway_url)
        runs.append(asyncio.create_task(run_discord(client, settings.discord_token, stop), name="discord"))
    log.info("running: %s", ", ".join(task.get_name() for task in runs))
    try:
        for finished in asyncio.as_completed(runs):
            await finished  # an adapter that ends early (a bad token, say) ends the process
            stop.set()
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGINT/SIGTERM); replies in progress are delivered first."""
    if problems := _problems(settings):
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    from .worker import InferenceWorker, ModelWatcher

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows, nor off the main thread
            loop.add_signal_handler(sig, stop.set)
    classifier = await asyncio.to_thread(_load_classifier, settings)
    worker = InferenceWorker(classifier, queue_size=settings.queue_size, batch_window=settings.batch_window_ms / 1000)
    watcher = ModelWatcher(settings.model_path, worker, lambda p: _load_classifier(settings))
    core = ChatCore(
        worker, RateLimiter(settings.rate_limit), lambda: read_model_info(settings.model_path), settings.max_bytes
    )
    watching = asyncio.create_task(watcher.watch(settings.reload_seconds))
    code = 0
    try:
        await _run_adapters(settings, core, stop)
    except Exception:
        log.exception("an adapter failed")
        code = 1
    finally:
        watching.cancel()
        await asyncio.to_thread(worker.close, 60)
    log.info("stopped")
    return code


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"Bad setting: {e}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings))
