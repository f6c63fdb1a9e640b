"""`python -m bot` as a user starts it: what it says when something is missing, and its settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings
from testkit.processes import run_python

SETTING_NAMES = ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "MODEL_PATH")


def run_bot(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return run_python("-m", "bot", cwd=cwd, env=env, drop=SETTING_NAMES)


def test_without_token_or_model_it_says_what_is_missing(tmp_path: Path) -> None:
    done = run_bot(tmp_path, MODEL_PATH=str(tmp_path / "none.pkl"))
    assert done.returncode == 2
    assert "TELEGRAM_TOKEN" in done.stderr and "DISCORD_TOKEN" in done.stderr and ".env" in done.stderr
    assert "python -m training" in done.stderr


def test_a_token_in_dotenv_is_read_and_never_printed(tmp_path: Path) -> None:
    secret = "123456:SECRET-token-value"
    (tmp_path / ".env").write_text(f"TELEGRAM_TOKEN={secret}\nMODEL_PATH={tmp_path / 'none.pkl'}\n")
    done = run_bot(tmp_path)
    assert done.returncode == 2
    assert "No chat token" not in done.stderr and "No model" in done.stderr
    assert secret not in done.stderr + done.stdout


def test_settings_from_the_environment_win_over_dotenv(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".env").write_text("RATE_LIMIT_PER_MINUTE=3\nMAX_PHOTO_MB=5\nDISCORD_TOKEN=abc\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "7")
    monkeypatch.delenv("MAX_PHOTO_MB", raising=False)
    settings = load_settings()
    assert settings.rate_limit == 7 and settings.max_bytes == 5 * 1024 * 1024
    assert settings.discord_token == "abc" and "abc" not in repr(settings)
    with pytest.raises(SettingsError, match="QUEUE_SIZE"):
        load_settings({"QUEUE_SIZE": "many"})


@pytest.mark.parametrize("damage", ["not a model", "half of one"])
def test_a_corrupt_model_at_start_is_one_line_saying_what_to_do_and_exit_2(
    damage: str, exported: Path, tmp_path: Path
) -> None:
    model = tmp_path / "export.pkl"
    good = exported.read_bytes()
    model.write_bytes(b"not a model" if damage == "not a model" else good[: len(good) // 2])
    # A token, so that start-up gets as far as loading the model; the default face-finding processes
    # for the garbage file, so they are seen to be stopped too (the process would not exit otherwise).
    workers = {"FACE_WORKERS": "0"} if damage == "half of one" else {}
    done = run_bot(tmp_path, MODEL_PATH=str(model), TELEGRAM_TOKEN="123:abc", **workers)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if str(model) in line]
    assert line.startswith(f"The model at {model} could not be loaded") and "python -m training" in line


def test_a_frontend_reads_the_services_model_description_again_as_it_changes() -> None:
    """With CLASSIFIER_URL, `/about` describes the model the service answers with now, not at start."""
    import asyncio

    from aiohttp import web

    from bot.app import _remote

    described = {"classes": ["Eileen", "Twin"], "accuracy": 0.95}

    async def about(request: web.Request) -> web.Response:
        return web.json_response(described)

    async def scenario() -> tuple[float, float]:
        app = web.Application()
        app.router.add_get("/about", about)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        settings = load_settings({"CLASSIFIER_URL": f"http://127.0.0.1:{port}", "MODEL_RELOAD_SECONDS": "0.1"})
        worker, watching, close, _ = await _remote(settings)
        first = worker.classifier.model_info.accuracy
        described["accuracy"] = 0.99  # the service moved to a new model
        task = asyncio.create_task(watching)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if worker.classifier.model_info.accuracy == 0.99:
                break
        task.cancel()
        await close()
        await runner.cleanup()
        return first, worker.classifier.model_info.accuracy

    assert asyncio.run(scenario()) == (0.95, 0.99)


def test_no_log_line_shows_a_secret_whoever_logs_it_and_however() -> None:
    """The filter `python -m bot` puts on its log handlers: a secret in a message, in its arguments, in a
    traceback (PTB's InvalidToken names the token) or in a stack is replaced, and the rest is kept."""
    import io
    import logging

    from telegram.error import InvalidToken

    from bot.redaction import REDACTED, SecretFilter

    token, secret = "123456789:AAValidLookingToken_0123456789", "webhook-secret_42"
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter([token, secret, None, "abc"]))  # unset and too-short secrets are left alone
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET https://api.telegram.org/bot%s/getMe with %s", token, secret)
        try:
            raise InvalidToken(f"The token `{token}` was rejected by the server.")
        except InvalidToken:
            logger.exception("an adapter failed (abc)")
        logger.warning("where: %s", secret, stack_info=True)
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert token not in text and secret not in text and token.split(":")[1] not in text
    assert f"GET https://api.telegram.org/bot{REDACTED}/getMe with {REDACTED}" in text
    assert f"telegram.error.InvalidToken: The token `{REDACTED}` was rejected" in text
    assert "an adapter failed (abc)" in text and "Stack (most recent call last)" in text
