"""The web page's feedback, for real: `POST /api/feedback` on the real aiohttp app, the real core and worker and a
real feedback store (SQLite in a temporary folder), `/privacy`, `/api/forget`, `/api/about`'s tally, `POST /api/why`
(a face's evidence), and the page's buttons and Why? links in Debian's Chromium (DOPPELBOT_FEEDBACK_SCREENSHOT=FILE
saves a screenshot of them).

Senders are told apart as the rate limit tells them apart: the test process is a trusted proxy, and its
X-Forwarded-For names each "browser".
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from bot.core import ChatCore, ModelInfo, RateLimiter
from bot.evidence_words import evidence_line
from bot.feedback import NOT_SAVED, THANKS, Feedback
from bot.i18n import texts_for
from bot.web_guards import WebGuards, proxy_networks
from bot.worker import Result
from feedback.store import FeedbackStore
from model.answers import PhotoAnswer, TurnedAway
from testkit.imagery import jpeg, noise_image, scene
from testkit.webpage import Site, post_form, run

MODEL_INFO = ModelInfo(["Eileen", "Twin"], 0.975, "2025-06-01T10:00:00+00:00", 40)
KEY = b"a test key of at least sixteen bytes"
# Two "browsers" behind the test process, a trusted proxy.
ALICE, BOB = "203.0.113.5", "2001:db8:1:2::7"
GUARDS = WebGuards(trusted_proxies=proxy_networks(["127.0.0.1"]))
ONE_FACE = jpeg(scene(1))
TWO_FACES = jpeg(scene(2, twins=(False, True)))
CLOSER = r"Closer to {}'s photos \(0\.\d\d\) than to {}'s \(0\.\d\d\)\."


def feedback_core(worker, store: FeedbackStore | None) -> ChatCore:
    """A core on the real worker whose presses go to `store` (None: FEEDBACK=off), as `python -m bot` makes it."""
    feedback = Feedback(store, worker.examine, lambda: list(MODEL_INFO.classes), lambda: MODEL_INFO.trained_at)
    return ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO, feedback=feedback, keep_days=90)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", KEY)
    yield store
    store.close()


@pytest.fixture
def site(worker, store: FeedbackStore) -> Iterator[Site]:
    with Site(feedback_core(worker, store), guards=GUARDS) as running:
        yield running


async def press(
    url: str,
    photo: bytes | None,
    face: str | int,
    verdict: str,
    sender: str = ALICE,
    origin: str | None = None,
    mime: str = "image/jpeg",
    name: str = "photo.jpg",
    lang: str | None = None,
) -> tuple[int, dict]:
    """A press as the page sends it: the photo again, the face's number and the verdict, as a form (`lang`: the
    page's language, in the query)."""
    form = aiohttp.FormData(default_to_multipart=True)
    if photo is not None:
        form.add_field("image", photo, filename=name, content_type=mime)
    form.add_field("face", str(face))
    form.add_field("verdict", verdict)
    headers = {"X-Forwarded-For": sender, **({"Origin": origin} if origin else {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "api/feedback", data=form, headers=headers, params=lang_of(lang)) as r,
    ):
        return r.status, await r.json()


async def why(
    url: str,
    photo: bytes | None,
    face: str | int,
    origin: str | None = None,
    mime: str = "image/jpeg",
    name: str = "photo.jpg",
    lang: str | None = None,
) -> tuple[int, dict]:
    """A Why? as the page asks it: the photo again as a form, the face's number (and the page's language) in the
    query."""
    form = aiohttp.FormData(default_to_multipart=True)
    if photo is not None:
        form.add_field("image", photo, filename=name, content_type=mime)
    headers = {"Origin": origin} if origin else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "api/why", data=form, headers=headers, params={"face": str(face), **lang_of(lang)}) as r,
    ):
        return r.status, await r.json()


async def forget(url: str, sender: str = ALICE, origin: str | None = None, lang: str | None = None) -> tuple[int, dict]:
    headers = {"X-Forwarded-For": sender, **({"Origin": origin} if origin else {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "api/forget", headers=headers, params=lang_of(lang)) as r,
    ):
        return r.status, await r.json()


def lang_of(lang: str | None) -> dict[str, str]:
    return {"lang": lang} if lang else {}


async def get(url: str, path: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url + path) as r:
        return r.status, await r.text(), dict(r.headers)


async def about(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(url + "api/about") as r:
        return await r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the API --------------------------------------------------------------------------------------


def test_the_answer_offers_each_face_the_chat_bots_choices(site: Site) -> None:
    status, body = run(post_form(site.url, [("image", "two.jpg", TWO_FACES, "image/jpeg")]))
    assert status == 200 and [face["label"] for face in body["faces"]] == ["Eileen", "Twin"], body
    assert body["reply"]["choices"] == [
        [
            {"text": "✓ Eileen", "verdict": "Eileen"},
            {"text": "Twin", "verdict": "Twin"},
            {"text": "Neither of them", "verdict": "neither"},
        ],
        [
            {"text": "Eileen", "verdict": "Eileen"},
            {"text": "✓ Twin", "verdict": "Twin"},
            {"text": "Neither of them", "verdict": "neither"},
        ],
    ]


def test_presses_are_kept_for_review_and_each_sender_counts_once_per_face(site: Site, store: FeedbackStore) -> None:
    async def scenario() -> list[tuple[int, dict]]:
        return [
            await press(site.url, ONE_FACE, 1, "Twin", ALICE),
            await press(site.url, ONE_FACE, 1, "Twin", BOB),
            # Alice changes her mind: her vote is replaced, not added.
            await press(site.url, ONE_FACE, 1, "neither", ALICE),
            await press(site.url, TWO_FACES, 2, "Twin", ALICE),
        ]

    answers = run(scenario())
    assert [status for status, _ in answers] == [200] * 4
    assert all(body["outcome"] == "recorded" and body["message"] == THANKS for _, body in answers)
    assert [body["votes"] for _, body in answers] == [
        {"Twin": 1},
        {"Twin": 2},
        {"Twin": 1, "neither": 1},
        {"Twin": 1},
    ]

    one, two = store.items()
    assert (one.model_label, one.votes) == ("Eileen", {"Twin": 1, "neither": 1})
    assert (one.platform, one.chat_kind) == ("web", "page")
    assert one.model == MODEL_INFO.trained_at and one.status == "waiting"
    assert (two.model_label, two.votes) == ("Twin", {"Twin": 1})
    # What is kept is the face's small chip, not the photo.
    chip = Image.open(io.BytesIO(store.chip(one.id)))
    assert chip.format == "JPEG" and chip.size == (150, 150)

    # /about (and the page's header) now says what users said of this model's answers.
    assert run(about(site.url))["about"].endswith(
        "Users marked 1 of its answers right, 1 wrong and 1 as neither of them."
    )


def test_bad_presses_are_refused_in_words_and_keep_nothing(site: Site, store: FeedbackStore) -> None:
    async def scenario() -> dict[str, tuple[int, str]]:
        answers = {
            "face 0": await press(site.url, ONE_FACE, 0, "Twin"),
            "face x": await press(site.url, ONE_FACE, "x", "Twin"),
            "face 13": await press(site.url, ONE_FACE, 13, "Twin"),
            "face 2 of 1": await press(site.url, ONE_FACE, 2, "Twin"),
            "face 3 of 2": await press(site.url, TWO_FACES, 3, "Twin"),
            "unknown verdict": await press(site.url, ONE_FACE, 1, "Bob"),
            "no verdict": await press(site.url, ONE_FACE, 1, ""),
            "no photo": await press(site.url, None, 1, "Twin"),
            "not an image": await press(site.url, b"hello", 1, "Twin", mime="text/plain", name="notes.txt"),
            "not a photo": await press(site.url, b"<html>not a photo</html>", 1, "Twin"),
            "no face": await press(site.url, jpeg(noise_image()), 1, "Twin"),
            "another site": await press(site.url, ONE_FACE, 1, "Twin", origin="http://evil.example"),
        }
        return {what: (status, body["reason"], body["message"]) for what, (status, body) in answers.items()}

    answers = run(scenario())
    assert {what: answer[:2] for what, answer in answers.items()} == {
        "face 0": (400, "bad_face"),
        "face x": (400, "bad_face"),
        "face 13": (400, "bad_face"),
        "face 2 of 1": (400, "bad_face"),
        "face 3 of 2": (400, "bad_face"),
        "unknown verdict": (400, "bad_verdict"),
        "no verdict": (400, "bad_verdict"),
        "no photo": (400, "no_photo"),
        "not an image": (415, "not_an_image"),
        "not a photo": (422, "unreadable"),
        "no face": (400, "no_face"),
        "another site": (403, "cross_site"),
    }
    assert answers["face 3 of 2"][2] == "That photo has 2 faces: face must be 1 to 2."
    assert answers["unknown verdict"][2] == "verdict must be one of: Eileen, Twin, neither."
    assert answers["no face"][2] == "I can't find a face in this photo."
    assert store.items(None) == []


def test_a_database_that_is_down_costs_the_press_and_never_the_answer(worker) -> None:
    down = FeedbackStore(f"postgresql://doppelbot:secret@127.0.0.1:{free_port()}/feedback", KEY)
    try:
        with Site(feedback_core(worker, down), guards=GUARDS) as site:
            status, body = run(post_form(site.url, [("image", "one.jpg", ONE_FACE, "image/jpeg")]))
            assert status == 200 and body["reply"]["choices"][0][0] == {"text": "✓ Eileen", "verdict": "Eileen"}
            status, body = run(press(site.url, ONE_FACE, 1, "Twin"))
            assert (status, body["reason"], body["message"]) == (503, "unavailable", NOT_SAVED)
            assert "secret" not in body["message"]
            assert run(about(site.url))["about"].startswith("Face by face, I tell whether it is Eileen or Twin.")
    finally:
        down.close()


def test_with_feedback_off_no_choices_are_offered_and_presses_are_not_found(worker) -> None:
    with Site(feedback_core(worker, None), guards=GUARDS) as site:
        _, body = run(post_form(site.url, [("image", "one.jpg", ONE_FACE, "image/jpeg")]))
        assert body["reply"]["choices"] is None and body["reply"]["why"] is True
        status, body = run(why(site.url, ONE_FACE, 1))  # Why? needs no feedback
        assert status == 200 and re.fullmatch(CLOSER.format("Eileen", "Twin"), body["message"]), body
        status, body = run(press(site.url, ONE_FACE, 1, "Twin"))
        assert (status, body["reason"]) == (404, "feedback_off")
        assert run(about(site.url))["feedback"] is False
        status, text, _ = run(get(site.url, "privacy"))
        assert status == 200 and "I keep nothing." in text and "Forget my feedback" not in text
        status, body = run(forget(site.url))
        assert status == 200 and body["message"].startswith("I keep nothing from anyone here")
    # A core with no feedback at all (as in unit tests) is off too.
    with Site(ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO)) as site:
        _, body = run(post_form(site.url, [("image", "one.jpg", ONE_FACE, "image/jpeg")]))
        assert body["reply"]["choices"] is None
        assert run(press(site.url, ONE_FACE, 1, "Twin"))[0] == 404
        assert run(forget(site.url))[0] == 404


def test_why_shows_each_faces_evidence_naming_the_closer_person_and_keeps_nothing(
    site: Site, store: FeedbackStore
) -> None:
    _, answer = run(post_form(site.url, [("image", "two.jpg", TWO_FACES, "image/jpeg")]))
    assert answer["reply"]["why"] is True

    async def scenario() -> list[tuple[int, dict]]:
        return [await why(site.url, TWO_FACES, 1), await why(site.url, TWO_FACES, 2)]

    (first_status, first), (second_status, second) = run(scenario())
    assert (first_status, second_status) == (200, 200)
    assert re.fullmatch(CLOSER.format("Eileen", "Twin"), first["message"]), first["message"]
    assert re.fullmatch(CLOSER.format("Twin", "Eileen"), second["message"]), second["message"]
    evidence = second["evidence"]
    assert (evidence["face"], evidence["label"], evidence["known"]) == (2, "Twin", True)
    assert evidence["distances"]["Twin"] < evidence["distances"]["Eileen"]
    picture = Image.open(io.BytesIO(base64.b64decode(evidence["picture"])))
    assert picture.format == "JPEG" and 300 < picture.width <= 700
    assert store.items(None) == []  # nothing of the photo, nor of the face, is kept


def test_bad_whys_are_refused_in_words(site: Site) -> None:
    async def scenario() -> dict[str, tuple[int, str]]:
        answers = {
            "face 0": await why(site.url, ONE_FACE, 0),
            "face x": await why(site.url, ONE_FACE, "x"),
            "face 2 of 1": await why(site.url, ONE_FACE, 2),
            "no photo": await why(site.url, None, 1),
            "not an image": await why(site.url, b"hello", 1, mime="text/plain", name="notes.txt"),
            "not a photo": await why(site.url, b"<html>not a photo</html>", 1),
            "no face": await why(site.url, jpeg(noise_image()), 1),
            "another site": await why(site.url, ONE_FACE, 1, origin="http://evil.example"),
        }
        return {what: (status, body["reason"]) for what, (status, body) in answers.items()}

    assert run(scenario()) == {
        "face 0": (400, "bad_face"),
        "face x": (400, "bad_face"),
        "face 2 of 1": (400, "bad_face"),
        "no photo": (400, "no_photo"),
        "not an image": (415, "not_an_image"),
        "not a photo": (422, "unreadable"),
        "no face": (400, "no_face"),
        "another site": (403, "cross_site"),
    }


def test_a_why_counts_against_the_rate_limit_as_a_photo_does(worker) -> None:
    with Site(ChatCore(worker, RateLimiter(2), lambda: MODEL_INFO), guards=GUARDS) as site:

        async def scenario() -> list[tuple[int, dict]]:
            return [
                await post_form(site.url, [("image", "one.jpg", ONE_FACE, "image/jpeg")]),
                await why(site.url, ONE_FACE, 1),
                await why(site.url, ONE_FACE, 1),
            ]

        (sent, _), (first, _), (second, body) = run(scenario())
    assert (sent, first, second, body["reason"]) == (200, 200, 429, "rate_limited")
    assert body["message"].startswith("You're asking faster than I can look; please try again in ")


def test_privacy_says_what_is_kept_and_forget_deletes_only_the_senders_faces(site: Site, store: FeedbackStore) -> None:
    status, text, headers = run(get(site.url, "privacy"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for sentence in ("never your whole photo", "deleted after 90 days", "Forget my feedback"):
        assert sentence in text
    assert "<p>Who sees it: only the owner of this bot" in text

    async def scenario() -> list[tuple[int, dict]]:
        await press(site.url, ONE_FACE, 1, "Twin", ALICE)
        await press(site.url, ONE_FACE, 1, "Twin", BOB)
        await press(site.url, TWO_FACES, 1, "neither", ALICE)
        return [
            await forget(site.url, ALICE, origin="http://evil.example"),
            await forget(site.url, ALICE),
            await forget(site.url, ALICE),
        ]

    (evil, _), (status, first), (_, again) = run(scenario())
    assert evil == 403
    assert status == 200 and first["message"].startswith("Done: I deleted the 2 faces you marked")
    assert again["message"] == "You haven't marked any faces, so there was nothing of yours to delete."
    # Bob's vote, and so the face he marked, are still there; the face only Alice marked is gone.
    (left,) = store.items()
    assert left.votes == {"Twin": 1}


def test_presses_whys_forgets_and_their_refusals_speak_the_pages_language(worker, site: Site) -> None:
    de, fr, ru = texts_for("de"), texts_for("fr"), texts_for("ru")
    explained = run(worker.why(TWO_FACES))

    async def scenario() -> dict[str, tuple[int, dict]]:
        return {
            "press": await press(site.url, ONE_FACE, 1, "Twin", lang="de"),
            "face 3 of 2": await press(site.url, TWO_FACES, 3, "Twin", lang="ru"),
            "why": await why(site.url, TWO_FACES, 2, lang="fr"),
            "why of no photo": await why(site.url, None, 1, lang="fr"),
            "forget": await forget(site.url, lang="de"),
            "forget again": await forget(site.url, lang="es"),
        }

    answers = run(scenario())
    assert answers["press"] == (200, {"outcome": "recorded", "message": de.gettext(THANKS), "votes": {"Twin": 1}})
    status, body = answers["face 3 of 2"]
    assert (status, body["reason"]) == (400, "bad_face")
    assert body["message"] == ru.ngettext(
        "That photo has {n} face: face must be 1.", "That photo has {n} faces: face must be 1 to {n}.", 2
    )
    status, body = answers["why"]
    assert status == 200
    assert body["message"] == evidence_line(explained.evidence[1], explained.answer.faces[1], fr)
    assert body["evidence"]["text"] == explained.evidence[1].text  # the JSON's fields stay as they are
    assert answers["why of no photo"][1]["message"] == fr.gettext("Send the photo again as the form field `image`.")
    assert answers["forget"][1]["message"] == de.ngettext(
        "Done: I deleted the {n} face you marked, and your votes. Nothing else of yours is kept.",
        "Done: I deleted the {n} faces you marked, and your votes. Nothing else of yours is kept.",
        1,
    )
    assert answers["forget again"][1]["message"] == texts_for("es").gettext(
        "You haven't marked any faces, so there was nothing of yours to delete."
    )
    # Needs the catalogs: none of it is English.
    assert answers["press"][1]["message"] != THANKS and not answers["why"][1]["message"].startswith("Closer to")


def test_the_privacy_page_speaks_the_pages_language(worker, store: FeedbackStore, site: Site) -> None:
    fr = texts_for("fr")
    status, text, headers = run(get(site.url, "privacy?lang=fr"))
    assert status == 200 and '<html lang="fr">' in text and headers["Content-Language"] == "fr"
    kept = feedback_core(worker, store).privacy_text(fr)  # the core's words, with feedback on and 90 days
    assert all(f"<p>{html.escape(line)}</p>" in text for line in kept.splitlines() if line.strip())
    assert f"<strong>{html.escape(fr.gettext('Forget my feedback'))}</strong>" in text
    assert f'<a href="./?lang=fr">{html.escape(fr.gettext("Back to the page"))}</a>' in text
    assert "Who sees it" not in text, "needs the catalogs"


# -- the page -------------------------------------------------------------------------------------


def test_the_page_shows_the_choices_under_each_face_and_thanks_for_a_press(
    site: Site, store: FeedbackStore, page: Page
) -> None:
    page.goto(site.url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    expect(page.locator("#forget")).to_be_visible()
    page.set_input_files("#file", files=[{"name": "two.jpg", "mimeType": "image/jpeg", "buffer": TWO_FACES}])
    page.wait_for_selector("body[data-state=answered]", timeout=60_000)

    faces = page.locator(".face")
    assert faces.nth(0).locator("button.choice").all_inner_texts() == ["✓ Eileen", "Twin", "Neither of them"]
    assert faces.nth(1).locator("button.choice").all_inner_texts() == ["Eileen", "✓ Twin", "Neither of them"]

    second = faces.nth(1)
    second.get_by_role("button", name="Neither of them").click()
    expect(second.locator(".said")).to_have_text("Thanks: sent for review")
    expect(second.locator("button.chosen")).to_have_text("Neither of them")
    if target := os.environ.get("DOPPELBOT_FEEDBACK_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)
    (item,) = store.items()
    assert (item.model_label, item.votes) == ("Twin", {"neither": 1})

    # The privacy page is one click away, and "Forget my feedback" deletes the press.
    page.get_by_role("button", name="Forget my feedback").click()
    expect(page.locator("#forgotten")).to_have_text(re.compile(r"^Done: I deleted the 1 face you marked"))
    assert store.items(None) == []
    page.get_by_role("link", name="Privacy").click()
    expect(page.locator("main")).to_contain_text("Who sees it: only the owner of this bot")


def test_the_pages_why_link_shows_the_picture_and_the_line_under_its_face(site: Site, page: Page) -> None:
    page.goto(site.url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    page.set_input_files("#file", files=[{"name": "two.jpg", "mimeType": "image/jpeg", "buffer": TWO_FACES}])
    page.wait_for_selector("body[data-state=answered]", timeout=60_000)
    faces = page.locator(".face")
    expect(faces.nth(1).locator(".evidence")).to_be_hidden()

    second = faces.nth(1)
    second.get_by_role("button", name="Why?").click()
    shown = second.locator(".evidence")
    expect(shown.locator(".because")).to_have_text(re.compile(CLOSER.format("Twin", "Eileen")), timeout=60_000)
    expect(shown.locator("img")).to_be_visible()
    assert shown.locator("img").evaluate("img => img.complete && img.naturalWidth > 300")
    expect(second.get_by_role("button", name="Why?")).to_have_attribute("aria-expanded", "true")
    expect(faces.nth(0).locator(".evidence")).to_be_hidden()  # only the face asked about
    if target := os.environ.get("DOPPELBOT_WHY_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)
    # Shown once, the link folds it away and back without asking again.
    second.get_by_role("button", name="Why?").click()
    expect(shown).to_be_hidden()
    second.get_by_role("button", name="Why?").click()
    expect(shown.locator("img")).to_be_visible()


class _Answers:
    """Stands in for the worker: answers each photo with the next of `answers` (the real answers, made over)."""

    def __init__(self, answers: list[PhotoAnswer]) -> None:
        self.answers = answers

    async def classify(self, data: bytes) -> Result:
        return Result(self.answers.pop(0))


def test_the_page_draws_faces_it_does_not_name_grey_with_their_reason(worker, page: Page) -> None:
    answer = run(worker.classify(TWO_FACES)).answer  # Playwright keeps an event loop running on this thread
    small = "This face is only 30 pixels wide: send a closer photo."
    unnamed = dataclasses.replace(
        answer.faces[1], quality="too_small", sure=False, measures={"width": 30.0}, reason=small
    )
    named_and_not = dataclasses.replace(answer, faces=[answer.faces[0], unnamed])
    turned_away = PhotoAnswer(
        "no_face", turned_away=[TurnedAway(answer.faces[0].box, "too_small", {"width": 30.0}, small)]
    )
    core = ChatCore(_Answers([named_and_not, turned_away]), RateLimiter(1000), lambda: MODEL_INFO)
    with Site(core, guards=GUARDS) as site:
        page.goto(site.url)
        expect(page.locator("body")).to_have_attribute("data-state", "ready")
        page.set_input_files("#file", files=[{"name": "two.jpg", "mimeType": "image/jpeg", "buffer": TWO_FACES}])
        page.wait_for_selector("body[data-state=answered]", timeout=60_000)
        boxes, faces = page.locator(".box"), page.locator(".face")
        assert [boxes.nth(i).get_attribute("class") for i in range(2)] == ["box sure", "box unnamed"]
        grey = boxes.nth(1).evaluate("box => getComputedStyle(box).borderTopColor")
        assert grey == faces.nth(1).evaluate("face => getComputedStyle(face).borderLeftColor") == "rgb(154, 160, 166)"
        expect(faces.nth(1)).to_have_class(re.compile(r"\bunnamed\b"))
        expect(faces.nth(1).locator(".words")).to_contain_text("Not named")

        # A photo whose only face can't be named: the page says why, and still shows where that face is.
        page.set_input_files("#file", files=[{"name": "one.jpg", "mimeType": "image/jpeg", "buffer": ONE_FACE}])
        expect(page.locator("#message")).to_have_text(f"I found a face but can't name it. {small}")
        expect(page.locator(".box.unnamed")).to_have_count(1)
        assert page.locator(".box.unnamed").get_attribute("title") == small
        expect(page.locator(".face")).to_have_count(0)
