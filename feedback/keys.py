"""The key of the feedback store's hashes: FEEDBACK_KEY, or for SQLite a random one kept beside the database."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from model.environment import SettingsError

from .store import engine_url

__all__ = ["MIN_KEY_LENGTH", "database_file", "feedback_key", "key_file"]

MIN_KEY_LENGTH = 16


def database_file(url: str) -> Path | None:
    """The file of a SQLite database at `url`; None for another database or an in-memory one."""
    parsed = engine_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def key_file(url: str) -> Path | None:
    """Where the key of a SQLite database at `url` is kept (`<db>.key`); None for another or in-memory one."""
    database = database_file(url)
    return None if database is None else database.with_name(database.name + ".key")


def feedback_key(secret: str | None, url: str) -> bytes:
    """FEEDBACK_KEY when set; for SQLite a key made once and kept in `<db>.key`; otherwise a `SettingsError`."""
    if secret:
        if len(secret) < MIN_KEY_LENGTH:
            raise SettingsError(f"FEEDBACK_KEY must be at least {MIN_KEY_LENGTH} characters (see .env.example)")
        return secret.encode()
    if engine_url(url).get_backend_name() != "sqlite":
        raise SettingsError(
            "set FEEDBACK_KEY (any string of 16 characters or more) to use this FEEDBACK_DB: every replica "
            "sharing the database must hash user ids with the same key (see .env.example)"
        )
    path = key_file(url)
    if path is None:
        return secrets.token_hex(32).encode()  # an in-memory database lives no longer than this process
    return _kept_key(path)


def _kept_key(path: Path) -> bytes:
    """The key in `path`, written there first (mode 0600) if no process has yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole under a temporary name, then linked into place: a second process starting at the same
        # moment either wins the link or reads the finished key, never a half-written one.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, secrets.token_hex(32).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink()
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise SettingsError(f"the feedback key file {path} is damaged: delete it only together with the database")
    return key
