"""The feedback buttons and what a press keeps (`bot.feedback`), on the real worker and a real SQLite store.

Every chat adapter draws these keyboards and hands back what was pressed; so what the buttons say, what their
data holds and what a press keeps is asserted here once, through the same model and database the bot uses.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.core import ChatCore, RateLimiter
from bot.feedback import GONE, MAX_FEEDBACK_FACES, NOT_SAVED, THANKS, WHY, WHY_GONE, Feedback, Pressed
from feedback.store import NEITHER, FeedbackStore
from testkit.crowd import crowd_answer
from testkit.imagery import face_crop, jpeg, scene

KEY = b"k" * 32


def _feedback(store: FeedbackStore | None, worker, pressed: list | None = None, why: bool = True) -> Feedback:
    def counted(verdict: str, model: str | None) -> None:
        if pressed is not None:
            pressed.append((verdict, model))

    def classes() -> list[str]:
        return list(worker.classifier.classes)

    return Feedback(store, worker.examine, classes, lambda: "2026-11-30", counted, worker.why if why else None)


@pytest.fixture
def store(tmp_path: Path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", KEY)
    yield store
    store.close()


def _answer(worker, data: bytes):
    return asyncio.run(worker.classify(data)).answer


def test_one_face_gets_a_button_per_class_with_the_models_answer_marked_and_neither(worker, store) -> None:
    answer = _answer(worker, jpeg(face_crop()))
    rows = _feedback(store, worker).keyboard(answer)
    texts = [button.text for row in rows for button in row]
    classes = list(worker.classifier.classes)
    label = answer.faces[0].label.replace("_", " ")
    assert f"✓ {label}" in texts
    assert sorted(t.removeprefix("✓ ") for t in texts[:-2]) == sorted(c.replace("_", " ") for c in classes)
    assert texts[-2:] == ["Neither of them", WHY]
    assert [button.text for button in rows[-1]] == [WHY]  # a row of its own, under the choices


def test_with_feedback_off_only_why_is_offered_and_no_buttons_for_no_face(worker, store) -> None:
    answer = _answer(worker, jpeg(face_crop()))
    assert [[button.text for button in row] for row in _feedback(None, worker).keyboard(answer)] == [[WHY]]
    assert _feedback(None, worker, why=False).keyboard(answer) is None
    assert _feedback(store, worker).vote(answer, 1, answer.faces[0].label) is not None
    assert _feedback(None, worker).vote(answer, 1, answer.faces[0].label) is None  # no vote drawn, none taken
    no_face = _answer(worker, jpeg(_blank()))
    assert no_face.outcome == "no_face"
    assert _feedback(store, worker).keyboard(no_face) is None


def _blank() -> Image.Image:
    return Image.new("RGB", (200, 200), (120, 120, 120))


def test_every_button_of_the_largest_crowd_fits_telegrams_64_bytes_and_reads_back(worker, store) -> None:
    feedback = _feedback(store, worker)
    crowd = crowd_answer(MAX_FEEDBACK_FACES)
    faces = feedback.keyboard(crowd)
    assert [b.text for row in faces for b in row] == [str(n) for n in range(1, MAX_FEEDBACK_FACES + 1)]
    assert feedback.keyboard(crowd_answer(MAX_FEEDBACK_FACES + 1)) is None
    last = feedback.parse(faces[-1][-1].data)
    choices = asyncio.run(feedback.act(last, lambda n: f"t:1:2:{n}", None, "telegram", "group", "7")).keyboard
    every = [b for row in faces + choices for b in row]
    assert all(len(b.data.encode()) <= 64 for b in every)
    assert [b.text for b in choices[-1]] == [f"« Back (face {MAX_FEEDBACK_FACES} of {MAX_FEEDBACK_FACES})", WHY]
    assert feedback.parse(choices[-1][1].data).kind == "why"
    back = asyncio.run(feedback.act(feedback.parse(choices[-1][0].data), str, None, "telegram", "group", "7"))
    assert back.keyboard == faces and back.toast is None


@pytest.mark.parametrize(
    "data",
    ["", "fb1", "fb0:v:1:0:0", "fb1:v:2:0:0", "fb1:v:1:00:0", "fb1:f:x:0", "other:1", "fb1:w:2:0", "fb1:w:1:x:0"],
)
def test_data_that_is_not_a_whole_button_of_ours_is_ignored(worker, store, data: str) -> None:
    assert _feedback(store, worker).parse(data) is None


def test_a_press_keeps_the_face_the_models_answer_and_the_verdict_never_the_photo_nor_the_id(
    worker, store, tmp_path: Path
) -> None:
    photo = jpeg(face_crop())
    answer = _answer(worker, photo)
    pressed: list = []
    feedback = _feedback(store, worker, pressed)
    neither = feedback.keyboard(answer)[-2][0]
    fetched = []

    async def again() -> bytes:
        fetched.append(1)
        return photo

    key = "telegram:735108462:77:1"
    user = "735108462"
    result = asyncio.run(feedback.act(feedback.parse(neither.data), lambda n: key, again, "telegram", "private", user))
    assert result.toast == THANKS
    assert result.keyboard[-2][0].text == "Neither of them · 1"
    (item,) = store.items()
    assert (item.model_label, item.label, item.votes, item.model) == (
        answer.faces[0].label,
        None,
        {NEITHER: 1},
        "2026-11-30",
    )
    assert pressed == [("neither", "2026-11-30")]
    chip = store.chip(item.id)
    assert Image.open(io.BytesIO(chip)).size == (150, 150)  # the aligned face as a small JPEG, not the photo
    # The same user changes their mind: no second fetch (the face is kept), one vote, the new verdict.
    right = feedback.keyboard(answer)[0][0]
    result = asyncio.run(feedback.act(feedback.parse(right.data), lambda n: key, None, "telegram", "private", user))
    assert result.toast == THANKS and fetched == [1]
    assert sum(store.votes(key).values()) == 1
    db = sqlite3.connect(tmp_path / "feedback.sqlite3")
    dump = "\n".join(db.iterdump())
    assert "735108462" not in dump  # a private chat's id is its user's id: neither is stored as such
    descriptor = db.execute("select descriptor from faces").fetchone()[0]
    assert np.frombuffer(descriptor, dtype=np.float32).shape == (128,)


def test_a_press_whose_photo_is_gone_or_whose_database_is_down_says_so(worker, tmp_path: Path) -> None:
    answer = _answer(worker, jpeg(face_crop()))
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.sqlite3'}", KEY)
    feedback = _feedback(store, worker)
    vote = feedback.parse(feedback.keyboard(answer)[0][0].data)
    assert asyncio.run(feedback.act(vote, str, None, "discord", "guild", "1")).toast == GONE
    assert store.items() == []
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    down = _feedback(FeedbackStore(f"sqlite:///{blocked / 'f.sqlite3'}", KEY), worker)

    async def photo() -> bytes:
        return jpeg(face_crop())

    assert asyncio.run(down.act(vote, str, photo, "discord", "guild", "1")).toast == NOT_SAVED
    store.close()


def test_faces_of_a_crowd_are_kept_by_their_numbers_left_to_right(worker, store) -> None:
    photo = jpeg(scene(3))
    answer = _answer(worker, photo)
    assert len(answer.faces) == 3
    feedback = _feedback(store, worker)
    third = asyncio.run(
        feedback.act(feedback.parse(feedback.keyboard(answer)[0][2].data), str, None, "web", "page", "a")
    )
    vote = feedback.parse(third.keyboard[0][0].data)

    async def again() -> bytes:
        return photo

    for user in ("a", "b"):
        asyncio.run(feedback.act(vote, lambda n: f"web:x:{n}", again, "web", "page", user))
    (item,) = store.items()
    assert item.model_label == answer.faces[2].label and sum(item.votes.values()) == 2


def test_forget_deletes_the_users_faces_and_privacy_says_what_is_kept(worker, store) -> None:
    feedback = _feedback(store, worker)
    answer = _answer(worker, jpeg(face_crop()))
    vote = feedback.parse(feedback.keyboard(answer)[0][0].data)

    async def photo() -> bytes:
        return jpeg(face_crop())

    asyncio.run(feedback.act(vote, lambda n: "k1", photo, "telegram", "private", "9"))
    assert asyncio.run(feedback.forget("telegram", "9")).text.startswith("Done: I deleted the 1 face you marked")
    assert store.items(None) == []
    assert "nothing of yours" in asyncio.run(feedback.forget("telegram", "9")).text
    core = ChatCore(worker, RateLimiter(1000), feedback=feedback, keep_days=90)
    privacy = core.privacy_text()
    assert "never your whole photo" in privacy and "90 days" in privacy and "/forget" in privacy
    assert "/privacy" in core.help_text()
    assert "I keep nothing" in ChatCore(worker, RateLimiter(1000), feedback=_feedback(None, worker)).privacy_text()


def _lines(keyboard) -> list[list[str]]:
    return [[button.text for button in row] for row in keyboard]


def test_why_shows_the_faces_evidence_naming_the_closer_person_and_keeps_nothing(worker, store) -> None:
    photo = jpeg(face_crop())
    answer = _answer(worker, photo)
    feedback = _feedback(store, worker)
    why = feedback.parse(feedback.keyboard(answer)[-1][0].data)
    assert (why.kind, why.face) == ("why", 1)
    fetched = []

    async def again() -> bytes:
        fetched.append(1)
        return photo

    shown = asyncio.run(feedback.explain(why.face, again, why.labels))
    assert shown.toast is None and fetched == [1]
    assert shown.text.startswith("Closer to Eileen's photos ("), shown.text
    assert "than to Twin's (" in shown.text
    picture = Image.open(io.BytesIO(shown.picture))
    assert picture.format == "JPEG" and 300 < picture.width <= 700
    assert store.items(None) == []  # a Why? press keeps nothing
    # The press itself never redraws the keyboard, nor records anything.
    assert asyncio.run(feedback.act(why, str, again, "web", "page", "a")) == Pressed(None, None)
    assert store.items(None) == [] and fetched == [1]


def test_why_under_a_crowd_names_its_face_and_works_with_feedback_off(worker) -> None:
    photo = jpeg(scene(3, twins=(False, True, False)))
    feedback = _feedback(None, worker)
    answer = _answer(worker, photo)
    picker = feedback.keyboard(answer)
    assert _lines(picker) == [["1", "2", "3"]]  # the face is picked first, as with feedback on
    second = asyncio.run(feedback.act(feedback.parse(picker[0][1].data), str, None, "telegram", "group", "7"))
    assert second.toast is None and _lines(second.keyboard) == [["« Back (face 2 of 3)", WHY]]
    why = feedback.parse(second.keyboard[0][1].data)

    async def again() -> bytes:
        return photo

    shown = asyncio.run(feedback.explain(why.face, again, why.labels))
    assert shown.text.startswith("Face 2: Closer to Twin's photos ("), shown.text
    assert shown.picture[:3] == b"\xff\xd8\xff"
    # A vote from a keyboard drawn while feedback was on: nothing kept, and only Why? is left to press.
    vote = feedback.parse(f"fb1:v:2:0:{why.labels}")
    left = asyncio.run(feedback.act(vote, str, again, "telegram", "group", "7"))
    assert "off" in left.toast and _lines(left.keyboard) == [["« Back (face 2 of 3)", WHY]]


def test_why_after_the_photo_was_deleted_or_changed_says_so(worker, store) -> None:
    feedback = _feedback(store, worker)
    answer = _answer(worker, jpeg(face_crop()))
    why = feedback.parse(feedback.keyboard(answer)[-1][0].data)
    assert asyncio.run(feedback.explain(why.face, None, why.labels)).toast == WHY_GONE

    async def other() -> bytes:  # the message now holds another photo, with two faces
        return jpeg(scene(2))

    gone = asyncio.run(feedback.explain(why.face, other, why.labels))
    assert (gone.toast, gone.text, gone.picture) == (WHY_GONE, None, None)
    assert store.items(None) == []
