"""Why the model named a face: the nearest training faces of each person, their distances, in words and a picture;
never a user's own reviewed face."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.evidence import NO_GALLERY, SHOWN, Explained, FaceEvidence, explain_chip_jpeg, explain_photo
from model.resources import CHIP_SIZE
from model.search import search_photo
from model.strangers import THUMB_SIDE, Gallery, thumbnail
from testkit.imagery import jpeg, noise_image, scene, stranger
from testkit.processes import run_python

# Where the picture puts the user's chip and each class row's first training face (model/evidence.py's layout).
CHIP_AT = (10, 10)
FIRST_THUMB_AT = (CHIP_SIZE + 20, 10 + 13 + 6)


def _pixels(jpeg_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"), dtype=np.float32)


def _measured(classifier, photo: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The photo's one face chip, its descriptor and its mean distance to each class, as the gallery measures them."""
    (face,) = search_photo(photo, classifier.finder, classifier.limits).found.faces
    descriptor = classifier.describe([face.chip])[1]
    distances = {c: float(classifier.gallery.distances(descriptor, [c])[0]) for c in classifier.classes}
    return face.chip, descriptor, distances


def test_the_picture_shows_the_face_beside_its_nearest_training_faces_and_the_text_the_numbers(classifier) -> None:
    photo = jpeg(scene(1))
    explained = explain_photo(classifier, photo)
    (said,) = explained.evidence
    assert explained.answer.faces[0].label == said.label == "Eileen" and said.known
    chip, descriptor, distances = _measured(classifier, photo)
    assert said.distances == pytest.approx(distances, abs=1e-4)
    assert said.distances["Eileen"] == pytest.approx(explained.answer.faces[0].distance, abs=1e-6)
    assert said.threshold == pytest.approx(classifier.stranger_distance)
    assert distances["Eileen"] < distances["Twin"]
    assert said.text == (
        f"Closer to Eileen's photos ({distances['Eileen']:.2f}) than to Twin's ({distances['Twin']:.2f})."
    )
    for c in classifier.classes:  # every training face of the test model may be shown: the 3 nearest are
        nearest = np.sort(classifier.gallery.reference_distances(descriptor, c)[0])[:SHOWN]
        assert said.nearest[c] == pytest.approx(nearest.tolist(), abs=1e-3)
    picture = Image.open(io.BytesIO(said.picture))
    assert picture.format == "JPEG" and 300 <= picture.width <= 700 and CHIP_SIZE < picture.height <= 700
    assert 5_000 < len(said.picture) < 200_000
    pixels = _pixels(said.picture)
    x, y = CHIP_AT
    assert np.abs(pixels[y : y + CHIP_SIZE, x : x + CHIP_SIZE] - chip).mean() < 10
    # The first row is the face's own label, its nearest training face first.
    refs = classifier.gallery.reference_distances(descriptor, "Eileen")[0]
    nearest_face = _pixels(classifier.gallery.thumbnails["Eileen"][int(refs.argmin())])
    x, y = FIRST_THUMB_AT
    assert np.abs(pixels[y : y + THUMB_SIDE, x : x + THUMB_SIDE] - nearest_face).mean() < 10


def test_someone_else_is_told_how_far_from_both_and_where_the_line_is(classifier) -> None:
    explained = explain_photo(classifier, jpeg(stranger()))
    (face,), (said,) = explained.answer.faces, explained.evidence
    assert not face.known and not said.known
    (near, near_d), (far, far_d) = sorted(said.distances.items(), key=lambda item: item[1])
    assert near_d > classifier.stranger_distance
    assert said.text == (
        f"Far from both: {near_d:.2f} from {near}'s photos and {far_d:.2f} from {far}'s; "
        f"beyond {classifier.stranger_distance:.2f} I call a face someone else."
    )
    assert said.distances[face.label] == pytest.approx(face.distance, abs=1e-4)


def test_every_face_of_a_photo_has_its_evidence_in_order_and_photos_without_faces_none(classifier) -> None:
    explained = explain_photo(classifier, jpeg(scene(2, twins=(True, False))))
    assert [(e.face, e.label) for e in explained.evidence] == [(1, "Twin"), (2, "Eileen")]
    assert [f.label for f in explained.answer.faces] == ["Twin", "Eileen"]
    assert explain_photo(classifier, jpeg(noise_image())).evidence == []
    broken = explain_photo(classifier, b"not a photo at all" * 10)
    assert broken.answer.outcome == "error" and broken.evidence == []
    again = Explained.from_json(json.loads(json.dumps(explained.to_json())))
    assert again.evidence[1].picture == explained.evidence[1].picture and again.answer.faces[1].label == "Eileen"
    assert again.evidence[0].text == explained.evidence[0].text
    assert again.evidence[0].nearest.keys() == {"Eileen", "Twin"}


def test_a_stored_chip_has_the_same_evidence_as_its_photo_and_a_non_chip_is_refused(classifier) -> None:
    photo = jpeg(scene(1, twins=(True,)))
    chip_jpeg = classifier.examine(photo).chips[0]
    said = explain_chip_jpeg(classifier, chip_jpeg)
    (from_photo,) = explain_photo(classifier, photo).evidence
    assert said.label == from_photo.label == "Twin"
    assert said.distances == pytest.approx(from_photo.distances, abs=0.02)  # the chip went through JPEG once more
    with pytest.raises(ValueError):
        explain_chip_jpeg(classifier, b"\xff\xd8 not really a jpeg")


def test_a_model_without_a_gallery_or_without_thumbnails_still_explains(classifier) -> None:
    book = copy.copy(classifier)  # as an export with no gallery (the book's learner, an old export) loads
    book.gallery, book.stranger_distance = None, None
    (said,) = explain_photo(book, jpeg(scene(1))).evidence
    assert (said.text, said.picture, said.label, said.known) == (NO_GALLERY, None, "Eileen", True)
    old = copy.copy(classifier)  # a gallery pickled before thumbnails: it has no such attribute
    old.gallery = copy.copy(classifier.gallery)
    del old.gallery.thumbnails
    (said,) = explain_photo(old, jpeg(scene(1))).evidence
    assert said.text.startswith("Closer to Eileen's photos") and said.nearest == {"Eileen": [], "Twin": []}
    assert Image.open(io.BytesIO(said.picture)).format == "JPEG"
    assert old.gallery.to_json()["thumbnails"]["count"] == 0


def test_thumbnails_are_kept_up_to_the_bound_for_a_spread_sample_and_reported() -> None:
    rng = np.random.default_rng(1)
    descriptors = rng.normal(0, 0.05, (60, 128))
    labels = ["A"] * 40 + ["B"] * 20
    chips = [rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in labels]
    thumbs = [thumbnail(chip) for chip in chips]
    gallery = Gallery.fit(descriptors, labels, ["A", "B"], thumbnails=thumbs, max_thumbnails=25)
    kept_a = [i for i, t in enumerate(gallery.thumbnails["A"]) if t is not None]
    assert len(gallery.thumbnails["A"]) == 40 and len(kept_a) == 25  # aligned with the references, bounded
    assert max(kept_a) >= 30  # across the class, not its first 25
    assert all(t is not None for t in gallery.thumbnails["B"])  # under the bound: every face
    assert all(gallery.thumbnails["A"][i] == thumbs[i] for i in kept_a)
    again = Gallery.fit(descriptors, labels, ["A", "B"], thumbnails=thumbs, max_thumbnails=25)
    assert again.thumbnails == gallery.thumbnails  # seeded: a retrain on the same faces shows the same ones
    report = gallery.to_json()["thumbnails"]
    kept_bytes = sum(len(thumbs[i]) for i in kept_a) + sum(map(len, thumbs[40:]))
    assert report == {"count": 45, "bytes": kept_bytes, "side": 80}
    assert Image.open(io.BytesIO(thumbs[0])).size == (THUMB_SIDE, THUMB_SIDE)


def test_a_users_reviewed_face_is_measured_against_but_never_shown(chip_folder: Path, tmp_path: Path) -> None:
    from fastai.vision.all import ImageDataLoaders

    from model.learner import face_learner
    from model.serving import FaceClassifier
    from training.strangers import fit_gallery

    folder = shutil.copytree(chip_folder, tmp_path / "chips")
    probe = Image.open(folder / "Eileen" / "000.png").convert("RGB")
    probe.save(folder / "Eileen" / "review-7.jpg", quality=95)  # the user's face, approved into training
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=42, bs=4, num_workers=0)
    learn = face_learner(dls)
    gallery = fit_gallery(learn)
    items = [Path(p) for p in [*dls.train_ds.items, *dls.valid_ds.items] if Path(p).parent.name == "Eileen"]
    assert len(gallery.references["Eileen"]) == len(items) == 21
    assert [t is None for t in gallery.thumbnails["Eileen"]] == [p.name.startswith("review-") for p in items]
    # In fp32, as the gallery's references are: int8's drift (about 0.03) is the size of the margin measured here.
    classifier = FaceClassifier(learn, precision="fp32")
    said = explain_chip_jpeg(classifier, jpeg(probe, 95))
    refs = gallery.reference_distances(classifier.describe([np.asarray(probe)])[1], "Eileen")[0]
    assert refs.min() < 0.05  # its own review face lies right there, and counts in the distance...
    assert min(said.nearest["Eileen"]) > refs.min() + 0.01  # ...but is not among the faces shown


def test_the_worker_explains_beside_its_queue(worker, classifier) -> None:
    photo = jpeg(scene(1))

    async def ask() -> tuple[Explained, FaceEvidence]:
        return await worker.why(photo), await worker.why_chip(classifier.examine(photo).chips[0])

    explained, chip = asyncio.run(ask())
    assert explained.evidence[0].text.startswith("Closer to Eileen's photos") and chip.label == "Eileen"


def test_the_cli_writes_each_faces_evidence_and_says_it(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "two.jpg").write_bytes(jpeg(scene(2, twins=(False, True))))
    (tmp_path / "hopper.jpg").write_bytes(jpeg(stranger()))
    done = run_python("-m", "model", "two.jpg", "hopper.jpg", "--why", "why", "--model", str(exported), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert written == ["hopper.why-1.jpg", "two.why-1.jpg", "two.why-2.jpg"]
    assert all(Image.open(tmp_path / "why" / name).format == "JPEG" for name in written)
    lines = done.stdout.splitlines()
    assert any(line.startswith("  1. why: Closer to Eileen's photos") for line in lines), done.stdout
    assert any(line.startswith("  2. why: Closer to Twin's photos") for line in lines), done.stdout
    assert any(line.startswith("  1. why: Far from both: ") for line in lines), done.stdout
    printed = run_python("-m", "model", "hopper.jpg", "--why", "why", "--json", "--model", str(exported), cwd=tmp_path)
    (face,) = json.loads(printed.stdout)[0]["faces"]
    assert face["known"] is False and face["why"].startswith("Far from both: ")
