"""`python -m model`: what a user sees in the terminal, and the JSON scripts read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from model.annotate import BOX_COLOURS
from testkit.imagery import jpeg, noise_image, scene
from testkit.processes import run_python


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_python("-m", "model", *args, cwd=cwd)


def test_json_answers_every_photo_in_order(exported, tmp_path) -> None:
    (tmp_path / "group.jpg").write_bytes(jpeg(scene(3, twins=(False, True, False))))
    (tmp_path / "nobody.jpg").write_bytes(jpeg(noise_image()))
    (tmp_path / "notes.txt").write_text("not a photo")
    args = ["group.jpg", "nobody.jpg", "notes.txt", "missing.jpg"]
    done = run_cli(*args, "--json", "--model", str(exported), cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # some photos could not be read
    results = json.loads(done.stdout)
    assert [r["path"] for r in results] == args
    assert [r["outcome"] for r in results] == ["ok", "no_face", "error", "error"]
    group = results[0]
    assert group["error"] is None
    assert [f["label"] for f in group["faces"]] == ["Eileen", "Twin", "Eileen"]
    for face in group["faces"]:
        keys = {"box", "label", "confidence", "sure", "known", "distance", "probabilities", "quality", "measures"}
        assert set(face) == keys | {"reason"}
        assert face["quality"] == "ok" and face["reason"] is None and face["measures"]["width"] > 0
        assert len(face["box"]) == 4 and face["sure"] is True and face["known"] is True
        assert 0 <= face["distance"] < 0.4
        assert set(face["probabilities"]) == {"Eileen", "Twin"}
        assert face["confidence"] == max(face["probabilities"].values())
    assert results[1]["faces"] == [] and results[1]["error"] is None and results[1]["turned_away"] == []
    assert "image" in results[2]["error"] and results[3]["error"]


def test_human_output_and_annotated_photos(exported, tmp_path) -> None:
    photo = tmp_path / "pair.jpg"
    photo.write_bytes(jpeg(scene(2, twins=(True, False))))
    done = run_cli(str(photo), "--model", str(exported), "--annotate", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{photo}: 2 faces"
    assert lines[1].strip().startswith("1. Twin") and lines[2].strip().startswith("2. Eileen")
    annotated = np.asarray(Image.open(tmp_path / "out" / "pair.annotated.jpg").convert("RGB"), dtype=int)
    green = np.abs(annotated - np.array(BOX_COLOURS[True])).sum(axis=2) < 60
    assert green[:, :640].sum() > 500 and green[:, 640:].sum() > 500  # a box on each face


def test_settings_come_from_dotenv_in_the_working_folder(exported, tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(scene(1)))
    (tmp_path / ".env").write_text(f"MODEL_PATH={exported}\nCONFIDENCE_THRESHOLD=0.99999999\n")
    done = run_cli("a.jpg", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (face,) = json.loads(done.stdout)[0]["faces"]
    assert face["label"] == "Eileen" and face["sure"] is False


def test_without_a_model_it_says_which_command_makes_one(tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(scene(1)))
    done = run_cli("a.jpg", "--model", "nowhere/export.pkl", cwd=tmp_path)
    assert done.returncode == 2
    assert "python -m training" in done.stderr


def test_a_threshold_out_of_range_is_refused_with_what_it_may_be(tmp_path) -> None:
    """A typo in .env or on the command line is named, with its range, before any model is loaded."""
    (tmp_path / "photo.jpg").write_bytes(jpeg(scene(1)))
    flag = run_python("-m", "model", "photo.jpg", "--threshold", "5", cwd=tmp_path)
    comma = run_python("-m", "model", "photo.jpg", cwd=tmp_path, env={"CONFIDENCE_THRESHOLD": "0,8"})
    zero = run_python("-m", "model", "photo.jpg", cwd=tmp_path, env={"STRANGER_DISTANCE": "0"})
    assert [done.returncode for done in (flag, comma, zero)] == [2, 2, 2]
    assert flag.stderr.strip() == "Bad setting: --threshold 5 is not allowed: it must be a number from 0 to 1"
    assert "CONFIDENCE_THRESHOLD='0,8' is not allowed" in comma.stderr and "Traceback" not in comma.stderr
    assert "STRANGER_DISTANCE must be a number above 0, up to 10" in zero.stderr
