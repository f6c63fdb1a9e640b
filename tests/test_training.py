"""The training script, end to end: photos in, a model `python -m model` loads out; plus its parts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.decode import decode_image
from model.encoder import load_face_encoder
from model.faces import FaceFinder
from testkit.fake_web import FakeWeb
from testkit.imagery import CLASSES, jpeg, noise_image, scene, varied_photo
from testkit.imagery import photo_folder as varied_folder
from testkit.processes import ROOT, run_python
from training.clean import clean_photos
from training.cli import main as training_main
from training.train import TrainingError, TrainOptions

# Every generated photo comes from one astronaut photo, so their faces are far nearer to each other
# than real photos of one person; the default near-duplicate distance would keep only a few.
GENERATED = ["--dedupe-distance", "0.02"]


def photo_folder(root: Path, per_class: int = 14, seed: int = 3) -> Path:
    """DIR/CLASS/*.jpg of whole photos, plus a broken file and a photo with no face."""
    varied_folder(root, per_class, seed)
    (root / CLASSES[0] / "broken.jpg").write_bytes(jpeg(scene(1))[:3000])
    (root / CLASSES[1] / "landscape.jpg").write_bytes(jpeg(noise_image()))
    return root


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_python("-m", module, *args, cwd=cwd)


def test_from_folder_to_a_model_that_python_m_model_loads(tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "model" / "export.pkl"
    args = ["--from-folder", str(photos), "--work", "work", "--out", str(out), *GENERATED]
    # As `python -m training > train.log` runs it: stdout a file, read back as bytes (a text pipe would
    # turn carriage returns into newlines and hide the bars' redraws).
    log = tmp_path / "train.log"
    with log.open("wb") as stdout:
        trained = subprocess.run(
            [sys.executable, "-m", "training", *args],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    assert trained.returncode == 0, trained.stderr[-3000:]
    written = log.read_bytes()
    assert b"\r" not in written  # no progress bar redrawn into the file
    summary = written.decode()
    lines = summary.splitlines()
    total = TrainOptions().epochs
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == [f"epoch {i}/{total}" for i in range(1, total + 1)], summary
    assert all("train_loss" in line and "valid_loss" in line for line in epochs)
    stages = [line for line in lines if line.startswith("finding faces")]
    assert len(stages) == 1 and re.fullmatch(r"finding faces: 30 of 30 in \d+ s", stages[0]), summary
    assert len(lines) < total + 30, summary  # the epochs, the stage and the summary: nothing else
    assert "1 unreadable" in summary and "1 no face" in summary
    assert "validation accuracy" in summary and str(out) in summary

    metadata = json.loads(out.with_suffix(".json").read_text())
    assert metadata["classes"] == list(CLASSES) and metadata["arch"] == "face"
    kept = sum(metadata["cleaning"]["kept"].values())
    assert kept >= 20 and metadata["n_valid"] + metadata["n_train"] == kept
    assert metadata["accuracy"] >= 0.8
    assert set(metadata["per_class"]) == set(CLASSES)
    # The "someone else" line is drawn from every kept face and travels in the metadata and the model.
    assert "Strangers: someone else beyond distance" in summary
    strangers = metadata["strangers"]
    assert strangers["references"] == metadata["cleaning"]["kept"]
    assert 0.4 <= strangers["stranger_distance"] < 0.7 and strangers["known"] >= 0.95
    for plot in ("confusion_matrix.png", "top_losses.png"):
        assert Image.open(tmp_path / "work" / "plots" / plot).size[0] > 100

    (tmp_path / "new.jpg").write_bytes(jpeg(scene(2, twins=(False, True))))
    answered = run_module("model", "new.jpg", "--json", "--model", str(out), cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    faces = json.loads(answered.stdout)[0]["faces"]
    assert [f["label"] for f in faces] == list(CLASSES) and all(f["known"] for f in faces)


def web_photos(web: FakeWeb, rng: np.random.Generator) -> dict[str, list[str]]:
    """Search results as the web gives them: mostly photos, some broken, some not images at all."""
    queries = {}
    for name, twin in zip(CLASSES, (False, True), strict=True):
        urls = [web.add(f"/{name}/{i}.jpg", jpeg(varied_photo(rng, twin))) for i in range(12)]
        urls.append(web.add(f"/{name}/page.html", b"<html>not a photo</html>", content_type="text/html"))
        urls.append(web.add(f"/{name}/gone.jpg", b"", status=404))
        web.search_results[f"{name} photo"] = urls[:8]
        web.search_results[f"{name} portrait"] = urls[6:]  # overlaps the first query's results
        queries[name] = [f"{name} photo", f"{name} portrait"]
    return queries


def test_gathers_from_the_web_then_trains_and_resumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with FakeWeb() as web:
        config = tmp_path / "classes.json"
        config.write_text(json.dumps(web_photos(web, rng)))
        args = ["--config", str(config), "--search-url", web.url("/search"), "--work", str(tmp_path / "work")]
        args += ["--out", str(tmp_path / "export.pkl"), "--per-query", "10", *GENERATED]
        assert training_main(args) == 0
        photos = tmp_path / "work" / "photos"
        assert sorted(p.name for p in photos.iterdir()) == sorted(CLASSES)
        assert all(len(list((photos / c).glob("*.jpg"))) == 12 for c in CLASSES)
        metadata = json.loads((tmp_path / "export.json").read_text())
        assert metadata["n_train"] + metadata["n_valid"] == sum(metadata["cleaning"]["kept"].values()) >= 18

        fetched = sum(web.hits.values())
        assert training_main([*args, "--force"]) == 0
        assert sum(web.hits.values()) - fetched == 4  # only the two searches per class run again


def test_a_better_model_on_the_same_data_is_kept_unless_forced(tmp_path: Path, capsys) -> None:
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "export.pkl"
    common = ["--from-folder", str(photos), "--work", str(tmp_path / "work"), "--out", str(out), *GENERATED]
    assert training_main(common) == 0
    good = json.loads(out.with_suffix(".json").read_text())
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()

    # A run that learns nothing: its accuracy is lower on the very same faces and split.
    assert training_main([*common, "--epochs", "1", "--lr", "1e-7"]) == 0
    assert "Kept the existing model" in capsys.readouterr().out
    assert out.stat().st_mtime_ns == stamp
    assert json.loads(out.with_suffix(".json").read_text()) == good

    assert training_main([*common, "--epochs", "1", "--lr", "1e-7", "--force"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["accuracy"] < good["accuracy"]
    assert not list(tmp_path.glob(".export*partial"))


def test_resnet18_without_internet_says_how_to_go_on(tmp_path: Path, monkeypatch, capsys) -> None:
    photos = photo_folder(tmp_path / "photos", per_class=8)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached ImageNet weights
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # a closed port: the download fails here, at once
    common = ["--from-folder", str(photos), "--work", str(tmp_path / "work"), *GENERATED]
    out = tmp_path / "resnet.pkl"
    assert training_main([*common, "--arch", "resnet18", "--out", str(out)]) == 2
    assert "--no-pretrained" in capsys.readouterr().err
    assert not out.exists()

    assert training_main([*common, "--arch", "resnet18", "--no-pretrained", "--epochs", "1", "--out", str(out)]) == 0
    from model.serving import FaceClassifier

    answer = FaceClassifier.load(out).classify(jpeg(scene(1)))
    assert answer.outcome == "ok" and answer.faces[0].label in CLASSES


def test_cleaning_drops_duplicates_crowds_and_faces_filed_twice(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    source = tmp_path / "photos"
    for name in CLASSES:
        (source / name).mkdir(parents=True)
    original = varied_photo(rng)
    (source / CLASSES[0] / "a.jpg").write_bytes(jpeg(original))
    smaller = original.resize((original.width * 3 // 4, original.height * 3 // 4))
    (source / CLASSES[0] / "a-small.jpg").write_bytes(jpeg(smaller, quality=70))  # the same photo again
    (source / CLASSES[0] / "crowd.jpg").write_bytes(jpeg(scene(3)))  # three equal faces: whose name?
    twin = varied_photo(rng, twin=True)
    (source / CLASSES[1] / "b.jpg").write_bytes(jpeg(twin))
    (source / CLASSES[1] / "also-in-eileen.jpg").write_bytes(jpeg(twin))
    (source / CLASSES[0] / "filed-twice.jpg").write_bytes(jpeg(twin))

    report = clean_photos(source, tmp_path / "chips", FaceFinder(), load_face_encoder().eval())
    assert report.dropped["near-duplicate"] == 1
    assert report.dropped["several faces, none clearly the subject"] == 1
    assert report.dropped["same face in two classes"] == 3
    assert report.kept == {CLASSES[0]: 1, CLASSES[1]: 0}
    (chip,) = (tmp_path / "chips" / CLASSES[0]).glob("*.png")
    faces = FaceFinder().find(decode_image(jpeg(smaller, quality=70))).faces  # the first of the two copies
    expected = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    assert np.array_equal(np.asarray(Image.open(chip)), expected.chip)


def test_one_class_is_not_enough(tmp_path: Path) -> None:
    from training.train import TrainOptions, chip_dataloaders

    (tmp_path / "Only").mkdir()
    for i in range(10):
        Image.fromarray(np.full((150, 150, 3), i * 20, np.uint8)).save(tmp_path / "Only" / f"{i}.png")
    with pytest.raises(TrainingError, match="two classes"):
        chip_dataloaders(tmp_path, TrainOptions())


def test_no_internet_stops_with_a_clear_message(tmp_path: Path, capsys) -> None:
    with FakeWeb() as web:
        args = ["--search-url", web.url("/no-such-search"), "--work", str(tmp_path), "--out", str(tmp_path / "m.pkl")]
        assert training_main(args) == 2
    err = capsys.readouterr().err
    assert "No photos of Jessica Chastain" in err and "HTTP 404" in err
