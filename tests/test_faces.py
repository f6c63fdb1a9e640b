"""Finding faces: whole photos with several faces, tight face crops, tiny faces, no faces."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.decode import decode_image
from model.faces import FaceFinder, FaceOptions, QualityOptions
from testkit.imagery import astronaut, jpeg, noise_image, scene


def find(finder: FaceFinder, im: Image.Image):
    return finder.find(decode_image(jpeg(im)))


def test_four_faces_in_a_whole_photo_are_found_left_to_right(finder) -> None:
    search = find(finder, scene(4))
    assert len(search.faces) == 4
    centres = [(f.box[0] + f.box[2]) / 2 for f in search.faces]
    slot = 1280 / 4
    for i, centre in enumerate(centres):
        assert i * slot < centre < (i + 1) * slot
    for face in search.faces:
        assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
        assert 330 <= (face.box[1] + face.box[3]) / 2 <= 520


def test_a_tight_face_crop_gives_one_face(finder) -> None:
    tight = astronaut().crop((183, 84, 258, 159))  # eyebrows to chin, 75 px, as in shared/datasets/pins
    assert find(finder, tight).faces, "the crop fallback should find it"
    no_fallback = FaceFinder(FaceOptions(crop_fallback=False))
    assert not find(no_fallback, tight).faces, "this crop is too tight for the plain detector"
    (face,) = find(finder, tight).faces
    assert face.box[2] - face.box[0] > 0.6 * tight.width


def test_boxes_are_in_the_original_photos_pixels(finder) -> None:
    big = scene(2, width=3200, height=2400)
    search = finder.find(decode_image(jpeg(big)))
    assert len(search.faces) == 2
    for i, face in enumerate(search.faces):
        centre_x = (face.box[0] + face.box[2]) / 2
        assert i * 1600 < centre_x < (i + 1) * 1600
        assert 150 < face.box[2] - face.box[0] < 260  # a ~195 px face in a 300 px paste, in the 3200 px photo


def test_faces_below_the_minimum_size_are_found_and_marked_too_small(finder) -> None:
    small = scene(3, width=1280, height=853).resize((320, 213), Image.Resampling.LANCZOS)
    strict = FaceFinder(FaceOptions(quality=QualityOptions(min_width=120)))
    search = find(strict, small)
    assert [f.quality for f in search.faces] == ["too_small"] * 3 and search.too_small == 3
    width = search.faces[0].box[2] - search.faces[0].box[0]
    assert search.faces[0].reason == f"This face is only {width} pixels wide: send a closer photo."
    assert [f.quality for f in find(finder, small).faces] == ["ok"] * 3


def test_a_photo_without_a_face_gives_none(finder) -> None:
    for seed in range(3):
        search = find(finder, noise_image(seed=seed))
        assert search.faces == [] and search.too_small == 0
    assert find(finder, Image.new("RGB", (200, 200), (120, 130, 140))).faces == []


def test_a_tilted_face_is_still_found_and_aligned(finder) -> None:
    tilted = astronaut().rotate(20, center=(220, 120), resample=Image.Resampling.BICUBIC)

    def face_of(im: Image.Image):
        (face,) = [f for f in find(finder, im).faces if f.box[1] < 200]  # not the false hit lower down
        return face

    upright_chip = face_of(astronaut()).chip.astype(float)
    faces = [face_of(tilted)]
    # Alignment undoes the tilt: the chip looks like the upright face's chip.
    assert np.abs(faces[0].chip.astype(float) - upright_chip).mean() < 30


@pytest.mark.parametrize("width", [1280, 2400])
def test_a_large_jpeg_decoded_reduced_gives_the_faces_of_the_full_decode(finder, width: int) -> None:
    """Found on a reduced decode, chips cut at working resolution: the same faces, boxes within a few pixels."""
    data = jpeg(scene(4, width=width, height=width * 2 // 3))
    full = finder.find(decode_image(data)).faces
    reduced = finder.find(decode_image(data, first_side=finder.options.detect_side)).faces
    assert len(full) == len(reduced) == 4
    for a, b in zip(full, reduced, strict=True):
        assert max(abs(u - v) for u, v in zip(a.box, b.box, strict=True)) <= 0.01 * width
        assert np.abs(a.chip.astype(int) - b.chip.astype(int)).mean() < 6


def test_the_detector_is_saved_once_and_read_back_the_same(tmp_path) -> None:
    from model.faces import frontal_face_detector

    pixels = decode_image(jpeg(scene(4))).pixels
    built = frontal_face_detector(tmp_path)
    saved = list(tmp_path.glob("frontal_face_detector_*.svm"))
    assert len(saved) == 1
    read = frontal_face_detector(tmp_path)
    assert [str(r) for r in read(pixels)] == [str(r) for r in built(pixels)] and len(read(pixels)) == 4
    saved[0].write_bytes(b"damaged")
    assert len(frontal_face_detector(tmp_path)(pixels)) == 4  # a damaged copy is rebuilt, not trusted
    assert saved[0].stat().st_size > 1000


THREADS_ON_ONE_FINDER = """
import threading
from model.decode import decode_image
from model.faces import FaceFinder
from testkit.imagery import jpeg, scene

photos = [jpeg(scene(1, width=w, height=w * 2 // 3)) for w in (960, 1280, 2400)]  # one look each
finder = FaceFinder()
expected = [[f.box for f in finder.find(decode_image(p, first_side=512)).faces] for p in photos]
found = []

def read(k):
    for i in range(20):
        n = (i + k) % len(photos)
        found.append([f.box for f in finder.find(decode_image(photos[n], first_side=512)).faces] == expected[n])

threads = [threading.Thread(target=read, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(found), all(found))
"""


def test_threads_finding_faces_with_one_finder_at_once_get_each_photos_own_faces() -> None:
    """In-process, a "Why?", a feedback press and a classification may read photos at the same moment."""
    import subprocess
    import sys

    from testkit.processes import ROOT

    done = subprocess.run(
        [sys.executable, "-c", THREADS_ON_ONE_FINDER], capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]  # dlib's scan state shared by threads: a segfault
    assert done.stdout.split() == ["60", "True"]
