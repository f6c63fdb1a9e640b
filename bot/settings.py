"""Settings, read once at start-up from the environment and `.env`; the shell wins over the file.

Every number has its range declared once, in `RANGES`: the check, the error message and the test that
`.env.example` documents it all read that one declaration, so they cannot disagree. `NAMES` is every setting
read, numbers and text, so that what runs the bot in a test can pin each one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import MAX_FACES_LISTED
from bot.i18n import ENGLISH, LANGUAGES, language_of
from bot.web_guards import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_SECONDS, host_entry, proxy_networks
from feedback.store import DEFAULT_FEEDBACK_DB
from model.answers import DEFAULT_THRESHOLD
from model.environment import MODEL_RANGES, SERVICE_RANGES, Range, SettingsError, environment
from model.precision import PRECISIONS
from model.resources import DEFAULT_MODEL_PATH, DEFAULT_PHOTO_TIMEOUT, FACE_DETECTORS

__all__ = ["NAMES", "RANGES", "TEXTS", "Range", "Settings", "SettingsError", "load_settings"]


# Each limit keeps a typo from turning into a failure that shows only later, or never: 0 photos a minute
# refused every photo, a queue of 0 had no bound, a reload every 0 s spun a core, an infinite batching
# window killed the inference thread. Upper bounds are generous, but each waiting photo holds memory.
RANGES: dict[str, Range] = {
    **MODEL_RANGES,  # CONFIDENCE_THRESHOLD and STRANGER_DISTANCE, which `python -m model` reads too
    # MAX_PHOTO_MB, MODEL_RELOAD_SECONDS, FACE_WORKERS, PHOTO_TIMEOUT_SECONDS: `python -m model.service`'s too
    **SERVICE_RANGES,
    "RATE_LIMIT_PER_MINUTE": Range(1, 10_000, whole=True),
    "QUEUE_SIZE": Range(1, 10_000, whole=True),
    "BATCH_WINDOW_MS": Range(0, 1_000),
    "TORCH_THREADS": Range(1, 256, whole=True),
    "WEB_PORT": Range(0, 65_535, whole=True),
    # At least one face is named; past 100 lines a list is unreadable (and is sent in several messages anyway).
    "MAX_FACES_LISTED": Range(1, 100, whole=True),
    # Each upload holds up to MAX_PHOTO_MB until it is answered: 1000 of them is 20 GB at the default.
    "WEB_MAX_UPLOADS": Range(1, 1_000, whole=True),
    # Under a second no real upload arrives; past an hour a trickling sender holds its place all that time.
    "WEB_UPLOAD_SECONDS": Range(1, 3_600),
    # How long a replica's claim on a webhook update holds: past it, a replica that died while handling the
    # update no longer stops another from answering its redelivery. Under a second, a slow photo's update
    # would be taken by a second replica; past an hour, Telegram may have given up redelivering.
    "UPDATE_CLAIM_SECONDS": Range(1, 3_600),
    # Discord requires shards past 2,500 servers per shard; 100,000 shards is far past any bot there is.
    "DISCORD_SHARD_COUNT": Range(1, 100_000, whole=True),
    # Faces users marked that nobody reviewed: a day at least (an owner reviews now and then), ten years at most.
    "FEEDBACK_KEEP_DAYS": Range(1, 3_650),
}
# The settings that are text: tokens, paths, addresses, names.
TEXTS = (
    "TELEGRAM_TOKEN",
    "DISCORD_TOKEN",
    "MODEL_PATH",
    "TELEGRAM_BASE_URL",
    "TELEGRAM_BASE_FILE_URL",
    "DISCORD_API_BASE",
    "DISCORD_GATEWAY_URL",
    "WEB_HOST",
    "WEB_ALLOWED_HOSTS",
    "WEB_TRUSTED_PROXIES",
    "CLASSIFIER_URL",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_WEBHOOK_SECRET",
    "REDIS_URL",
    "DISCORD_SHARD_IDS",
    "FACE_DETECTOR",
    "ENCODER_PRECISION",
    "DEFAULT_LANGUAGE",
    "FEEDBACK",
    "FEEDBACK_DB",
    "FEEDBACK_KEY",
    "REVIEW_TOKEN",
)
# Every setting `load_settings` reads (and nothing else of the environment).
NAMES = frozenset(RANGES) | frozenset(TEXTS)


@dataclass(frozen=True)
class Settings:
    """Everything the bot process is configured with. Tokens never appear in its repr."""

    telegram_token: str | None = field(default=None, repr=False)
    discord_token: str | None = field(default=None, repr=False)
    model_path: Path = DEFAULT_MODEL_PATH
    threshold: float = DEFAULT_THRESHOLD
    stranger_distance: float | None = None  # None: the distance the model was trained with
    max_photo_mb: float = 20.0  # Telegram's Bot API serves files up to 20 MB
    rate_limit: int = 10  # photos per user per minute
    queue_size: int = 32  # photos waiting for the model before "busy"
    batch_window_ms: float = 30.0
    reload_seconds: float = 5.0  # how often to look for a replaced model file
    # One torch thread leaves the other core of a small machine to dlib's detector and the event
    # loop; with two, any other busy process made each forward pass 10-50x slower (OpenMP spinning).
    torch_threads: int = 1
    # Processes that find faces when several photos arrive together (dlib's detector uses one core
    # and holds Python's lock, so threads would not help); 0: none, the inference thread does it.
    face_workers: int = 2
    max_faces_listed: int = MAX_FACES_LISTED  # faces named in a reply; the rest are "and N more"
    # Seconds a photo may take in a face-finding process before it is answered "took too long" (FACE_WORKERS > 0).
    photo_timeout: float = DEFAULT_PHOTO_TIMEOUT
    face_detector: str = "hog"  # "cnn": dlib's MMOD detector, for a machine with a GPU (seconds a photo on a CPU)
    encoder_precision: str = "auto"  # the encoder's number format: auto (bf16 where the CPU has it), fp32, bf16, int8
    default_language: str = ENGLISH  # for users whose app names no language we speak (bot.i18n.LANGUAGES)
    telegram_base_url: str | None = None  # e.g. http://127.0.0.1:8081/bot (the token is appended)
    telegram_base_file_url: str | None = None
    discord_api_base: str | None = None  # e.g. http://127.0.0.1:8082/api/v10
    discord_gateway_url: str | None = None  # e.g. ws://127.0.0.1:8082/gateway
    # The web page: off unless a port is set (`--web` sets 8080); 0 picks a free port. Local only by default.
    web_host: str = "127.0.0.1"
    web_port: int | None = None
    # The names the page answers to; empty: the local names and WEB_HOST (see web_guards.AllowedHosts).
    web_allowed_hosts: tuple[str, ...] = ()
    web_max_uploads: int = DEFAULT_MAX_UPLOADS  # uploads read and answered at once; more are told "busy"
    web_upload_seconds: float = DEFAULT_UPLOAD_SECONDS  # the longest an upload may take to arrive
    # The load balancers (addresses or CIDR networks) whose X-Forwarded-For names the sender; none: the peer is.
    web_trusted_proxies: tuple[str, ...] = ()
    # The classifier service (`python -m model.service`), e.g. http://10.0.0.5:8000; unset: the model
    # runs in this process. Set, this process loads neither torch nor the model.
    classifier_url: str | None = None
    # Telegram's webhook: the public URL updates are POSTed to (its path is served on WEB_HOST:WEB_PORT),
    # and the secret Telegram sends with each. Unset: the bot polls (one process only).
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = field(default=None, repr=False)
    # Redis, shared by every replica: which webhook updates were answered, the rate limits, and Discord's
    # IDENTIFY turns. Unset: each kept in this process.
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    update_claim_seconds: float = 30.0
    # Discord's shards: how many the bot has in all, and which of them this process runs (None: all of
    # them). No count: Discord's recommended count, every shard in this process.
    discord_shard_count: int | None = None
    discord_shard_ids: tuple[int, ...] | None = None
    # Users' feedback: the buttons under answers, and the database a press is kept in (a SQLAlchemy URL: SQLite
    # for one process, PostgreSQL shared by replicas), with the key that hashes user ids there.
    feedback: bool = True
    feedback_db: str = field(default=DEFAULT_FEEDBACK_DB, repr=False)  # may hold a password
    feedback_key: str | None = field(default=None, repr=False)
    feedback_keep_days: float = 90.0  # faces nobody reviewed are deleted after this many days
    review_token: str | None = field(default=None, repr=False)  # set: the review page at /review, behind it

    @property
    def max_bytes(self) -> int:
        return int(self.max_photo_mb * 1024 * 1024)


# Which attribute of `Settings` each setting of `RANGES` fills.
_NUMBER_ATTRIBUTES = {
    "CONFIDENCE_THRESHOLD": "threshold",
    "STRANGER_DISTANCE": "stranger_distance",
    "MAX_PHOTO_MB": "max_photo_mb",
    "RATE_LIMIT_PER_MINUTE": "rate_limit",
    "QUEUE_SIZE": "queue_size",
    "BATCH_WINDOW_MS": "batch_window_ms",
    "MODEL_RELOAD_SECONDS": "reload_seconds",
    "TORCH_THREADS": "torch_threads",
    "FACE_WORKERS": "face_workers",
    "WEB_PORT": "web_port",
    "MAX_FACES_LISTED": "max_faces_listed",
    "PHOTO_TIMEOUT_SECONDS": "photo_timeout",
    "WEB_MAX_UPLOADS": "web_max_uploads",
    "WEB_UPLOAD_SECONDS": "web_upload_seconds",
    "UPDATE_CLAIM_SECONDS": "update_claim_seconds",
    "DISCORD_SHARD_COUNT": "discord_shard_count",
    "FEEDBACK_KEEP_DAYS": "feedback_keep_days",
}


def load_settings(env: Mapping[str, str] | None = None, dotenv: str | Path | None = None) -> Settings:
    """Settings from `env` (default: `.env` in the working folder, overridden by the process environment).

    Raises `SettingsError` for the first number outside its range in `RANGES`.
    """
    if env is None:
        env = environment(dotenv)

    def text(name: str) -> str | None:
        return env.get(name, "").strip() or None

    # Unset numbers keep the defaults declared on `Settings`.
    numbers = {
        attribute: RANGES[name].parse(name, raw)
        for name, attribute in _NUMBER_ATTRIBUTES.items()
        if (raw := text(name)) is not None
    }
    return Settings(
        telegram_token=text("TELEGRAM_TOKEN"),
        discord_token=text("DISCORD_TOKEN"),
        model_path=Path(text("MODEL_PATH") or DEFAULT_MODEL_PATH),
        telegram_base_url=text("TELEGRAM_BASE_URL"),
        telegram_base_file_url=text("TELEGRAM_BASE_FILE_URL"),
        discord_api_base=text("DISCORD_API_BASE"),
        discord_gateway_url=text("DISCORD_GATEWAY_URL"),
        web_host=text("WEB_HOST") or "127.0.0.1",
        web_allowed_hosts=_hosts("WEB_ALLOWED_HOSTS", text("WEB_ALLOWED_HOSTS")),
        web_trusted_proxies=_proxies("WEB_TRUSTED_PROXIES", text("WEB_TRUSTED_PROXIES")),
        classifier_url=_service_url("CLASSIFIER_URL", text("CLASSIFIER_URL")),
        telegram_webhook_url=_service_url("TELEGRAM_WEBHOOK_URL", text("TELEGRAM_WEBHOOK_URL"), "this bot's public"),
        telegram_webhook_secret=_secret("TELEGRAM_WEBHOOK_SECRET", text("TELEGRAM_WEBHOOK_SECRET")),
        redis_url=_redis_url("REDIS_URL", text("REDIS_URL")),
        discord_shard_ids=_shard_ids(
            "DISCORD_SHARD_IDS", text("DISCORD_SHARD_IDS"), numbers.get("discord_shard_count")
        ),
        face_detector=_detector("FACE_DETECTOR", text("FACE_DETECTOR")),
        encoder_precision=_precision("ENCODER_PRECISION", text("ENCODER_PRECISION")),
        default_language=_language("DEFAULT_LANGUAGE", text("DEFAULT_LANGUAGE")),
        feedback=_switch("FEEDBACK", text("FEEDBACK"), default=True),
        feedback_db=_database_url("FEEDBACK_DB", text("FEEDBACK_DB")),
        feedback_key=_key("FEEDBACK_KEY", text("FEEDBACK_KEY")),
        review_token=_key("REVIEW_TOKEN", text("REVIEW_TOKEN")),
        **numbers,
    )


def _detector(name: str, raw: str | None) -> str:
    """hog or cnn."""
    value = (raw or "hog").lower()
    if value not in FACE_DETECTORS:
        choices = " or ".join(FACE_DETECTORS)
        raise SettingsError(f"{name}={raw!r} is not allowed: {name} must be {choices} (see .env.example)")
    return value


def _precision(name: str, raw: str | None) -> str:
    """auto, fp32, bf16 or int8."""
    value = (raw or "auto").lower()
    if value not in PRECISIONS:
        raise SettingsError(
            f"{name}={raw!r} is not allowed: {name} must be {' or '.join(PRECISIONS)} (see .env.example)"
        )
    return value


def _language(name: str, raw: str | None) -> str:
    """One of the languages the bot speaks: en, es, pt_BR (also pt-BR, pt), ru, de, fr."""
    if raw is None:
        return ENGLISH
    code = language_of(raw)
    if code is None:
        raise SettingsError(
            f"{name}={raw!r} is not a language this bot speaks: {name} must be one of {', '.join(LANGUAGES)} "
            "(see .env.example)"
        )
    return code


def _switch(name: str, raw: str | None, default: bool) -> bool:
    """on/off (also true/false, yes/no, 1/0)."""
    if raw is None:
        return default
    value = raw.lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise SettingsError(f"{name}={raw!r} is not allowed: {name} must be on or off (see .env.example)")


def _database_url(name: str, raw: str | None) -> str:
    """A SQLAlchemy URL of SQLite or PostgreSQL, such as sqlite:///data/feedback.sqlite3."""
    if raw is None:
        return DEFAULT_FEEDBACK_DB
    if not raw.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise SettingsError(
            f"{name} is not allowed: it must be a sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB URL "
            "(see .env.example)"
        )  # it may hold a password: never printed
    return raw


def _key(name: str, raw: str | None) -> str | None:
    """A secret of at least 16 characters: shorter ones are guessed."""
    if raw is not None and len(raw) < 16:
        raise SettingsError(f"{name} is not allowed: it must be at least 16 characters long (see .env.example)")
    return raw


def _service_url(name: str, raw: str | None, whose: str = "the classifier service's") -> str | None:
    """An http(s) URL with a host, such as http://10.0.0.5:8000, without a trailing slash."""
    if raw is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name}={raw!r} is not allowed: {name} must be {whose} http(s) URL, "
            "such as http://127.0.0.1:8000 (see .env.example)"
        )
    return raw.rstrip("/")


def _secret(name: str, raw: str | None) -> str | None:
    """Telegram's rule for a webhook's secret token: 1 to 256 of A-Z, a-z, 0-9, _ and -."""
    import re

    if raw is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", raw):
        raise SettingsError(
            f"{name} is not allowed: it must be 1 to 256 letters, digits, _ or - (see .env.example)"
        )  # the value itself is a secret: never printed
    return raw


def _redis_url(name: str, raw: str | None) -> str | None:
    if raw is not None and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(
            f"{name} is not allowed: it must be a redis://, rediss:// or unix:// URL (see .env.example)"
        )
    return raw


def _shard_ids(name: str, raw: str | None, count: int | None) -> tuple[int, ...] | None:
    """A comma-separated list of distinct shard ids, each from 0 to DISCORD_SHARD_COUNT - 1."""
    if raw is None:
        return None
    if count is None:
        raise SettingsError(f"{name} needs DISCORD_SHARD_COUNT, the number of shards in all (see .env.example)")
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    ids = tuple(int(part) for part in parts if part.isdigit() and int(part) < count)
    if not ids or len(ids) != len(parts) or len(set(ids)) != len(ids):
        raise SettingsError(
            f"{name}={raw!r} is not allowed: {name} must list distinct shard ids from 0 to {count - 1}, "
            "separated by commas, such as 0,1 (see .env.example)"
        )
    return ids


def _hosts(name: str, raw: str | None) -> tuple[str, ...]:
    """A comma-separated list of host names or addresses, each with a port or without."""
    hosts = tuple(host.strip() for host in (raw or "").split(",") if host.strip())
    for host in hosts:
        try:
            host_entry(host)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not allowed: {host!r} is not a host name or address (with a port or "
                "without); list them separated by commas (see .env.example)"
            ) from None
    return hosts


def _proxies(name: str, raw: str | None) -> tuple[str, ...]:
    """A comma-separated list of addresses or CIDR networks, such as 10.0.0.0/8,fd00::1."""
    proxies = tuple(proxy.strip() for proxy in (raw or "").split(",") if proxy.strip())
    try:
        proxy_networks(proxies)
    except ValueError as e:
        raise SettingsError(
            f"{name}={raw!r} is not allowed: {e}; list addresses or networks (such as 10.0.0.0/8) separated by "
            "commas (see .env.example)"
        ) from None
    return proxies
