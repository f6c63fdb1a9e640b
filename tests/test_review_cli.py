"""`python -m training review`, run for real against a SQLite store filled as the bot fills it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from feedback import NEITHER, FaceSample, FeedbackStore, ModelSaid, Vote
from testkit.processes import free_port, run_python

KEY = "the owner's feedback key, 16+"
JESSICA, BRYCE = "Jessica Chastain", "Bryce Dallas Howard"


def review(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # No model beside the checkout's own decides which classes --relabel accepts: without one, the store's.
    settings = {
        "FEEDBACK_DB": "sqlite:///data/feedback.sqlite3",
        "FEEDBACK_KEY": KEY,
        "MODEL_PATH": str(folder / "no model" / "export.pkl"),
        **(env or {}),
    }
    return run_python("-m", "training", "review", *args, cwd=folder, env=settings)


def press(store: FeedbackStore, face: str, verdict: str, user: str, said: str = JESSICA) -> None:
    sample = FaceSample(b"\xff\xd8chip", None, ModelSaid(said, 0.91, 0.38, True, "2024-05-01T12:00:00+00:00"))
    store.record(Vote(face, verdict, "telegram", "group", user), None if store.has_face(face) else sample)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The bot's working folder: its store holds four faces, 1 to 4, as users marked them."""
    store = FeedbackStore(f"sqlite:///{tmp_path}/data/feedback.sqlite3", KEY.encode())
    press(store, "telegram:-100:1:1", BRYCE, "11")  # 1: the model was wrong, say two users
    press(store, "telegram:-100:1:1", BRYCE, "12")
    press(store, "telegram:-100:1:2", JESSICA, "11")  # 2: right, one user
    press(store, "telegram:-100:2:1", BRYCE, "11")  # 3: disputed
    press(store, "telegram:-100:2:1", NEITHER, "13")
    press(store, "telegram:-100:3:1", NEITHER, "12", said=BRYCE)  # 4: neither of them
    store.close()
    return tmp_path


def items(folder: Path, *args: str) -> list[dict]:
    done = review(folder, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_listing_shows_each_waiting_face_with_what_the_model_and_the_users_said(folder: Path) -> None:
    done = review(folder)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5  # a header and the four faces
    assert lines[1].split()[:3] == ["1", "waiting", "Jessica"]
    assert f"{BRYCE} 2" in lines[1] and "91%" in lines[1]
    assert f"{BRYCE} 1, neither 1" in lines[3]


def test_json_lists_the_fields_scripts_read(folder: Path) -> None:
    listed = items(folder)
    assert [item["id"] for item in listed] == [1, 2, 3, 4]
    first, _, disputed, neither = listed
    assert {k: first[k] for k in ("id", "label", "model_label", "votes", "status")} == {
        "id": 1,
        "label": BRYCE,
        "model_label": JESSICA,
        "votes": {BRYCE: 2},
        "status": "waiting",
    }
    assert disputed["votes"] == {BRYCE: 1, NEITHER: 1}
    assert (neither["label"], neither["model_label"]) == (None, BRYCE)
    assert first["platform"] == "telegram" and first["chat_kind"] == "group"


def test_approve_and_reject_move_faces_out_of_the_waiting_list(folder: Path) -> None:
    done = review(folder, "--approve", "1", "2")
    assert done.returncode == 0, done.stderr
    assert "approved 2 faces" in done.stdout
    assert review(folder, "--reject", "3").returncode == 0
    assert [item["id"] for item in items(folder)] == [4]
    everything = {item["id"]: item["status"] for item in items(folder, "--all")}
    assert everything == {1: "approved", 2: "approved", 3: "rejected", 4: "waiting"}
    again = review(folder, "--approve", "1")
    assert again.returncode == 0 and "already approved" in again.stdout


def test_relabel_approves_the_face_as_the_class_or_neither_the_owner_names(folder: Path) -> None:
    assert review(folder, "--relabel", "3", "jessica chastain").returncode == 0  # any capitals
    assert review(folder, "--relabel", "1", "neither").returncode == 0
    labels = {item["id"]: (item["status"], item["label"]) for item in items(folder, "--all")}
    assert labels[3] == ("approved", JESSICA)
    assert labels[1] == ("approved", None)

    refused = review(folder, "--relabel", "2", "Emma Stone")
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "Emma Stone" in refused.stderr
    assert {item["id"]: item["status"] for item in items(folder, "--all")}[2] == "waiting"


def test_relabel_accepts_the_classes_the_current_model_knows(folder: Path) -> None:
    model = folder / "model" / "export.pkl"
    model.parent.mkdir()
    model.with_suffix(".json").write_text(json.dumps({"classes": [JESSICA, BRYCE, "Emma Stone"]}))
    done = review(folder, "--relabel", "2", "Emma Stone", env={"MODEL_PATH": str(model)})
    assert done.returncode == 0, done.stderr
    assert items(folder, "--all")[1]["label"] == "Emma Stone"


def test_approve_agreed_approves_what_enough_users_say_and_none_disputes(folder: Path) -> None:
    done = review(folder, "--approve-agreed", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": 1")
    assert [item["id"] for item in items(folder)] == [2, 3, 4]
    assert [item["id"] for item in items(folder, "--approve-agreed", "1")] == [2, 4]  # 3 stays disputed
    assert [item["id"] for item in items(folder)] == [3]


@pytest.mark.parametrize(
    "args",
    [
        ("--approve", "99"),
        ("--reject", "2", "99"),
        ("--approve", "one"),
        ("--relabel", "99", JESSICA),
        ("--approve-agreed", "0"),
        ("--approve", "1", "--reject", "2"),
    ],
)
def test_a_bad_id_or_option_exits_2_with_one_line_and_changes_nothing(folder: Path, args: tuple[str, ...]) -> None:
    before = items(folder, "--all")
    done = review(folder, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert items(folder, "--all") == before


def test_an_unreachable_database_exits_2_with_one_line_and_no_password(tmp_path: Path) -> None:
    url = f"postgresql://bot:hunter2-secret@127.0.0.1:{free_port()}/feedback"
    done = review(tmp_path, env={"FEEDBACK_DB": url})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "unavailable" in done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


def test_postgresql_without_a_key_is_refused(tmp_path: Path) -> None:
    done = review(tmp_path, env={"FEEDBACK_DB": "postgresql://bot@127.0.0.1/feedback", "FEEDBACK_KEY": ""})
    assert done.returncode == 2 and "FEEDBACK_KEY" in done.stderr


def test_before_any_press_it_says_so_and_creates_nothing(tmp_path: Path) -> None:
    done = review(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No feedback yet" in done.stdout
    assert items(tmp_path) == []
    assert not (tmp_path / "data").exists()
