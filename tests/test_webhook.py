"""Telegram by webhook: real `python -m bot` replicas, the fake Bot API, a driver that delivers updates as
Telegram does (POSTs each to one replica, again on a non-2xx or a dropped connection), and Debian's
`redis-server` shared by the replicas."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from e2e import LiveBot, model_folder, telegram_replies_to
from fake_telegram import FakeTelegram
from imagery import jpeg, scene
from processes import ROOT
from redis_server import RedisServer, free_port

SECRET = "webhook_secret-42"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookBot(LiveBot):
    """A `python -m bot` replica in webhook mode: up once Telegram's app started and the web server listens."""

    def __init__(self, model: Path, workdir: Path, telegram: FakeTelegram | None, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(
            model,
            workdir,
            discord=False,
            env={
                "WEB_PORT": str(self.port),
                "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{self.port}/telegram/hook",
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "UPDATE_CLAIM_SECONDS": "2",
                "RATE_LIMIT_PER_MINUTE": "10000",
                "QUEUE_SIZE": "1000",
                **env,
            },
        )
        if telegram is not None:
            self.telegram = telegram  # replicas share one Telegram; its server is started once, by the first
        self.hook = f"http://127.0.0.1:{self.port}/telegram/hook"

    def start_beside(self, first: LiveBot) -> WebhookBot:
        """Start this replica against `first`'s fake Telegram (one Telegram for every replica, on first's loop)."""
        self.telegram, self._loop, self._thread = first.telegram, first._loop, first._thread
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - open for the process's whole life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=self.workdir,
            env=self.environment(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.run(self._until_up(), timeout=300)
        return self

    def stop_beside(self) -> None:
        """Stop this replica's process only: the fakes belong to the first replica."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        if self._log_file is not None:
            self._log_file.close()

    async def _until_up(self) -> None:
        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        for _ in range(1200):
            if await ready():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the replica did not become ready: {self.log[-3000:]}")


# Telegram opens at most this many connections to a webhook at once (setWebhook's max_connections default).
TELEGRAM_CONNECTIONS = 40


async def deliver(
    update: dict, hooks: list[str], start: int = 0, secret: str = SECRET, deadline: float = 120, slots=None
) -> int:
    """As Telegram does: POST to one replica until one answers 2xx, moving on after a failure. Returns the tries."""
    async with slots or contextlib.nullcontext():
        return await _deliver(update, hooks, start, secret, deadline)


async def _deliver(update: dict, hooks: list[str], start: int, secret: str, deadline: float) -> int:
    loop = asyncio.get_running_loop()
    ends, tries = loop.time() + deadline, 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while loop.time() < ends:
            hook = hooks[(start + tries) % len(hooks)]
            tries += 1
            try:
                async with session.post(hook, json=update, headers={HEADER: secret}) as response:
                    if 200 <= response.status < 300:
                        return tries
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"update {update['update_id']} was never accepted")


@pytest.fixture(scope="module")
def model(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(exported, tmp_path_factory.mktemp("webhook-model"))


def test_an_update_is_answered_before_its_2xx_and_a_redelivery_is_not_answered_again(model, tmp_path) -> None:
    with WebhookBot(model, tmp_path / "one", None, {}) as bot:
        fake = bot.telegram
        message = bot.call(lambda: fake.push_private_photo(jpeg(scene(1))))
        update = bot.call(lambda: fake.pushed[-1])

        async def post(secret: str) -> int:
            async with aiohttp.ClientSession() as s, s.post(bot.hook, json=update, headers={HEADER: secret}) as r:
                return r.status

        assert bot.run(post("not-the-secret")) == 403
        assert bot.call(lambda: telegram_replies_to(fake, message)) == []
        assert bot.run(post(SECRET)) == 200
        replies = bot.call(lambda: telegram_replies_to(fake, message))  # already sent when the 200 came
        assert len(replies) == 1 and (replies[0].params.get("text") or "").startswith("Eileen")
        assert bot.run(post(SECRET)) == 200  # Telegram delivering it again
        assert len(bot.call(lambda: telegram_replies_to(fake, message))) == 1
        assert bot.call(lambda: fake.called("getUpdates")) == []  # a webhook bot never polls


def test_a_replica_killed_mid_burst_leaves_every_update_answered_exactly_once(model, tmp_path) -> None:
    updates_count = 200
    with RedisServer() as redis, WebhookBot(model, tmp_path / "a", None, {"REDIS_URL": redis.url}) as first:
        second = WebhookBot(model, tmp_path / "b", None, {"REDIS_URL": redis.url}).start_beside(first)
        try:
            fake = first.telegram
            photos = [jpeg(scene(1, twins=(i % 2 == 1,))) for i in range(2)]
            messages = [first.call(lambda i=i: fake.push_private_photo(photos[i % 2])) for i in range(updates_count)]
            updates = first.call(lambda: list(fake.pushed[-updates_count:]))

            async def burst() -> None:
                hooks, slots = [first.hook, second.hook], asyncio.Semaphore(TELEGRAM_CONNECTIONS)
                pending = [asyncio.create_task(deliver(u, hooks, i, slots=slots)) for i, u in enumerate(updates)]
                while sum(1 for m in messages if telegram_replies_to(fake, m)) < updates_count // 4:
                    await asyncio.sleep(0.05)
                first.process.send_signal(signal.SIGKILL)  # mid-burst, with updates in hand
                await asyncio.gather(*pending)

            first.run(burst(), timeout=600)
            answers = collections.Counter(len(first.call(lambda m=m: telegram_replies_to(fake, m))) for m in messages)
            assert not first.alive()
            assert answers[0] == 0, answers  # no update lost: each was answered, by one replica or the other
            # Twice only for a reply sent in the instant before the kill, before the replica could record it
            # (Telegram's sendMessage cannot be made idempotent): measured 0 to 3 of 200 on 2 busy cores.
            assert answers[1] >= updates_count - 4 and set(answers) <= {1, 2}, answers
        finally:
            second.stop_beside()


def test_set_and_delete_webhook_are_deploy_steps(tmp_path: Path) -> None:
    async def scenario() -> tuple[list, dict | None, dict | None]:
        async with FakeTelegram() as fake:
            env = {
                "PYTHONPATH": str(ROOT),
                "TELEGRAM_TOKEN": fake.token,
                "TELEGRAM_BASE_URL": fake.base_url,
                "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram/hook",
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
            }
            environment = {**os.environ, **env}
            codes = []
            for flag in ("--set-webhook", "--delete-webhook"):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    flag,
                    cwd=tmp_path,
                    env=environment,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await proc.communicate()
                codes.append((proc.returncode, out.decode(), err.decode()))
                if flag == "--set-webhook":
                    after_set = dict(fake.webhook) if fake.webhook else None
            return codes, after_set, fake.webhook

    codes, after_set, after_delete = asyncio.run(scenario())
    assert [c[0] for c in codes] == [0, 0], codes
    assert after_set == {
        "url": "https://bot.example.com/telegram/hook",
        "secret_token": SECRET,
        "allowed_updates": ["message"],
    }
    assert after_delete is None
    assert all(SECRET not in out + err for _, out, err in codes)  # the secret is never printed
    assert json.dumps(codes).count("123456789:AAFake") == 0  # nor the token
