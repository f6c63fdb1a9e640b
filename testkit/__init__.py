"""Fakes of Telegram, Discord and the web, and harnesses that start the real processes against them.

Shared by tests/ and bench/: the strict fakes (status codes, limits, retries) and the `LiveBot`,
`WebhookBot`, `Service` and `RedisServer` harnesses, importable as `testkit.*` once the project is installed.
"""
