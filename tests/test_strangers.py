"""Someone else: a face that is neither person is answered as a stranger, with the closest class named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.core import describe
from model.serving import FaceClassifier
from model.strangers import MAX_DISTANCE, MIN_DISTANCE, Gallery
from testkit.imagery import jpeg, scene, stranger
from testkit.processes import run_python


def test_the_threshold_keeps_the_chosen_share_of_own_faces_and_turns_away_far_ones() -> None:
    rng = np.random.default_rng(0)
    centres = {"A": np.zeros(128), "B": np.full(128, 0.05)}
    # Spread like photos of one person in dlib's descriptor space: neighbours about 0.45 apart.
    desc = np.concatenate([c + rng.normal(0, 0.03, (50, 128)) for c in centres.values()])
    labels = ["A"] * 50 + ["B"] * 50
    gallery = Gallery.fit(desc, labels, ["A", "B"], k=5, quantile=0.9)
    assert MIN_DISTANCE < gallery.threshold < MAX_DISTANCE
    assert gallery.rates["known"] == pytest.approx(0.9, abs=0.02)
    near = centres["A"] + rng.normal(0, 0.03, (20, 128))
    far = centres["A"] + rng.normal(0, 0.03, (20, 128)) + 0.05
    assert (gallery.distances(near, ["A"] * 20) <= gallery.threshold).mean() >= 0.8
    assert (gallery.distances(far, ["A"] * 20) > gallery.threshold).all()
    tight = Gallery.fit(desc / 10, labels, ["A", "B"])  # photos from one shoot: the floor holds the line
    assert tight.threshold == MIN_DISTANCE
    junk = np.concatenate([desc, rng.normal(0, 1.0, (3, 128))])  # three wrong "faces" far from the rest
    assert Gallery.fit(junk, [*labels, "A", "A", "A"], ["A", "B"], quantile=0.99).threshold == MAX_DISTANCE


def test_a_face_of_someone_else_is_answered_as_a_stranger(classifier) -> None:
    (known,) = classifier.classify(jpeg(scene(1))).faces
    assert known.known and known.label == "Eileen" and known.distance < classifier.stranger_distance
    (other,) = classifier.classify(jpeg(stranger())).faces
    assert not other.known and other.label in {"Eileen", "Twin"}
    assert other.distance > classifier.stranger_distance
    assert describe(classifier.classify(jpeg(stranger()))).text == (
        f"This doesn't look like either of them. Closest: {other.label}."
    )


def test_strangers_among_known_faces_are_numbered_with_the_others(classifier) -> None:
    photo = scene(3, twins=(True, False))
    photo.paste(stranger().resize((380, 445)), (876, 204))  # over the third face
    answer = classifier.classify(jpeg(photo))
    assert [(f.label, f.known) for f in answer.faces][:2] == [("Twin", True), ("Eileen", True)]
    assert answer.faces[2].known is False
    lines = describe(answer).text.splitlines()
    assert lines[0] == "I found 3 faces:"
    assert lines[3] == f"3. someone who doesn't look like either of them (closest: {answer.faces[2].label})"


def test_the_threshold_travels_with_the_export_and_a_setting_overrides_it(trained, exported) -> None:
    loaded = FaceClassifier.load(exported)
    assert loaded.stranger_distance == pytest.approx(trained.gallery.threshold)
    assert 0.3 < loaded.stranger_distance < 0.6
    lenient = FaceClassifier.load(exported, stranger_distance=5.0)
    (face,) = lenient.classify(jpeg(stranger())).faces
    assert face.known


def test_the_cli_says_someone_else_in_words_and_json(exported, tmp_path: Path) -> None:
    stranger().save(tmp_path / "hopper.jpg")
    (tmp_path / "eileen.jpg").write_bytes(jpeg(scene(1)))
    done = run_python("-m", "model", "hopper.jpg", "eileen.jpg", "--json", "--model", str(exported), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    hopper, eileen = (r["faces"][0] for r in json.loads(done.stdout))
    assert hopper["known"] is False and hopper["distance"] > eileen["distance"]
    assert eileen["known"] is True and eileen["label"] == "Eileen"
    words = run_python("-m", "model", "hopper.jpg", "--model", str(exported), cwd=tmp_path)
    assert f"1. someone else (closest: {hopper['label']})" in words.stdout
    env = run_python(
        "-m", "model", "hopper.jpg", "--json", "--model", str(exported), "--stranger-distance", "5", cwd=tmp_path
    )
    assert json.loads(env.stdout)[0]["faces"][0]["known"] is True


def test_a_model_without_a_gallery_names_every_face_as_before(trained, tmp_path: Path) -> None:
    from model.learner import export_learner

    gallery = trained.__dict__.pop("gallery")
    try:
        path = export_learner(trained, tmp_path / "plain.pkl")
    finally:
        trained.gallery = gallery
    plain = FaceClassifier.load(path)
    (face,) = plain.classify(jpeg(stranger())).faces
    assert face.known and face.distance is None and plain.stranger_distance is None
