"""Secrets never reach the log: every record is cleaned of the configured tokens before any handler writes it.

Redacting where each message is written (the adapters do, where they can) misses whatever a library puts in its
own messages: python-telegram-bot's `InvalidToken` names the token, httpx's request lines and tracebacks hold
URLs with it. So the redaction sits where every line passes, on the handlers of the root logger: the message,
its arguments, the formatted traceback and the stack are cleaned, whoever logged them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["REDACTED", "SecretFilter", "redact_secrets"]

REDACTED = "<redacted>"
# A secret this short could be a common word or number: replacing it everywhere would garble the log, and a
# real token (Telegram's or Discord's, a webhook secret of any strength) is far longer.
_SHORTEST = 6


class SecretFilter(logging.Filter):
    """Replaces each of `secrets` by `REDACTED` in every record that passes (never drops one)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= _SHORTEST}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        # The message is formatted here, once, so that a secret among its arguments is caught too.
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            # Formatters keep a record's formatted traceback in exc_text and write that: formatted here, cleaned.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def redact_secrets(secrets: Iterable[str | None]) -> SecretFilter:
    """Install a `SecretFilter` for `secrets` on every handler of the root logger (call after `basicConfig`).

    Warnings are sent through logging too, so that one quoting a secret is cleaned like any other line.
    """
    secret_filter = SecretFilter(secrets)
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)
    return secret_filter
