"""The serving API: bytes in, one answer per face out, batched, equal to fastai's predict."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bot.replies import describe
from model.faces import FaceOptions, QualityOptions
from model.serving import FaceClassifier, ModelNotFound
from testkit.imagery import encode, face_crop, jpeg, noise_image, scene


def test_one_face_is_named_with_a_confidence(classifier) -> None:
    eileen = classifier.classify(jpeg(scene(1)))
    twin = classifier.classify(jpeg(scene(1, twins=(True,))))
    for answer, name in ((eileen, "Eileen"), (twin, "Twin")):
        assert answer.outcome == "ok"
        (face,) = answer.faces
        assert face.label == name and face.sure
        assert face.confidence == max(face.probabilities.values()) > 0.8
        assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        left, top, right, bottom = face.box
        assert 500 < (left + right) / 2 < 780 and 330 < (top + bottom) / 2 < 520


def test_each_face_of_a_group_photo_is_named(classifier) -> None:
    answer = classifier.classify(jpeg(scene(4, twins=(True, False, False, True))))
    assert [f.label for f in answer.faces] == ["Twin", "Eileen", "Eileen", "Twin"]


def test_a_crowd_reply_keeps_the_largest_face_when_she_stands_on_the_right(classifier) -> None:
    """Two smaller faces on the left, the photo's subject on the right; a reply with room for one lists her."""
    from model.annotate import face_caption

    photo = Image.new("RGB", (1280, 853), (196, 204, 188))
    for left, side in ((30, 230), (300, 230), (700, 480)):
        face = face_crop().resize((side, round(side * 145 / 140)), Image.Resampling.LANCZOS)
        photo.paste(face, (left, (853 - face.height) // 2))
    answer = classifier.classify(jpeg(photo))
    assert len(answer.faces) == 3
    lefts = [f.box[0] for f in answer.faces]
    assert lefts == sorted(lefts)  # numbered left to right, as the boxed photo shows them
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in answer.faces]
    assert areas.index(max(areas)) == 2
    lines = describe(answer, b"boxed", max_listed=1).text.splitlines()
    assert lines[1].startswith("3. Eileen, ") and lines[2] == "and 2 more, numbered on the photo."
    assert face_caption(3, answer.faces[2]).startswith("3. Eileen")  # the label on her box


def test_a_tight_face_crop_is_answered(classifier) -> None:
    tight = face_crop(twin=True).crop((30, 34, 100, 115))
    answer = classifier.classify(jpeg(tight))
    assert answer.outcome == "ok" and [f.label for f in answer.faces] == ["Twin"]


def test_all_faces_of_several_photos_share_one_forward_pass(classifier) -> None:
    calls = []
    hook = classifier._stages[0][1].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        answers = classifier.classify_many([jpeg(scene(4)), jpeg(scene(1)), jpeg(noise_image()), b"junk"])
    finally:
        hook.remove()
    assert calls == [10]  # five faces and their mirror images (for the "someone else" distance)
    assert [a.outcome for a in answers] == ["ok", "ok", "no_face", "error"]
    assert [len(a.faces) for a in answers] == [4, 1, 0, 0]


def test_probabilities_equal_fastai_predict(exported, trained, finder) -> None:
    """Our batched path is fastai's arithmetic (in fp32, as fastai computes: bf16 is tests/test_precision.py's)."""
    from model.decode import decode_image

    chips = [f.chip for f in finder.find(decode_image(jpeg(scene(4, twins=(True, False))))).faces]
    ours, _ = FaceClassifier.load(exported, precision="fp32").probabilities(chips)
    with trained.no_bar():
        theirs = np.stack([trained.predict(chip)[2].numpy() for chip in chips])
    assert np.abs(ours - theirs).max() < 1e-5


def test_a_weak_answer_is_not_sure(exported) -> None:
    strict = FaceClassifier.load(exported, threshold=0.99999999)
    (face,) = strict.classify(jpeg(scene(1))).faces
    assert face.label == "Eileen" and not face.sure


def test_no_face_and_too_small_faces_are_their_own_outcomes(classifier, exported) -> None:
    none = classifier.classify(jpeg(noise_image()))
    assert none.outcome == "no_face" and none.faces == []
    assert none.note == "I can't find a face in this photo."
    tiny = scene(4).resize((480, 320), Image.Resampling.LANCZOS)  # faces of about 60 px
    strict = FaceClassifier.load(exported, face_options=FaceOptions(quality=QualityOptions(min_width=80)))
    assert len(classifier.classify(jpeg(tiny)).faces) == 4
    small = strict.classify(jpeg(tiny))
    assert small.outcome == "no_face" and small.too_small == 4 and small.faces == []
    assert [face.quality for face in small.turned_away] == ["too_small"] * 4
    assert small.note == (
        "I found 4 faces but can't name any of them. 4 are too small: send a photo where they are closer."
    )
    listed = small.to_json()["turned_away"]
    assert [f["box"] for f in listed] == [list(f.box) for f in small.turned_away]


@pytest.mark.parametrize(
    "data",
    [
        b"not an image at all",
        jpeg(scene(1))[:5000],
        encode(Image.new("RGB", (10, 10)), "PNG"),
        bytes(25 * 1024 * 1024),
    ],
    ids=["text", "truncated", "10x10", "25MB"],
)
def test_bad_photos_get_an_error_answer_and_do_not_stop_the_others(classifier, data: bytes) -> None:
    bad, good = classifier.classify_many([data, jpeg(scene(1))])
    assert bad.outcome == "error" and bad.faces == [] and bad.error
    assert good.outcome == "ok" and good.faces[0].label == "Eileen"


def test_answers_carry_a_time_per_stage(classifier) -> None:
    answer = classifier.classify(jpeg(scene(1)))
    assert set(answer.timings) >= {"decode", "detect", "chips", "encoder", "head"}
    assert all(t >= 0 for t in answer.timings.values())


def test_missing_model_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(ModelNotFound, match="python -m training"):
        FaceClassifier.load(tmp_path / "export.pkl")


def _summary(answers) -> list:
    return [(a.outcome, a.error_kind, [(f.box, f.label, f.known) for f in a.faces]) for a in answers]


def test_a_pool_of_processes_finds_the_same_faces_and_survives_a_dead_worker(exported) -> None:
    from model.search import FacePool

    photos = [jpeg(scene(4, twins=(True, False))), jpeg(scene(1)), jpeg(noise_image()), b"junk"]
    alone = FaceClassifier.load(exported)
    pool = FacePool(2)
    try:
        pooled = FaceClassifier.load(exported, pool=pool)
        expected = _summary(alone.classify_many(photos))
        assert _summary(pooled.classify_many(photos)) == expected
        assert [a[0] for a in expected] == ["ok", "ok", "no_face", "error"]
        for process in list(pool._executor._processes.values()):
            process.kill()  # a worker that dies (say, a library crashing on a photo) ...
            process.join()
        assert _summary(pooled.classify_many(photos)) == expected  # ... costs no answer
        assert _summary(pooled.classify_many(photos)) == expected  # and new workers take over
    finally:
        pool.close()
