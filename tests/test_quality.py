"""Faces below quality get a reason, not a guess; a second look finds the small faces the first look misses."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bot.replies import describe
from model.annotate import STRANGER_COLOUR, draw_faces
from model.decode import decode_image
from model.faces import FaceFinder, FaceOptions
from model.quality import QualityOptions, measure, verdict
from testkit.imagery import face_crop, jpeg, scene


@pytest.fixture(scope="module")
def sharp_eyed(exported):
    """The test model with a stricter blur line: dlib's chip of the test's large, smooth face stays sharper
    than the default line (measured on the pins pairs' smaller faces) until the detector no longer finds it."""
    from model.serving import FaceClassifier

    return FaceClassifier.load(exported, face_options=FaceOptions(quality=QualityOptions(min_sharpness=0.02)))


def _judge(kind: str, classifier, sharp_eyed):
    return sharp_eyed if kind == "blurred" else classifier


def _degraded(kind: str) -> Image.Image:
    photo = scene(1)
    if kind == "blurred":
        return photo.filter(ImageFilter.GaussianBlur(4))
    if kind == "too_dark":
        return Image.eval(photo, lambda v: round(v * 0.08))
    if kind == "washed_out":
        return Image.eval(photo, lambda v: round(255 * (v / 255) ** 0.1))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["blurred", "too_dark", "washed_out"])
def test_a_photo_whose_one_face_is_below_quality_says_why_instead_of_guessing(classifier, sharp_eyed, kind) -> None:
    answer = _judge(kind, classifier, sharp_eyed).classify(jpeg(_degraded(kind)))
    assert answer.outcome == "no_face" and answer.faces == []
    (seen,) = answer.turned_away
    assert seen.quality == kind and seen.reason
    assert answer.note == f"I found a face but can't name it. {seen.reason}"
    listed = answer.to_json()["turned_away"][0]
    assert listed["quality"] == kind and listed["box"] == list(seen.box) and set(listed["measures"]) >= {"sharpness"}
    assert describe(answer).text == answer.note  # the chat reply says it too


def test_each_verdict_is_told_with_what_to_send_instead(classifier, sharp_eyed) -> None:
    words = {
        "blurred": "send a sharper photo",
        "too_dark": "better light",
        "washed_out": "less bright",
    }
    for kind, advice in words.items():
        (seen,) = _judge(kind, classifier, sharp_eyed).classify(jpeg(_degraded(kind))).turned_away
        assert advice in seen.reason


def test_the_same_face_sharp_and_well_lit_is_named(classifier, sharp_eyed) -> None:
    for judge in (classifier, sharp_eyed):
        (face,) = judge.classify(jpeg(scene(1))).faces
        assert face.quality == "ok" and face.reason is None and face.label == "Eileen" and face.sure
    assert face.measures["width"] > 150 and 0.2 < face.measures["brightness"] < 0.9


def test_a_side_on_face_is_measured_from_its_landmarks() -> None:
    chip = np.asarray(face_crop().resize((150, 150)))
    eyes_level = [(40, 60), (60, 60), (90, 60), (110, 60)]  # two corners of each eye
    facing = measure(chip, np.array([*eyes_level, (75, 95)]), width=200)
    turned = measure(chip, np.array([*eyes_level, (110, 95)]), width=200)  # the nose past one eye
    assert facing["yaw"] < 0.05 and turned["yaw"] > 0.6
    assert verdict(facing, QualityOptions())[0] == "ok"
    quality, reason = verdict(turned, QualityOptions())
    assert quality == "side_on" and "faces the camera" in reason


def test_a_face_turned_past_the_line_is_not_named(exported) -> None:
    from model.serving import FaceClassifier

    strict = FaceClassifier.load(exported, face_options=FaceOptions(quality=QualityOptions(max_yaw=0.0)))
    answer = strict.classify(jpeg(scene(1)))
    assert answer.outcome == "no_face" and [f.quality for f in answer.turned_away] == ["side_on"]


def test_in_a_group_the_face_below_quality_gets_its_reason_and_a_grey_box(sharp_eyed) -> None:
    group = scene(3)
    blurred = group.crop((860, 0, 1280, 853)).filter(ImageFilter.GaussianBlur(4))  # the third face only
    group.paste(blurred, (860, 0))
    data = jpeg(group)
    answer = sharp_eyed.classify(data)
    assert answer.outcome == "ok" and [f.quality for f in answer.faces] == ["ok", "ok", "blurred"]
    third = answer.faces[2]
    assert not third.sure and not third.named and answer.faces[0].named
    text = describe(answer).text
    assert text.splitlines()[3] == "3. not named: blurred, send a photo where it is sharper"
    drawn = np.asarray(draw_faces(decode_image(data), answer))
    left, top, _, _ = third.box
    assert tuple(drawn[top + 1, left + 1]) == STRANGER_COLOUR or tuple(drawn[top, left]) == STRANGER_COLOUR


def test_a_face_too_small_in_a_large_photo_is_turned_away_with_its_width(classifier) -> None:
    photo = Image.new("RGB", (1280, 960), (150, 160, 150))
    face = face_crop().resize((50, 52), Image.Resampling.LANCZOS)  # a face of about 32 px
    photo.paste(face, (600, 400))
    answer = classifier.classify(jpeg(photo, quality=95))
    assert answer.outcome == "no_face"
    (seen,) = answer.turned_away
    width = seen.box[2] - seen.box[0]
    assert seen.quality == "too_small" and 20 <= width < 48
    assert seen.reason == f"This face is only {width} pixels wide: send a closer photo."


# -- the second look ---------------------------------------------------------------------------


def _small_faces_photo(widths: tuple[int, ...]) -> Image.Image:
    photo = Image.new("RGB", (1280, 960), (120, 130, 140))
    for i, width in enumerate(widths):  # dlib's box on the crop is about 0.8 of its width
        if width:
            size = (round(width / 0.8), round(width / 0.8 * 145 / 140))
            photo.paste(face_crop().resize(size, Image.Resampling.LANCZOS), (60 + i * 240, 380))
    return photo


def test_the_second_look_finds_small_faces_the_first_look_misses(finder) -> None:
    data = jpeg(_small_faces_photo((45, 55, 65)), quality=95)
    first_only = FaceFinder(FaceOptions(second_look=False)).find(decode_image(data))
    assert first_only.faces == []
    search = finder.find(decode_image(data))
    assert len(search.faces) == 3 and search.second_look_s > 0
    for i, (face, width) in enumerate(zip(search.faces, (45, 55, 65), strict=True)):
        assert 60 + i * 240 <= face.box[0] <= 60 + i * 240 + 100
        assert 0.7 * width <= face.box[2] - face.box[0] <= 1.3 * width


def test_beside_a_face_the_first_look_finds_the_smaller_ones_are_looked_for_too(finder) -> None:
    photo = _small_faces_photo((0, 0, 0, 60, 60))  # two small faces on the right
    big = face_crop().resize((420, 435), Image.Resampling.LANCZOS)
    photo.paste(big, (40, 260))
    photo.paste(face_crop().resize((300, 310)), (420, 300))  # two large faces: a group photo
    data = jpeg(photo, quality=95)
    assert len(FaceFinder(FaceOptions(second_look=False)).find(decode_image(data)).faces) == 2
    assert len(finder.find(decode_image(data)).faces) == 4


def test_a_one_face_portrait_pays_nothing_more(finder) -> None:
    search = finder.find(decode_image(jpeg(scene(1))))
    assert len(search.faces) == 1 and search.second_look_s == 0


def test_the_cnn_detector_finds_a_face_on_a_small_photo() -> None:
    cnn = FaceFinder(FaceOptions(detector="cnn"))
    search = cnn.find(decode_image(jpeg(face_crop().resize((200, 207)))))
    (face,) = search.faces
    assert face.chip.shape == (150, 150, 3) and face.quality == "ok"
    with pytest.raises(ValueError, match="no face detector"):
        FaceFinder(FaceOptions(detector="mtcnn"))
