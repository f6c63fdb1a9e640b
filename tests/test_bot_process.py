"""`python -m bot` for real: one process, both adapters, talking to fake Telegram and Discord servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from testkit.fake_discord import FakeDiscord
from testkit.fake_telegram import FakeTelegram
from testkit.imagery import jpeg, scene

ROOT = Path(__file__).resolve().parent.parent
DISCORD_TOKEN = "discord-secret.for-tests"


async def start_bot(model: Path, telegram: FakeTelegram, discord: FakeDiscord) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MODEL_PATH": str(model),
        "TELEGRAM_TOKEN": telegram.token,
        "TELEGRAM_BASE_URL": telegram.base_url,
        "TELEGRAM_BASE_FILE_URL": telegram.base_file_url,
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "DISCORD_API_BASE": discord.api_base,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
        # Feedback is on by default: its database (and key file) in the test's folder, not the checkout's data/.
        "FEEDBACK_DB": f"sqlite:///{model.parent / 'feedback.sqlite3'}",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


def test_one_process_answers_telegram_and_discord_then_stops_cleanly(exported: Path, tmp_path: Path) -> None:
    model = tmp_path / "export.pkl"
    model.write_bytes(exported.read_bytes())
    model.with_suffix(".json").write_text(json.dumps({"classes": ["Eileen", "Twin"], "accuracy": 1.0}))

    async def scenario() -> tuple[int, str]:
        async with FakeTelegram() as telegram, FakeDiscord(token=DISCORD_TOKEN) as discord:
            bot = await start_bot(model, telegram, discord)
            try:
                await discord.wait_ready(timeout=90)
                photo = telegram.push_private_photo(jpeg(scene(1)))
                await telegram.wait_until(lambda: any(c.reply_to == photo["message_id"] for c in telegram.replies), 60)
                (answer,) = [c for c in telegram.replies if c.reply_to == photo["message_id"]]
                assert answer.params["text"].startswith("Eileen, ")

                message = await discord.send_message(
                    discord.user(), attachments=[discord.attachment(jpeg(scene(1, twins=(True,))))]
                )
                reply = await discord.wait_for(lambda call: call.reply_to == int(message["id"]), timeout=60)
                assert reply.content.startswith("Twin, ")

                # A photo in flight when SIGTERM arrives is still answered before the process ends.
                fetched = len(telegram.downloads)
                late = telegram.push_private_photo(jpeg(scene(2)))
                await telegram.wait_until(lambda: len(telegram.downloads) > fetched, 30)
                bot.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(bot.communicate(), 90)
            finally:
                if bot.returncode is None:
                    bot.kill()
            assert any(c.reply_to == late["message_id"] for c in telegram.replies)
            return bot.returncode, err.decode()

    code, log = asyncio.run(scenario())
    assert code == 0, log[-3000:]
    assert "request adapter=telegram chat=private faces=1 outcome=ok" in log
    assert "request adapter=discord chat=guild faces=1 outcome=ok" in log
    assert DISCORD_TOKEN not in log and FakeTelegram().token not in log
