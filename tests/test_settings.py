"""Every numeric setting has one declared range: `python -m bot` refuses a value outside it at start."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from bot.settings import RANGES, Settings, SettingsError, load_settings
from testkit.e2e import BOT_SETTINGS, LiveBot
from testkit.processes import ROOT, run_python

# A developer's own settings must not decide what these runs see: every name the bot reads.
DEVELOPER_SETTINGS = sorted(BOT_SETTINGS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_PER_MINUTE", "0"),  # made every photo "something went wrong"
        ("QUEUE_SIZE", "0"),  # made the queue unbounded
        ("MODEL_RELOAD_SECONDS", "0"),  # spun a core
        ("BATCH_WINDOW_MS", "inf"),  # killed the inference thread
        ("BATCH_WINDOW_MS", "nan"),
        ("CONFIDENCE_THRESHOLD", "1.5"),
        ("STRANGER_DISTANCE", "0"),
        ("STRANGER_DISTANCE", "inf"),
        ("MAX_PHOTO_MB", "0"),
        ("MAX_PHOTO_MB", "2000"),
        ("TORCH_THREADS", "0"),
        ("FACE_WORKERS", "-1"),
        ("WEB_PORT", "70000"),
        ("QUEUE_SIZE", "32.5"),
    ],
)
def test_python_m_bot_stops_at_a_value_outside_its_range_and_says_the_range(
    name: str, value: str, tmp_path: Path
) -> None:
    done = run_python("-m", "bot", cwd=tmp_path, env={name: value}, drop=DEVELOPER_SETTINGS)
    assert done.returncode == 2
    # One line, before anything else is checked or started: the setting, the value and the range.
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Bad setting: {name}={value!r} ") and f"must be {RANGES[name]} " in line, line


def test_a_typo_in_dotenv_stops_the_bot_the_same_way(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELEGRAM_TOKEN=123:abc\nRATE_LIMIT_PER_MINUTE=0\n")
    done = run_python("-m", "bot", cwd=tmp_path, drop=DEVELOPER_SETTINGS)
    assert done.returncode == 2
    assert "RATE_LIMIT_PER_MINUTE='0'" in done.stderr and "a whole number from 1 to 10000" in done.stderr


def just_outside(value: float, whole: bool, direction: float) -> str:
    """The nearest value past `value` in `direction` (+inf or -inf), as a user would write it."""
    return str(int(value + math.copysign(1, direction))) if whole else repr(math.nextafter(value, direction))


@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_range_takes_its_bounds_and_refuses_what_lies_past_them(name: str) -> None:
    spec = RANGES[name]
    default = Settings()
    high = load_settings({name: str(spec.high)})
    # The setting fills exactly one attribute, and its default lies within the range.
    (attribute,) = [f.name for f in dataclasses.fields(Settings) if getattr(high, f.name) != getattr(default, f.name)]
    assert getattr(high, attribute) == spec.high
    if getattr(default, attribute) is not None:  # unset means "the model's own" or "off"
        assert spec.holds(getattr(default, attribute))
    refused = ["nan", "inf", "-inf", "many", just_outside(spec.high, spec.whole, math.inf)]
    if spec.above_low:
        refused.append(str(spec.low))
    else:
        assert getattr(load_settings({name: str(spec.low)}), attribute) == spec.low
        refused.append(just_outside(spec.low, spec.whole, -math.inf))
    if spec.whole:
        refused.append(f"{spec.low + 1}.5")
    for value in refused:
        with pytest.raises(SettingsError, match=f"^{name}=.* must be {re.escape(str(spec))} "):
            load_settings({name: value})


def test_dotenv_example_states_each_range_above_the_setting_and_its_values_are_in_range() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    assignment = re.compile(r"^#?\s*([A-Z_]+)=")
    for name, spec in RANGES.items():
        (at,) = [i for i, line in enumerate(lines) if (m := assignment.match(line)) and m.group(1) == name]
        above = []  # the comment lines that describe this setting: up to a blank line or another setting
        for line in reversed(lines[:at]):
            if not line.startswith("#") or assignment.match(line):
                break
            above.insert(0, line.lstrip("# "))
        assert f"Range: {spec}." in " ".join(above), f".env.example does not state {name}'s range: {spec}"
    example = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    load_settings(example)


def test_face_workers_1_is_one_face_finding_process(tmp_path: Path) -> None:
    """FACE_WORKERS=1 used to mean no process at all, the same as 0."""
    env = {"WEB_PORT": "0", "FACE_WORKERS": "1"}
    # No model is needed: the page starts without one, and the face-finding processes start first.
    with LiveBot(tmp_path / "no-model.pkl", tmp_path, telegram=False, discord=False, env=env) as live:
        live.run(live.eventually(lambda: live.log_lines("web page at http://"), what="the web page"))
        assert live.log_lines("faces of photos that arrive together are found by 1 process$")
        assert len(face_finding_processes(live.process.pid)) == 1


def face_finding_processes(pid: int) -> list[int]:
    """The bot's child processes started by multiprocessing's spawn (the pool's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # The parent's pid is the second field after the command name, which may hold spaces.
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            spawned = parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):  # not a process, or one that just ended
            continue
        if spawned:
            found.append(int(entry.name))
    return found


def test_classifier_url_must_be_an_http_url() -> None:
    assert load_settings({"CLASSIFIER_URL": " http://10.0.0.5:8000/ "}).classifier_url == "http://10.0.0.5:8000"
    assert load_settings({}).classifier_url is None
    for bad in ("10.0.0.5:8000", "ftp://host/", "http://"):
        with pytest.raises(SettingsError, match=r"^CLASSIFIER_URL=.* must be the classifier service's http\(s\) URL"):
            load_settings({"CLASSIFIER_URL": bad})


def test_web_trusted_proxies_are_addresses_or_networks() -> None:
    settings = load_settings({"WEB_TRUSTED_PROXIES": " 10.0.0.0/8, fd00::1 ,192.168.1.7"})
    assert settings.web_trusted_proxies == ("10.0.0.0/8", "fd00::1", "192.168.1.7")
    assert load_settings({}).web_trusted_proxies == ()
    for bad in ("lb.example", "10.0.0.0/33", "10.0.0.1:80"):
        refused = r"^WEB_TRUSTED_PROXIES=.* is not allowed: .* \(such as 10\.0\.0\.0/8\)"
        with pytest.raises(SettingsError, match=refused):
            load_settings({"WEB_TRUSTED_PROXIES": bad})


def test_feedback_settings_say_what_is_allowed_and_never_echo_a_secret() -> None:
    settings = load_settings({})
    assert (settings.feedback, settings.feedback_db, settings.feedback_keep_days) == (
        True,
        "sqlite:///data/feedback.sqlite3",
        90.0,
    )
    assert load_settings({"FEEDBACK": "off"}).feedback is False
    with pytest.raises(SettingsError, match=r"^FEEDBACK='maybe' is not allowed: FEEDBACK must be on or off"):
        load_settings({"FEEDBACK": "maybe"})
    for name, value in [
        ("FEEDBACK_DB", "mysql://root:hunter2-secret@db/bot"),
        ("FEEDBACK_KEY", "hunter2-secret"),
        ("REVIEW_TOKEN", "hunter2-secret"),
    ]:
        with pytest.raises(SettingsError) as refused:
            load_settings({name: value})
        assert str(refused.value).startswith(f"{name} is not allowed") and "hunter2" not in str(refused.value)
    url = "postgresql://bot:pw@10.0.0.9/feedback"
    assert load_settings({"FEEDBACK_DB": url}).feedback_db == url


def test_a_shared_feedback_database_without_a_key_stops_the_bot_at_start(tmp_path: Path) -> None:
    env = {"TELEGRAM_TOKEN": "123:abc", "FEEDBACK_DB": "postgresql://bot:pw@127.0.0.1:1/feedback"}
    done = run_python("-m", "bot", cwd=tmp_path, env=env, drop=DEVELOPER_SETTINGS)
    assert done.returncode == 2
    assert "set FEEDBACK_KEY" in done.stderr and "pw@" not in done.stderr
