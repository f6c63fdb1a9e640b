"""Every setting is declared, documented and reaches what it configures; a bot started by the end-to-end tests
sees only the settings its test gives it, never a developer's own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path

import pytest

from bot.app import serve
from bot.settings import NAMES, RANGES, Settings, load_settings
from testkit.e2e import LiveBot
from testkit.processes import ROOT, run_python

# Read by the face encoder from the process environment, not a setting of the bot's: the end-to-end bots share
# the test session's cache, which the session fills.
NOT_A_BOT_SETTING = {"DOPPELBOT_CACHE"}


class Reading(dict):
    """An environment that notes each name read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, name: str, default: str | None = None) -> str | None:
        self.read.add(name)
        return super().get(name, default)


def test_the_declared_names_are_the_settings_read_and_dotenv_example_documents_each() -> None:
    reading = Reading()
    load_settings(reading)
    assert reading.read == NAMES
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {m.group(1) for line in lines if (m := re.match(r"^#?\s*([A-Z_]+)=", line))}
    assert documented == NAMES | NOT_A_BOT_SETTING


def developer_value(name: str) -> str:
    """A value a developer might have for `name`, allowed and unlike its default."""
    return str(RANGES[name].high) if name in RANGES else "developer.example"


def test_an_end_to_end_bot_sees_none_of_a_developers_settings(tmp_path: Path, monkeypatch) -> None:
    # Every setting set by the developer, in the environment and in a .env above the bot's work folder (python-dotenv
    # looks in every parent folder): MAX_FACES_LISTED, say, reached the bots of the end-to-end tests.
    (tmp_path / ".env").write_text("".join(f"{name}={developer_value(name)}\n" for name in sorted(NAMES)))
    for name in NAMES:
        monkeypatch.setenv(name, developer_value(name))
    workdir = tmp_path / "bot"
    workdir.mkdir()
    model = tmp_path / "model" / "export.pkl"
    bot = LiveBot(model, workdir, telegram=False, discord=False, env={"WEB_PORT": "0"})
    # What `python -m bot` would load, in its work folder, with the environment the bot is started with.
    # As JSON: fastai, imported by this test session, changes how paths print.
    loaded = "import dataclasses, json; from bot.settings import load_settings as load"
    loaded += "; print(json.dumps(dataclasses.asdict(load()), default=str))"
    done = run_python("-c", loaded, cwd=workdir, env=bot.environment())
    assert done.returncode == 0, done.stderr
    expected = Settings(model_path=model, web_port=0)
    assert json.loads(done.stdout) == json.loads(json.dumps(dataclasses.asdict(expected), default=str))


def test_photo_timeout_seconds_and_face_detector_reach_the_face_finding_processes(tmp_path: Path, monkeypatch) -> None:
    import model.search

    made: list[tuple[model.search.FacePool, str]] = []

    class Noted(model.search.FacePool):
        """The pool the bot makes, noted with the detector its processes would start with; none is started, so the
        bot finds faces itself."""

        def start(self, options=None) -> bool:
            made.append((self, options.detector))
            return False

    monkeypatch.setattr(model.search, "FacePool", Noted)
    # The web page runs without a model and stops at once: enough for the bot to make its pool.
    env = {"PHOTO_TIMEOUT_SECONDS": "7.5", "FACE_WORKERS": "1", "WEB_PORT": "0", "MODEL_PATH": str(tmp_path / "none")}
    stop = asyncio.Event()
    stop.set()
    assert asyncio.run(serve(load_settings(env), stop)) == 0
    assert asyncio.run(serve(load_settings({**env, "FACE_DETECTOR": "cnn"}), stop)) == 0
    assert [(pool.workers, pool.photo_timeout, detector) for pool, detector in made] == [
        (1, 7.5, "hog"),
        (1, 7.5, "cnn"),
    ]


@pytest.mark.parametrize("value", ["http://photos.lan", "photos.lan:99999"])
def test_python_m_bot_stops_at_an_allowed_host_that_is_not_a_host(value: str, tmp_path: Path) -> None:
    done = run_python("-m", "bot", "--web", cwd=tmp_path, env={"WEB_ALLOWED_HOSTS": f"localhost,{value}"}, drop=NAMES)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Bad setting: WEB_ALLOWED_HOSTS=") and f"{value!r} is not a host name or address" in line
