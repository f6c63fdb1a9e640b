"""Which Telegram mode a `python -m bot` process may start in: a webhook replica needs a model as polling does,
and a process started to poll never deletes a webhook that is set (PTB's start_polling would)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from testkit.e2e import BOT_SETTINGS
from testkit.fake_telegram import FakeTelegram
from testkit.processes import ROOT, free_port, run_python

HOOK = "https://bot.example.com/telegram/hook"


def _env(**settings: str) -> dict[str, str]:
    """Every bot setting pinned (empty unless given), so that no developer's .env or environment leaks in."""
    return {**dict.fromkeys(BOT_SETTINGS, ""), **settings}


def test_a_webhook_replica_without_a_model_exits_2_as_polling_does(tmp_path: Path) -> None:
    missing = tmp_path / "no-model.pkl"
    common = {"TELEGRAM_TOKEN": "123456789:AAFakeTokenForTestsOnly_0123456789ab", "MODEL_PATH": str(missing)}
    webhook = _env(**common, TELEGRAM_WEBHOOK_URL=HOOK, TELEGRAM_WEBHOOK_SECRET="s3cret", WEB_PORT=str(free_port()))
    polling = run_python("-m", "bot", cwd=tmp_path, env=_env(**common))
    replica = run_python("-m", "bot", cwd=tmp_path, env=webhook)
    assert polling.returncode == 2 and f"No model at {missing}" in polling.stderr, polling.stderr
    assert (replica.returncode, replica.stderr) == (2, polling.stderr)


def test_a_process_started_to_poll_leaves_the_fleets_webhook_alone_and_says_how_to_poll(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str, FakeTelegram]:
        async with FakeTelegram() as fake:
            fake.webhook = {
                "url": HOOK,
                "secret_token": "s3cret",
                "allowed_updates": ["message"],
                "max_connections": 40,
            }
            env = _env(
                TELEGRAM_TOKEN=fake.token,
                TELEGRAM_BASE_URL=fake.base_url,
                TELEGRAM_BASE_FILE_URL=fake.base_file_url,
                # No model in this process: photos would go to a classifier service (none listens; none is sent).
                CLASSIFIER_URL=f"http://127.0.0.1:{free_port()}",
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            return proc.returncode, out.decode(), fake

    code, log, fake = asyncio.run(scenario())
    assert code != 0, log  # the only adapter could not run
    assert "A webhook is set for this bot" in log and "python -m bot --delete-webhook" in log, log
    assert fake.webhook is not None and fake.webhook["url"] == HOOK  # still set: Telegram still posts to the fleet
    assert [c.method for c in fake.calls if c.method in ("deleteWebhook", "getUpdates")] == []
    assert fake.token not in log
