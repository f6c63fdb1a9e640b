"""Identity cleaning: training keeps only the person each class was asked for, and says what it set aside."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.decode import decode_image
from model.encoder import load_face_encoder
from model.faces import FaceFinder
from testkit.imagery import CLASSES, jpeg, varied_photo, varied_stranger
from training.clean import CleanOptions, descriptors
from training.cli import main as training_main
from training.identity import ANOTHER_PERSON, NoDominantPerson, looks_like, set_aside_faces

EILEEN, TWIN = CLASSES
# Generated photos all come from one astronaut photo: see test_training.py.
GENERATED = ["--dedupe-distance", "0.02"]


def _clear_face(im: Image.Image) -> np.ndarray | None:
    """The photo's face chip, when training would find one clear face in it (dlib also sees a weak "face"
    in her suit's mission patch, sometimes nearly as sure as of her face)."""
    faces = sorted(FaceFinder().find(decode_image(jpeg(im))).faces, key=lambda f: f.score)
    clear = len(faces) == 1 or faces[-1].score - faces[-2].score > CleanOptions().score_margin
    return faces[-1].chip if faces and clear else None


@cache
def _generated(kind: str, n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """`n` photos of one kind, each with one clear face, and their faces' descriptors."""
    rng = np.random.default_rng(seed)
    photos, chips = [], []
    while len(photos) < n:
        im = varied_stranger(rng) if kind == "stranger" else varied_photo(rng, twin=kind == TWIN)
        chip = _clear_face(im)
        if chip is not None:
            photos.append(im)
            chips.append(chip)
    return photos, descriptors(load_face_encoder().eval(), chips)


def _photos(kind: str, n: int, seed: int) -> list[Image.Image]:
    return _generated(kind, n, seed)[0]


def _descriptors(kind: str, n: int, seed: int) -> np.ndarray:
    return _generated(kind, n, seed)[1]


def _reasons(desc: np.ndarray, labels: list[str], **kwargs) -> dict[int, str]:
    return {s.index: s.reason for s in set_aside_faces(desc, labels, **kwargs)}


def test_a_stranger_and_the_look_alike_under_the_wrong_name_are_set_aside() -> None:
    eileen, twin, stranger = _descriptors(EILEEN, 12, 1), _descriptors(TWIN, 12, 2), _descriptors("stranger", 3, 3)
    misfiled = _descriptors(TWIN, 2, 4)
    desc = np.concatenate([eileen, stranger, misfiled, twin])
    labels = [EILEEN] * 17 + [TWIN] * 12
    reasons = _reasons(desc, labels)
    assert reasons == {**dict.fromkeys((12, 13, 14), ANOTHER_PERSON), 15: looks_like(TWIN), 16: looks_like(TWIN)}

    # Clean classes lose nothing; a face someone vouched for stays.
    assert _reasons(np.concatenate([eileen, twin]), [EILEEN] * 12 + [TWIN] * 12) == {}
    vouched = np.zeros(len(labels), dtype=bool)
    vouched[15] = True
    assert _reasons(desc, labels, keep=vouched) == {**dict.fromkeys((12, 13, 14), ANOTHER_PERSON), 16: looks_like(TWIN)}
    vouched[:] = False
    vouched[13] = True  # the stranger counts as Eileen now: her other photos are no longer far from Eileen
    assert _reasons(desc, labels, keep=vouched) == {15: looks_like(TWIN), 16: looks_like(TWIN)}


def test_a_class_of_two_people_in_equal_shares_has_no_person_to_train_on() -> None:
    desc = np.concatenate([_descriptors(EILEEN, 6, 1), _descriptors("stranger", 6, 3), _descriptors(TWIN, 8, 2)])
    with pytest.raises(NoDominantPerson, match=f"^{EILEEN}: no one person dominates its 12 faces") as raised:
        set_aside_faces(desc, [EILEEN] * 12 + [TWIN] * 8)
    assert "better search queries" in str(raised.value)


def _noisy_folder(root: Path) -> Path:
    """Each class's search results, with a stranger's photos and two of the twin's filed under Eileen."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i, im in enumerate(_photos(name, 14, 10 + len(name))):
            (root / name / f"{i}.jpg").write_bytes(jpeg(im))
    for i, im in enumerate(_photos("stranger", 3, 30)):
        (root / EILEEN / f"stranger-{i}.jpg").write_bytes(jpeg(im))
    for i, im in enumerate(_photos(TWIN, 2, 40)):
        (root / EILEEN / f"twin-{i}.jpg").write_bytes(jpeg(im))
    return root


def test_training_sets_aside_other_people_says_so_and_turns_them_away(tmp_path: Path, capsys) -> None:
    from model.serving import FaceClassifier

    photos, work, out = _noisy_folder(tmp_path / "photos"), tmp_path / "work", tmp_path / "export.pkl"
    common = ["--from-folder", str(photos), "--work", str(work), "--out", str(out), "--force", *GENERATED]
    assert training_main(common) == 0
    summary = capsys.readouterr().out
    assert f"{EILEEN}: 19 faces, kept 14; set aside 3 of another person, 2 that look like {TWIN}" in summary
    assert f"{TWIN}: 14 faces, kept 14; set aside nothing" in summary
    assert "set_aside.png" in summary and "keep.txt" in summary

    metadata = json.loads(out.with_suffix(".json").read_text())
    cleaning = metadata["cleaning"]
    assert cleaning["set_aside"] == {EILEEN: {ANOTHER_PERSON: 3, looks_like(TWIN): 2}}
    assert cleaning["kept"] == {EILEEN: 14, TWIN: 14} == metadata["strangers"]["references"]
    assert metadata["n_train"] + metadata["n_valid"] == 28 and metadata["accuracy"] == 1.0
    sheet = Image.open(work / "plots" / "set_aside.png")
    assert sheet.width > 5 * 150
    listed = (work / "set_aside.txt").read_text().splitlines()[1:]
    assert sorted(line.split("  #")[0].rsplit("/", 1)[1] for line in listed) == [
        "stranger-0.jpg",
        "stranger-1.jpg",
        "stranger-2.jpg",
        "twin-0.jpg",
        "twin-1.jpg",
    ]

    # A new photo of the stranger is someone else to this model; a new photo of Eileen is Eileen.
    classifier = FaceClassifier.load(out)
    (stranger,) = classifier.classify(jpeg(_photos("stranger", 1, 50)[0])).faces
    assert not stranger.known
    (eileen,) = classifier.classify(jpeg(_photos(EILEEN, 1, 51)[0])).faces
    assert eileen.known and eileen.label == EILEEN

    # A line of the list copied into keep.txt puts that face back; --keep-all-faces keeps them all.
    # A line that names no photo (a typo here) is said to be ignored, on stderr and in the summary.
    (work / "keep.txt").write_text(next(line for line in listed if "twin-1" in line) + "\nphotos/Eileen/twin-9.jpg\n")
    assert training_main([*common, "--epochs", "1"]) == 0
    summary, err = capsys.readouterr()
    assert "keep.txt lists 1 photos: 1 of their faces kept" in summary
    warning = f"1 of the 2 photos listed in {work / 'keep.txt'} match no photo in the class folders"
    assert f"Warning: {warning}, so they are ignored: line 2 'photos/Eileen/twin-9.jpg'" in err
    assert f"Warning: {warning}" in summary
    assert json.loads(out.with_suffix(".json").read_text())["cleaning"]["kept"][EILEEN] == 15
    (work / "keep.txt").unlink()
    assert training_main([*common, "--epochs", "1", "--keep-all-faces"]) == 0
    summary = capsys.readouterr().out
    assert f"{EILEEN}: 19 faces, kept 19; set aside nothing" in summary and "--keep-all-faces" in summary
    assert json.loads(out.with_suffix(".json").read_text())["cleaning"]["identity"] is False
    assert not (work / "plots" / "set_aside.png").exists()  # no sheet left over from the earlier run


def test_keep_list_lines_that_match_no_photo_are_told_apart(tmp_path: Path, monkeypatch) -> None:
    from training.clean import read_keep_list

    photos = tmp_path / "photos"
    (photos / EILEEN).mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (photos / EILEEN / name).write_bytes(b"a photo")
    (tmp_path / "elsewhere.jpg").write_bytes(b"a file, not one of the photos")
    monkeypatch.chdir(tmp_path)
    keep_txt = tmp_path / "keep.txt"
    keep_txt.write_text(
        "# vouched for\n"
        f"photos/{EILEEN}/a.jpg  # {EILEEN}: another person, distance 0.700\n"  # as set_aside.txt writes it
        f"{EILEEN}/b.jpg\n"  # relative to the photos folder
        f"photos/{EILEEN}/a.jgp\n"  # a typo
        "\n"
        "elsewhere.jpg\n"  # a file, but none of the photos trained on
    )
    keep = read_keep_list(keep_txt, photos)
    assert keep.photos == {(photos / EILEEN / name).resolve() for name in ("a.jpg", "b.jpg")}
    assert keep.unmatched == [(4, f"photos/{EILEEN}/a.jgp"), (6, "elsewhere.jpg")]
    assert keep.warning(keep_txt) == (
        f"2 of the 4 photos listed in {keep_txt} match no photo in the class folders, so they are ignored: "
        f"line 4 'photos/{EILEEN}/a.jgp', line 6 'elsewhere.jpg'"
    )
    assert read_keep_list(tmp_path / "none.txt", photos).warning(keep_txt) is None


def test_a_class_without_a_dominant_person_stops_training_with_its_name(tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    for name, kinds in ((EILEEN, (EILEEN, "stranger")), (TWIN, (TWIN,))):
        (photos / name).mkdir(parents=True)
        for kind in kinds:
            for i, im in enumerate(_photos(kind, 6, 60)):
                (photos / name / f"{kind}-{i}.jpg").write_bytes(jpeg(im))
    out = tmp_path / "export.pkl"
    args = ["--from-folder", str(photos), "--work", str(tmp_path / "work"), "--out", str(out), *GENERATED]
    assert training_main(args) == 2
    err = capsys.readouterr().err
    assert f"Training stopped: {EILEEN}: no one person dominates" in err and "better search queries" in err
    assert not out.exists()
