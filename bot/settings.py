"""Settings, read once at start-up from the environment and `.env`; the shell wins over the file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from model.answers import DEFAULT_THRESHOLD
from model.environment import environment
from model.resources import DEFAULT_MODEL_PATH

__all__ = ["Settings", "SettingsError", "load_settings"]


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names it."""


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
    # and holds Python's lock, so threads would not help); 0 or 1: the inference thread does it.
    face_workers: int = 2
    telegram_base_url: str | None = None  # e.g. http://127.0.0.1:8081/bot (the token is appended)
    telegram_base_file_url: str | None = None
    discord_api_base: str | None = None  # e.g. http://127.0.0.1:8082/api/v10
    discord_gateway_url: str | None = None  # e.g. ws://127.0.0.1:8082/gateway
    # The web page: off unless a port is set (`--web` sets 8080); 0 picks a free port. Local only by default.
    web_host: str = "127.0.0.1"
    web_port: int | None = None

    @property
    def max_bytes(self) -> int:
        return int(self.max_photo_mb * 1024 * 1024)


def _number(env: Mapping[str, str], name: str, default: float, kind=float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name, "").strip():
        return None
    port = int(_number(env, name, 0, int))
    if port > 65535:
        raise SettingsError(f"{name} must be a port number, 0 to 65535")
    return port


def load_settings(env: Mapping[str, str] | None = None, dotenv: str | Path | None = None) -> Settings:
    """Settings from `env` (default: `.env` in the working folder, overridden by the process environment)."""
    if env is None:
        env = environment(dotenv)

    def text(name: str) -> str | None:
        return env.get(name, "").strip() or None

    return Settings(
        telegram_token=text("TELEGRAM_TOKEN"),
        discord_token=text("DISCORD_TOKEN"),
        model_path=Path(text("MODEL_PATH") or DEFAULT_MODEL_PATH),
        threshold=_number(env, "CONFIDENCE_THRESHOLD", DEFAULT_THRESHOLD),
        stranger_distance=_number(env, "STRANGER_DISTANCE", None) if text("STRANGER_DISTANCE") else None,
        max_photo_mb=_number(env, "MAX_PHOTO_MB", 20.0),
        rate_limit=int(_number(env, "RATE_LIMIT_PER_MINUTE", 10, int)),
        queue_size=int(_number(env, "QUEUE_SIZE", 32, int)),
        batch_window_ms=_number(env, "BATCH_WINDOW_MS", 30.0),
        reload_seconds=_number(env, "MODEL_RELOAD_SECONDS", 5.0),
        torch_threads=max(1, int(_number(env, "TORCH_THREADS", 1, int))),
        face_workers=int(_number(env, "FACE_WORKERS", 2, int)),
        telegram_base_url=text("TELEGRAM_BASE_URL"),
        telegram_base_file_url=text("TELEGRAM_BASE_FILE_URL"),
        discord_api_base=text("DISCORD_API_BASE"),
        discord_gateway_url=text("DISCORD_GATEWAY_URL"),
        web_host=text("WEB_HOST") or "127.0.0.1",
        web_port=_port(env, "WEB_PORT"),
    )
