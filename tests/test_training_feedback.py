"""Retraining from reviewed faces: `python -m training` reads the approved faces of a real feedback store.

Three training runs in all (each costs): one with the reviewed faces, whose summary and export.json
several tests read; one that learns nothing, which the gate must turn down on the same validation
faces; one with --no-feedback over an old model file that does not load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feedback.keys import feedback_key
from feedback.store import NEITHER, FaceSample, FeedbackStore, ModelSaid, Vote
from model.decode import decode_image
from model.faces import FaceFinder
from testkit.imagery import CLASSES, jpeg, photo_folder, varied_photo, varied_stranger
from testkit.processes import run_python
from training.cli import main as training_main
from training.reviewed import read_approved

# Generated photos all come from one astronaut photo: the default near-duplicate distance would keep few.
FAST = ["--dedupe-distance", "0.02", "--epochs", "3"]
EILEEN, TWIN = CLASSES


@dataclass
class Trained:
    """The first run: its folder, store, model, summary, metadata and the ids of each kind of face."""

    root: Path
    store: FeedbackStore
    out: Path
    summary: str
    metadata: dict
    approved: dict[str, list[int]]  # class -> approved face ids (a relabelled one under its new class)


def chip_jpeg(finder: FaceFinder, photo) -> bytes:
    """The photo's surest face as the bot keeps it at a press: the aligned chip, a small JPEG."""
    faces = finder.find(decode_image(jpeg(photo))).faces
    return jpeg(Image.fromarray(max(faces, key=lambda f: f.score).chip))


class Presses:
    """Users pressing buttons under the bot's answers: one new face per press."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store, self.n = store, 0

    def press(self, chip: bytes, verdict: str, user: str = "u1") -> int:
        self.n += 1
        said = ModelSaid(label=EILEEN, confidence=0.6, distance=0.3, known=True, model=None)
        vote = Vote(f"telegram:1:{self.n}:1", verdict, "telegram", "private", user)
        self.store.record(vote, FaceSample(chip, None, said))
        return max(item.id for item in self.store.items(None))


def review_files(work: Path) -> dict[str, set[int]]:
    """Class -> ids of the reviewed chips in the run's chips folder."""
    found: dict[str, set[int]] = {}
    for path in (work / "chips").glob("*/review-*.jpg"):
        found.setdefault(path.parent.name, set()).add(int(path.stem.removeprefix("review-")))
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, finder: FaceFinder) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("feedback")
    photo_folder(root / "photos", per_class=12, seed=3)
    url = f"sqlite:///{root / 'data' / 'feedback.sqlite3'}"  # where the default FEEDBACK_DB points, from `root`
    store = FeedbackStore(url, feedback_key(None, url))
    users = Presses(store)
    rng = np.random.default_rng(11)  # other photos than the gathered ones
    approved: dict[str, list[int]] = {EILEEN: [], TWIN: []}
    for name, twin in ((EILEEN, False), (TWIN, True)):
        for _ in range(6):
            approved[name].append(users.press(chip_jpeg(finder, varied_photo(rng, twin)), name))
    store.approve_agreed(1)
    # A user called the twin Eileen; the owner put it right.
    relabelled = users.press(chip_jpeg(finder, varied_photo(rng, True)), EILEEN)
    assert store.relabel(relabelled, TWIN)
    approved[TWIN].append(relabelled)
    neither = [users.press(chip_jpeg(finder, varied_stranger(rng)), NEITHER) for _ in range(2)]
    store.approve([*neither, users.press(chip_jpeg(finder, varied_photo(rng)), "Bob")])
    store.reject([users.press(chip_jpeg(finder, varied_photo(rng, True)), EILEEN)])
    users.press(chip_jpeg(finder, varied_photo(rng)), EILEEN)  # still waiting for review
    out = root / "model" / "export.pkl"
    args = ["-m", "training", "--from-folder", "photos", "--work", "work", "--out", str(out), *FAST]
    done = run_python(*args, cwd=root, drop=("FEEDBACK_DB", "FEEDBACK_KEY"))
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads(out.with_suffix(".json").read_text())
    yield Trained(root, store, out, done.stdout, metadata, approved)
    store.close()


def test_approved_faces_are_trained_on_and_counted(trained: Trained) -> None:
    # Exactly the approved faces of the trained classes: never the rejected, the waiting, the strangers, "Bob".
    assert review_files(trained.root / "work") == {name: set(ids) for name, ids in trained.approved.items()}
    chips = trained.root / "work" / "chips"
    assert sorted(p.name for p in chips.iterdir()) == sorted(CLASSES)
    assert len(list(chips.rglob("review-*"))) == 13

    reviewed, meta = trained.metadata["reviewed"], trained.metadata
    assert meta["classes"] == list(CLASSES)
    assert reviewed["per_class"] == {EILEEN: 6, TWIN: 7} and reviewed["skipped"] == {"Bob": 1}
    assert reviewed["n_train"] + reviewed["n_valid"] == 13 and reviewed["n_valid"] >= 1
    assert meta["n_train"] + meta["n_valid"] == sum(meta["cleaning"]["kept"].values()) + 13
    summary = trained.summary
    assert f"13 approved faces added ({EILEEN} 6, {TWIN} 7)" in summary, summary
    assert "skipped 1 labelled with a class this run does not train (Bob 1)" in summary
    line = next(line for line in summary.splitlines() if line.startswith("Reviewed faces:"))
    right = round(reviewed["valid_accuracy"] * reviewed["n_valid"])
    assert (
        f"{reviewed['n_train']} trained on, {reviewed['n_valid']} validated: {right} of {reviewed['n_valid']}" in line
    )
    assert reviewed["valid_accuracy"] >= 0.8 and reviewed["gathered_valid_accuracy"] >= 0.8


def test_neither_faces_are_known_strangers_the_model_turns_away(trained: Trained) -> None:
    assert trained.metadata["known_strangers"] == {"n": 2, "turned_away": 2}
    assert "Known strangers: 2 of 2 turned away" in trained.summary


def test_the_gate_keeps_the_better_old_model_on_the_same_validation_faces(
    trained: Trained, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(trained.root)
    for name in ("FEEDBACK_DB", "FEEDBACK_KEY"):
        monkeypatch.delenv(name, raising=False)
    # The owner changed their mind about one face since: it must leave the chips folder.
    gone = trained.approved[EILEEN][0]
    trained.store.reject([gone])
    stamp, before = trained.out.stat().st_mtime_ns, trained.out.with_suffix(".json").read_text()
    args = ["--from-folder", "photos", "--work", "work", "--out", str(trained.out), *FAST]
    assert training_main([*args, "--epochs", "1", "--lr", "1e-7"]) == 0  # a run that learns nothing
    summary = capsys.readouterr().out
    kept = re.search(
        r"Kept the existing model .*: it names (\d+) of this run's (\d+) validation faces right \((\d+) of", summary
    )
    assert kept, summary
    old, n, from_review = map(int, kept.groups())
    assert re.search(rf"validated on {n}\b", summary)
    reviewed = re.search(r"Reviewed faces: (\d+) trained on, (\d+) validated: (\d+) of", summary)
    assert int(reviewed[2]) == from_review >= 1
    new = re.search(r"this run's model (\d+)\.", summary)
    assert old > int(new[1])
    assert trained.out.stat().st_mtime_ns == stamp and trained.out.with_suffix(".json").read_text() == before
    assert gone not in review_files(trained.root / "work")[EILEEN]
    assert sum(map(len, review_files(trained.root / "work").values())) == 12


def test_no_feedback_leaves_them_out_and_an_unloadable_old_model_is_replaced(
    trained: Trained, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(trained.root)
    monkeypatch.delenv("FEEDBACK_DB", raising=False)
    other = trained.root / "other" / "export.pkl"
    other.parent.mkdir()
    other.write_bytes(b"not a model")
    args = ["--from-folder", "photos", "--work", "work", "--out", str(other), *FAST, "--epochs", "1"]
    assert training_main([*args, "--no-feedback"]) == 0
    summary = capsys.readouterr().out
    assert "From review: none (--no-feedback)" in summary
    assert review_files(trained.root / "work") == {}
    metadata = json.loads(other.with_suffix(".json").read_text())
    assert metadata["reviewed"]["used"] is False and metadata["reviewed"]["per_class"] == {}
    assert metadata["n_train"] + metadata["n_valid"] == sum(metadata["cleaning"]["kept"].values())
    assert metadata["known_strangers"] == {"n": 0, "turned_away": None}
    assert re.search(r"Model: Wrote .*replaced the previous model, which could not be loaded", summary), summary


def test_a_missing_database_is_no_reviewed_faces_and_is_not_created(tmp_path: Path) -> None:
    database = tmp_path / "nowhere" / "feedback.sqlite3"
    faces, source = read_approved({"FEEDBACK_DB": f"sqlite:///{database}"})
    assert faces is None and str(database) in source
    assert not (tmp_path / "nowhere").exists()


def test_an_unreadable_database_stops_the_run_before_cleaning(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "broken.sqlite3").write_bytes(b"this is no SQLite database" * 100)
    monkeypatch.setenv("FEEDBACK_DB", f"sqlite:///{tmp_path / 'broken.sqlite3'}")
    (tmp_path / "photos" / EILEEN).mkdir(parents=True)
    args = ["--from-folder", str(tmp_path / "photos"), "--work", str(tmp_path / "work")]
    assert training_main([*args, "--out", str(tmp_path / "m.pkl")]) == 2
    err = capsys.readouterr().err
    assert "feedback database" in err and "--no-feedback" in err
    assert not (tmp_path / "work").exists()
