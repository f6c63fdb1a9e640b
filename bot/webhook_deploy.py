"""`python -m bot --set-webhook` / `--delete-webhook`: registering Telegram's webhook, a deploy step done once.

Replicas never set the webhook themselves, so they never fight over it.
"""

from __future__ import annotations

import asyncio
import sys

from telegram import Bot

from .settings import Settings
from .telegram_adapter import ALLOWED_UPDATES

__all__ = ["delete_webhook", "set_webhook", "webhook_step"]


async def set_webhook(token: str, url: str, secret: str, base_url: str | None = None) -> None:
    """Register the webhook: Telegram posts this bot's updates (messages, button presses) to `url`, with `secret`
    in a header."""
    async with _bot(token, base_url) as bot:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)


async def delete_webhook(token: str, base_url: str | None = None) -> None:
    """Remove the webhook: Telegram keeps the updates for polling again."""
    async with _bot(token, base_url) as bot:
        await bot.delete_webhook()


def _bot(token: str, base_url: str | None) -> Bot:
    return Bot(token, base_url=base_url) if base_url else Bot(token)


def webhook_step(settings: Settings, delete: bool) -> int:
    """`--set-webhook` / `--delete-webhook` as configured by `settings`; returns the exit status."""
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
