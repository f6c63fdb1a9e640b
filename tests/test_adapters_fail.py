"""One adapter's failure stays that adapter's, in the real `python -m bot`: a Discord that refuses the token leaves
Telegram answering and `/readyz` naming Discord; a Discord failing at login, or out of session starts for the day,
is connected again once it recovers; Telegram refusing the token (401, or 404 for a wrong base URL) is said in
plain words, and no line of the process's output holds the token; a process left with no adapter exits 1.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.adapters import TELEGRAM_REFUSED
from testkit.e2e import START_TIMEOUT, LiveBot, discord_replies_to, model_folder, telegram_replies_to, telegram_text
from testkit.imagery import jpeg, scene

REFUSED_DISCORD_TOKEN = "refused-discord-token.never-logged"
# No face-finding processes: these tests are about the adapters, and the machine has two cores.
QUIET = {"FACE_WORKERS": "0"}
EILEEN = re.compile(r"Eileen, (9\d|100)% sure")


def readyz(url: str) -> tuple[int, dict]:
    """`GET /readyz` as a script on this machine asks it (its Host: 127.0.0.1:port)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "readyz", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def exit_status(live: LiveBot, timeout: float = START_TIMEOUT) -> int:
    assert live.process is not None
    return live.process.wait(timeout)


def test_discord_refusing_the_token_leaves_telegram_answering_and_readyz_names_discord(
    exported: Path, tmp_path: Path
) -> None:
    env = {**QUIET, "DISCORD_TOKEN": REFUSED_DISCORD_TOKEN, "WEB_PORT": "0"}
    live = LiveBot(model_folder(exported, tmp_path / "model"), tmp_path, env=env, args=["--web"])
    try:
        live.start(wait=False)
        live.run(live.eventually(lambda: live.log_lines("discord failed: Discord refused the token"), START_TIMEOUT))
        live.run(live.eventually(lambda: live.telegram.called("getUpdates"), START_TIMEOUT, "Telegram polling"))
        photo = live.call(lambda: live.telegram.push_private_photo(jpeg(scene(1))))
        live.run(live.eventually(lambda: telegram_replies_to(live.telegram, photo), what="the answer"))
        (answer,) = telegram_replies_to(live.telegram, photo)
        assert EILEEN.match(telegram_text(answer)), telegram_text(answer)
        status, body = readyz(live.web_url())
        assert status == 503 and not body["ready"]
        assert [reason for reason in body["reasons"] if reason.startswith("discord:")] == [
            "discord: Discord refused the token (401: check DISCORD_TOKEN and DISCORD_API_BASE) (not retried)"
        ], body
        assert not any(reason.startswith("telegram") for reason in body["reasons"]), body
        assert live.alive()
    finally:
        code = live.close()
    assert code == 0, live.log[-3000:]  # stopped by SIGTERM, as asked, with Telegram still running
    assert REFUSED_DISCORD_TOKEN not in live.log and live.telegram.token not in live.log


def test_discord_failing_at_login_and_out_of_session_starts_connects_once_it_recovers(
    exported: Path, tmp_path: Path
) -> None:
    live = LiveBot(model_folder(exported, tmp_path / "model"), tmp_path, telegram=False, env=QUIET)
    try:
        live.start_fakes()
        fake = live.discord

        def arm() -> None:
            fake.fail_next("me", 503)  # the login: discord.py does not retry a 503 itself
            fake.session_starts_left, fake.session_reset_after_ms = 0, 3_000  # none left, for 3 s more

        live.call(arm)
        live.launch(wait=False)
        live.run(live.eventually(lambda: fake.is_ready, START_TIMEOUT, "Discord READY after the retries"))
        message = live.run(fake.send_message(fake.user(), attachments=[fake.attachment(jpeg(scene(1)))]))
        live.run(live.eventually(lambda: discord_replies_to(fake, message), what="the answer"))
        assert EILEEN.match(discord_replies_to(fake, message)[0].content or "")
    finally:
        code = live.close()
    assert code == 0, live.log[-3000:]
    failures = live.log_lines(r"discord failed: ")
    assert "Discord is failing (503); retrying in 2 s" in failures[0], failures
    # The wait Discord names (about 3 s from the second try), and a second more: not the backoff's 4 s.
    assert re.search(r"session starts for today are used up; retrying in [34] s", failures[1]), failures
    assert len(failures) == 2, failures
    assert len(fake.identifies) == 1  # no session start was spent on the failed tries


def test_with_discord_refused_and_no_other_adapter_the_process_exits_1(exported: Path, tmp_path: Path) -> None:
    env = {**QUIET, "DISCORD_TOKEN": REFUSED_DISCORD_TOKEN}
    live = LiveBot(model_folder(exported, tmp_path / "model"), tmp_path, telegram=False, env=env)
    try:
        live.start(wait=False)
        code = exit_status(live)
    finally:
        live.close()
    assert code == 1, live.log[-3000:]
    assert live.log_lines("no adapter is left running")
    assert REFUSED_DISCORD_TOKEN not in live.log


@pytest.mark.parametrize("status", [401, 404])
def test_telegram_refusing_the_token_says_so_and_never_shows_it(status: int, exported: Path, tmp_path: Path) -> None:
    """PTB's InvalidToken names the token, for a 404 (a wrong TELEGRAM_BASE_URL) as for a 401."""
    live = LiveBot(model_folder(exported, tmp_path / "model"), tmp_path, discord=False, env=QUIET)
    try:
        live.start_fakes()
        description = "Unauthorized" if status == 401 else "Not Found"
        live.call(lambda: live.telegram.fail_next("getMe", status, description))
        live.launch(wait=False)
        code = exit_status(live)
    finally:
        live.close()
    log = live.log  # the process's stdout and stderr together
    assert code == 1, log[-3000:]
    assert f"telegram failed: {TELEGRAM_REFUSED}" in log
    token = live.telegram.token
    assert token not in log and token.split(":")[1] not in log, log[-3000:]
