"""End to end: `python -m bot` as a real subprocess, configured only through its environment, against
FakeTelegram and FakeDiscord on 127.0.0.1.

A bot process starts in seconds, not milliseconds, so a `LiveBot` serves a whole test module: the fakes
run on an event loop in a background thread, tests hand it coroutines with `live.run(...)`, and the bot
process lives until the module is done. Used by the tests/test_e2e_*.py modules and by bench/load.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bot.settings import NAMES
from testkit.fake_discord import FakeDiscord, RestCall
from testkit.fake_telegram import Call, FakeTelegram

__all__ = [
    "DISCORD_TOKEN",
    "LiveBot",
    "discord_replies_to",
    "memory_kb",
    "model_folder",
    "telegram_replies_to",
    "telegram_text",
]

ROOT = Path(__file__).resolve().parent.parent
DISCORD_TOKEN = "discord-e2e-secret.never-logged"
# Replies to a photo take well under a second on an idle machine; two shared cores under load need more.
REPLY_TIMEOUT = 90.0
START_TIMEOUT = 120.0
# Every setting the bot reads, as bot/settings.py declares them; the cache (DOPPELBOT_CACHE) is not one of
# them: it is shared with the test session, which fills it.
BOT_SETTINGS = NAMES

T = TypeVar("T")


def model_folder(exported: Path, folder: Path, accuracy: float = 0.985) -> Path:
    """A copy of an exported learner with the `export.json` that `python -m training` writes beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "export.pkl"
    model.write_bytes(exported.read_bytes())
    meta = {"classes": ["Eileen", "Twin"], "accuracy": accuracy, "n_valid": 200, "trained_at": "2025-01-31T12:00:00"}
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the peak so far) of a process, in KiB, from /proc."""
    found = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def telegram_replies_to(fake: FakeTelegram, message: dict[str, Any]) -> list[Call]:
    """The messages the bot delivered in answer to `message` (text or photo)."""
    chat_id = message["chat"]["id"]
    return [c for c in fake.replies if c.reply_to == message["message_id"] and str(c.params["chat_id"]) == str(chat_id)]


def telegram_text(call: Call) -> str:
    return call.params.get("text") or call.params.get("caption") or ""


def discord_replies_to(fake: FakeDiscord, message: dict[str, Any]) -> list[RestCall]:
    """The messages the bot posted in `message`'s channel as replies to it."""
    channel_id, message_id = int(message["channel_id"]), int(message["id"])
    return fake.calls_where(
        lambda call: call.is_message_to(channel_id) and call.reply_to == message_id and call.status == 200
    )


class LiveBot:
    """One `python -m bot` process and the fake servers it talks to, for as long as a test module needs.

    `env` adds settings (RATE_LIMIT_PER_MINUTE, QUEUE_SIZE, ...) to the bot's environment, `args` to its command
    line (`--web`); the process runs in `workdir`, so no `.env` of the checkout is read, and its log goes to
    `workdir/bot.log`.
    """

    def __init__(
        self,
        model: Path,
        workdir: Path,
        *,
        telegram: bool = True,
        discord: bool = True,
        env: dict[str, str] | None = None,
        heartbeat_interval_ms: int = 41_250,
        args: Sequence[str] = (),
        guilds: int = 1,
    ) -> None:
        self.model = model
        self.workdir = workdir
        self.extra_env = env or {}
        self.args = list(args)
        self.telegram = FakeTelegram() if telegram else None
        self.discord = (
            FakeDiscord(token=DISCORD_TOKEN, heartbeat_interval_ms=heartbeat_interval_ms, guilds=guilds)
            if discord
            else None
        )
        self.log_path = workdir / "bot.log"
        self.process: subprocess.Popen | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-servers", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self._log_file = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, wait: bool = True) -> LiveBot:
        """Start the fakes, then the bot; return once it polls Telegram and is READY on Discord (or at once)."""
        return self.start_fakes().launch(wait)

    def start_fakes(self) -> LiveBot:
        """Start the fake servers only, so that a test can arm their faults before the bot is launched."""
        self._thread.start()
        self.run(self._serve(), timeout=30)
        return self

    def launch(self, wait: bool = True) -> LiveBot:
        """Start the bot against the fakes already started (`start_fakes`)."""
        self._launch()
        if wait:
            self.wait_up()
        return self

    def start_beside(self, first: LiveBot, wait: bool = True) -> LiveBot:
        """Start this bot against `first`'s fakes (one Telegram and one Discord for both, on first's loop)."""
        self.telegram, self.discord = first.telegram, first.discord
        self._loop, self._thread = first._loop, first._thread
        self._launch()
        if wait:
            self.wait_up()
        return self

    def wait_up(self) -> None:
        """Until the bot polls Telegram and is READY on Discord (its own shards, where it runs some)."""
        self.run(self._until_up(), timeout=START_TIMEOUT + 10)

    def _launch(self, append: bool = False) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab" if append else "wb")  # noqa: SIM115 - open for the process's life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", *self.args],
            cwd=self.workdir,
            env=self.environment(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def relaunch(self, env: dict[str, str] | None = None) -> LiveBot:
        """Restart the bot (SIGTERM, then a new process against the same fakes), with `env` changed in its settings;
        return once the new process polls Telegram. Its log is appended to the same file."""
        assert self.telegram is not None and self.discord is None, "relaunch waits for Telegram polling only"
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        if self._log_file is not None:
            self._log_file.close()
        self.extra_env.update(env or {})
        telegram, seen = self.telegram, self.call(lambda: len(self.telegram.calls))

        def polling() -> bool:
            return any(c.method == "getUpdates" for c in telegram.calls[seen:])

        self._launch(append=True)
        self.run(
            self.eventually(polling, START_TIMEOUT, "the restarted bot to poll Telegram"), timeout=START_TIMEOUT + 10
        )
        return self

    def stop_beside(self) -> None:
        """Stop this bot's process only: the fakes belong to the first."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        if self._log_file is not None:
            self._log_file.close()

    def environment(self) -> dict[str, str]:
        """The bot's whole configuration: where the model is, where "Telegram" and "Discord" are, and tokens."""
        # Every setting pinned, to empty (its default) unless the test says otherwise: the developer's own
        # (a real token, a web port, a rate limit) must not leak in, from the environment or from a `.env`
        # above the work folder (python-dotenv looks in every parent; the environment wins over it).
        env = {**os.environ, **dict.fromkeys(BOT_SETTINGS, "")}
        env.update({"PYTHONPATH": str(ROOT), "MODEL_PATH": str(self.model), "PYTHONUNBUFFERED": "1"})
        if self.telegram is not None:
            env.update(
                TELEGRAM_TOKEN=self.telegram.token,
                TELEGRAM_BASE_URL=self.telegram.base_url,
                TELEGRAM_BASE_FILE_URL=self.telegram.base_file_url,
            )
        if self.discord is not None:
            env.update(
                DISCORD_TOKEN=DISCORD_TOKEN,
                DISCORD_API_BASE=self.discord.api_base,
                DISCORD_GATEWAY_URL=self.discord.gateway_url,
            )
        env.update(self.extra_env)
        return env

    def close(self) -> int | None:
        """Stop the bot (SIGTERM, then SIGKILL if it hangs) and the fakes; the bot's exit status."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(10)
        if self._log_file is not None:
            self._log_file.close()
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.run(self._stack.aclose(), timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        return code

    def __enter__(self) -> LiveBot:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for tests ----------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        """Run `coroutine` on the fakes' event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Call `function` on the fakes' loop (their state is only touched there)."""

        async def call() -> T:
            return function()

        return self.run(call(), timeout=30)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.log.splitlines() if re.search(pattern, line)]

    def memory_kb(self) -> dict[str, int]:
        assert self.process is not None
        return memory_kb(self.process.pid)

    def web_url(self) -> str:
        """Where the web page is (run with WEB_PORT), once the bot says so in its log."""
        pattern = r"web page at (http://\S+/)"
        self.run(self.eventually(lambda: self.log_lines(pattern), START_TIMEOUT, "the web page"))
        return re.search(pattern, self.log_lines(pattern)[0]).group(1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop_and_wait(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        """Send `sig` to the bot and wait (without blocking the fakes) until it exits; its exit status."""
        assert self.process is not None
        self.process.send_signal(sig)
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not exit within {timeout}s of signal {sig}")
            await asyncio.sleep(0.1)
        return code

    async def eventually(
        self, condition: Callable[[], bool], timeout: float = REPLY_TIMEOUT, what: str = "", interval: float = 0.05
    ) -> None:
        """Until `condition()` holds (checked every `interval` s); fails at once if the bot process dies meanwhile."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.alive():
                raise AssertionError(
                    f"the bot exited ({self.process.returncode}) waiting for {what}:\n{self.log[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {what}; the bot's log ends:\n{self.log[-3000:]}")
            await asyncio.sleep(interval)

    async def quiet(self, seconds: float = 1.5) -> None:
        """Let a reply that should not come have the time to come (a negative check needs one)."""
        await asyncio.sleep(seconds)

    # -- inside -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        if self.telegram is not None:
            await self._stack.enter_async_context(self.telegram)
        if self.discord is not None:
            await self._stack.enter_async_context(self.discord)

    async def _until_up(self) -> None:
        telegram, discord = self.telegram, self.discord

        # A process that runs some of the shards is up once those are connected; the others are another's.
        shards = [int(i) for i in self.extra_env.get("DISCORD_SHARD_IDS", "").split(",") if i]

        def up() -> bool:
            polling = telegram is None or bool(telegram.called("getUpdates"))
            ready = discord is None or (discord.shards_connected(shards) if shards else discord.is_ready)
            return polling and ready

        await self.eventually(up, START_TIMEOUT, "the bot to poll Telegram and be READY on Discord")
