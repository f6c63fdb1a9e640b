"""The chat bot: one core, with Telegram, Discord (and web) adapters, in one process."""
