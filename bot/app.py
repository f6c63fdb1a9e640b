"""`python -m bot`: every chat adapter with a token, and the web page if asked, in one asyncio process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .adapters import run_adapters
from .core import ChatCore, ModelInfo, RateLimiter, read_model_info
from .feedback import Feedback
from .ratelimit import limiter_storage
from .redaction import redact_secrets
from .settings import Settings, SettingsError, load_settings

__all__ = ["DEFAULT_WEB_PORT", "main", "serve"]

log = logging.getLogger("doppelbot")

DEFAULT_WEB_PORT = 8080  # what `--web` serves on when WEB_PORT is not set
PURGE_EVERY_S = 3600.0  # how often faces past FEEDBACK_KEEP_DAYS are looked for: days are what count


def _no_model(settings: Settings) -> str:
    return (
        f"No model at {settings.model_path}: make one with `python -m training` (needs internet) or "
        "`python -m training --from-folder DIR`, or set MODEL_PATH."
    )


def _problems(settings: Settings) -> list[str]:
    """What is missing before the bot can start, each with how to fix it."""
    problems = []
    web = settings.web_port is not None
    if not settings.telegram_token and not settings.discord_token and not web:
        problems.append(
            "No chat token: put TELEGRAM_TOKEN (from @BotFather) and/or DISCORD_TOKEN (from the Discord "
            "developer portal) in .env (see .env.example), or in the environment. To try a model in the "
            "browser instead, run `python -m bot --web`."
        )
    if settings.telegram_webhook_url and not settings.telegram_webhook_secret:
        problems.append(
            "TELEGRAM_WEBHOOK_URL is set without TELEGRAM_WEBHOOK_SECRET: anyone could post updates. Set a secret "
            "(1 to 256 letters, digits, _ or -) and register it with `python -m bot --set-webhook`."
        )
    # The web page starts without a model, so that it can say how to make one; a frontend of the
    # classifier service needs none. A webhook replica serves the web port too, but answers Telegram as
    # polling does: without a model it would take every update only to say there is none.
    if settings.feedback and not settings.feedback_db.startswith("sqlite") and not settings.feedback_key:
        problems.append(
            "FEEDBACK_DB is not SQLite, so the replicas share it: set FEEDBACK_KEY (16 or more random characters, "
            "the same on every replica), which hashes user ids there, or set FEEDBACK=off."
        )
    page = web and not settings.telegram_webhook_url
    if not page and not settings.classifier_url and not settings.model_path.is_file():
        problems.append(_no_model(settings))
    return problems


class _MissingModel:
    """Serves until a model file appears: every photo is answered with how to make a model."""

    model_info = None  # no model, nothing to say about it

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def classify_many(self, photos: Sequence[bytes]) -> list:
        from model.answers import PhotoAnswer

        return [PhotoAnswer("error", error=self.problem, error_kind="ModelNotFound") for _ in photos]


def _load_classifier(settings: Settings, pool=None):
    """The classifier for `settings.model_path`, with the metadata that describes it as `model_info`.

    `/about` and the web page read the metadata from the classifier being served, so a model file that
    fails to load later leaves them describing the model that still answers.
    """
    if not settings.model_path.is_file():
        return _MissingModel(_no_model(settings))
    import torch

    from model.decode import DecodeLimits
    from model.faces import FaceOptions
    from model.serving import FaceClassifier

    torch.set_num_threads(settings.torch_threads)
    classifier = FaceClassifier.load(
        settings.model_path,
        threshold=settings.threshold,
        stranger_distance=settings.stranger_distance,
        pool=pool,
        face_options=FaceOptions(detector=settings.face_detector),
        precision=settings.encoder_precision,
        # The decoder's own size cap is MAX_PHOTO_MB too, or photos the chat core took would be refused.
        limits=DecodeLimits(max_bytes=settings.max_bytes),
    )
    # Read after the model, not before: publishing renames the model file first and its metadata second,
    # and loading takes seconds, so the metadata read now is the one written with this model.
    classifier.model_info = read_model_info(settings.model_path)
    return classifier


def _unloadable(path: Path, error: Exception) -> str:
    """One line saying that the model file at `path` is unusable, and what to do."""
    # Its first sentence: torch's zip errors go on for lines about what the user could do in Python.
    reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")[:200]
    return (
        f"The model at {path} could not be loaded ({type(error).__name__}: {reason}); it is damaged or not an "
        "exported learner. Make it again with `python -m training`, or set MODEL_PATH to a good one."
    )


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
    if settings.classifier_url:
        return await _serve_with(settings, stop, *await _remote(settings))
    pool = None
    if settings.face_workers > 0:
        from model.search import FacePool

        # Photos that arrive together have their faces found in other processes (even one lets the
        # network answer the first photos meanwhile); every loaded model shares the pool.
        pool = FacePool(settings.face_workers, photo_timeout=settings.photo_timeout)
        from model.faces import FaceOptions

        if not await asyncio.to_thread(pool.start, FaceOptions(detector=settings.face_detector)):
            pool = None
    if pool is None:
        log.info("faces are found on the inference thread (FACE_WORKERS=%d)", settings.face_workers)
    else:
        processes = "1 process" if pool.workers == 1 else f"{pool.workers} processes"
        log.info("faces of photos that arrive together are found by %s", processes)
    try:
        classifier = await asyncio.to_thread(_load_classifier, settings, pool)
    except Exception as e:  # a damaged file: say so in one line, as the reload path logs and carries on
        print(_unloadable(settings.model_path, e), file=sys.stderr)
        if pool is not None:
            await asyncio.to_thread(pool.close)
        return 2
    worker = InferenceWorker(classifier, queue_size=settings.queue_size, batch_window=settings.batch_window_ms / 1000)
    watcher = ModelWatcher(settings.model_path, worker, lambda p: _load_classifier(settings, pool))

    async def close() -> None:
        await asyncio.to_thread(worker.close, 60)
        if pool is not None:
            await asyncio.to_thread(pool.close)

    async def model_ready() -> str | None:
        missing = worker.classifier
        return f"model: {missing.problem}" if isinstance(missing, _MissingModel) else None

    return await _serve_with(settings, stop, worker, watcher.watch(settings.reload_seconds), close, model_ready)


async def _remote(settings: Settings):
    """The classifier service as the worker: no torch, no model here; `/about` from the service's, kept fresh."""
    from model.decode import DecodeLimits

    from .remote import RemoteClassifier

    # The settings a reply depends on go with it, as they apply in-process: "busy" past QUEUE_SIZE, and the
    # threshold and stranger distance applied by the service to this frontend's photos.
    worker = RemoteClassifier(
        settings.classifier_url,
        limits=DecodeLimits(max_bytes=settings.max_bytes),
        queue_size=settings.queue_size,
        threshold=settings.threshold,
        stranger_distance=settings.stranger_distance,
    )

    async def describe() -> bool:
        about = await worker.about()
        if about is not None:
            worker.classifier.model_info = ModelInfo.from_metadata(about)
        return about is not None

    async def keep_describing() -> None:
        """The service may move to a new model: its description is read again as often as a model file is checked."""
        while True:
            await asyncio.sleep(settings.reload_seconds)
            await describe()

    if await describe():
        log.info("answering with the classifier service at %s", settings.classifier_url)
    else:
        log.warning("the classifier service at %s does not answer yet; photos wait for it", settings.classifier_url)

    async def service_ready() -> str | None:
        answered = await describe()
        return None if answered else f"classifier service: {settings.classifier_url} does not answer"

    return worker, keep_describing(), worker.aclose, service_ready


async def _serve_with(settings: Settings, stop: asyncio.Event, worker, watching, close, model_ready) -> int:
    """Run the adapters on `worker` until `stop`; then `close` it. `model_ready`: the model's readiness check."""
    from .operations import Operations

    operations = Operations()
    operations.checks["model"] = model_ready
    operations.queue_depth.set_function(worker.waiting)
    worker.on_batch = operations.batch_size.observe

    def model_problem() -> str | None:
        """Why photos cannot be answered yet (no model file), or None."""
        missing = worker.classifier
        return missing.problem if isinstance(missing, _MissingModel) else None

    def model_info() -> ModelInfo | None:
        """What is recorded about the model answering now: read when it was loaded, swapped with it."""
        return getattr(worker.classifier, "model_info", None)

    def describe_model() -> None:
        info = model_info()
        if info is not None:
            operations.describe_model(info.classes, info.trained_at, info.accuracy)

    operations.before_scrape.append(describe_model)
    feedback = _feedback(settings, worker, model_info, operations)
    limiter = RateLimiter(settings.rate_limit, storage=limiter_storage(settings.redis_url))
    if settings.redis_url:
        operations.checks["redis"] = limiter.ping
    # As many photos are downloaded at once as the queue holds: one fetched past that would be answered "busy"
    # by the queue anyway, so the memory photos take stays within twice QUEUE_SIZE x MAX_PHOTO_MB.
    core = ChatCore(
        worker,
        limiter,
        model_info,
        settings.max_bytes,
        settings.max_faces_listed,
        operations,
        max_downloads=settings.queue_size,
        feedback=feedback,
        keep_days=settings.feedback_keep_days,
        default_language=settings.default_language,
    )
    watcher = asyncio.create_task(watching) if watching is not None else None
    purger = asyncio.create_task(_purging(feedback.store, settings.feedback_keep_days)) if feedback.store else None
    code = 0
    try:
        # An adapter that fails is reported and retried where that helps, while the others go on; the process
        # ends by itself (status 1) only when none is left to answer.
        if not await run_adapters(settings, core, stop, model_problem, operations):
            code = 1
    except Exception:  # what starts the adapters failed, not one of them
        log.exception("the adapters could not be started")
        code = 1
    finally:
        for task in (watcher, purger):
            if task is not None:
                task.cancel()
        await close()
        if feedback.store is not None:
            await asyncio.to_thread(feedback.store.close)
    log.info("stopped")
    return code


def _feedback(settings: Settings, worker, model_info, operations) -> Feedback:
    """The buttons under answers and their database (none with FEEDBACK=off, when only Why? is offered); nothing
    connects yet: a database that is down costs presses, never the start or an answer."""
    store = None
    if settings.feedback:
        from feedback.keys import feedback_key
        from feedback.store import FeedbackStore

        store = FeedbackStore(settings.feedback_db, feedback_key(settings.feedback_key, settings.feedback_db))

    def classes() -> list[str]:
        """The classes in the order answers list their probabilities (the buttons' order): the learner's own in
        this process; the service's, as its `/about` names them, behind CLASSIFIER_URL."""
        if served := getattr(worker.classifier, "classes", None):
            return [str(c) for c in served]
        info = model_info()
        return list(info.classes) if info is not None else []

    def model_date() -> str | None:
        info = model_info()
        return info.trained_at if info else None

    # Why? takes the photo again as a press does, in this process or from the classifier service (`/why`).
    return Feedback(store, worker.examine, classes, model_date, operations.pressed, why=worker.why)


async def _purging(store, keep_days: float, every: float = PURGE_EVERY_S) -> None:
    """Delete the faces nobody reviewed within `keep_days`, now and then every `every` seconds."""
    from feedback.store import StoreUnavailable

    while True:
        try:
            if purged := await asyncio.to_thread(store.purge, keep_days):
                log.info("deleted %d unreviewed face(s) older than %g days (FEEDBACK_KEEP_DAYS)", purged, keep_days)
        except StoreUnavailable:
            log.warning("could not purge old feedback: the database is unavailable")
        await asyncio.sleep(every)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bot",
        description="Run every chat adapter that has a token in .env, and the web page if asked.",
    )
    p.add_argument(
        "--web",
        action="store_true",
        help=f"also serve the web page, at WEB_HOST:WEB_PORT (default 127.0.0.1:{DEFAULT_WEB_PORT}); "
        "needs no chat token",
    )
    steps = p.add_mutually_exclusive_group()
    steps.add_argument(
        "--set-webhook",
        action="store_true",
        help="register TELEGRAM_WEBHOOK_URL and its secret with Telegram, then exit (a deploy step, done once)",
    )
    steps.add_argument("--delete-webhook", action="store_true", help="remove the webhook, then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bot as configured by `.env`, the environment and `argv`; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"Bad setting: {e}", file=sys.stderr)
        return 2
    # Whatever a library puts in a message or a traceback (PTB's InvalidToken names the token), no line shows one.
    redact_secrets(_secrets(settings))
    if args.set_webhook or args.delete_webhook:
        from .webhook_deploy import webhook_step

        return webhook_step(settings, delete=args.delete_webhook)
    if (args.web or settings.telegram_webhook_url) and settings.web_port is None:
        settings = dataclasses.replace(settings, web_port=DEFAULT_WEB_PORT)
    try:
        return asyncio.run(serve(settings))
    except Exception:  # through the log, so that the traceback is cleaned of secrets as every line is
        log.exception("the bot failed")
        return 1


def _secrets(settings: Settings) -> list[str | None]:
    """Every secret the settings hold: the tokens, the webhook's secret, and Redis' password."""
    from urllib.parse import urlsplit

    password = urlsplit(settings.redis_url).password if settings.redis_url else None
    # A Telegram token's part after ':' is its secret, and may be quoted alone (the bot id before it is public).
    telegram_secret = settings.telegram_token.partition(":")[2] if settings.telegram_token else None
    return [
        settings.telegram_token,
        telegram_secret,
        settings.discord_token,
        settings.telegram_webhook_secret,
        password,
        urlsplit(settings.feedback_db).password,
        settings.feedback_key,
        settings.review_token,
    ]
