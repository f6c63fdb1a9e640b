"""The owner's review page at /review in Debian's Chromium (Playwright), on the real aiohttp app and a real
feedback store (SQLite in a temporary folder) holding faces users marked: the token asked once, the grid of
waiting faces with the model's answer, the users' votes and the evidence the model's answer rests on (from the
kept chip, on the real worker), approve / reject / relabel by click and by key, and the guards around it (no
REVIEW_TOKEN, no page; changes need the session's CSRF token and this page's Origin).

Set DOPPELBOT_REVIEW_SCREENSHOT=docs/review-page.png to save the README's screenshot while the tests run.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, ImageEnhance
from playwright.sync_api import Browser, Page, expect

from bot.core import ChatCore, ModelInfo, RateLimiter
from bot.feedback import Feedback
from bot.web_review import CSRF_HEADER, SESSION_COOKIE
from feedback.store import FaceSample, FeedbackStore, ModelSaid, Vote
from testkit.imagery import face_crop, jpeg, stranger
from testkit.webpage import Site, run

TOKEN = "owner's review token 4f9c2a"
MODEL_INFO = ModelInfo(["Eileen", "Twin"], 0.975, "2025-06-01T10:00:00+00:00", 40)
KEY = b"a test key of at least sixteen bytes"
# The faces users marked, oldest first: what the model said (label, confidence, distance, known), where, and
# each user's verdict.
MARKED = [
    ("Eileen", 0.97, 0.31, True, "telegram", "private", {"u1": "Eileen", "u2": "Eileen", "u3": "neither"}),
    ("Eileen", 0.62, 0.38, True, "discord", "guild", {"u1": "Twin"}),
    ("Twin", 0.99, 0.22, True, "web", "page", {"u4": "Twin", "u5": "Twin"}),
    ("Eileen", 0.55, 0.70, False, "telegram", "group", {"u2": "neither", "u6": "neither"}),
    ("Eileen", 0.91, 0.35, True, "telegram", "group", {"u7": "Twin", "u8": "Eileen"}),
    ("Twin", 0.88, 0.33, True, "discord", "dm", {"u9": "Eileen"}),
    ("Eileen", 0.84, 0.36, True, "web", "page", {"u1": "Eileen"}),
]


def chip(n: int) -> bytes:
    """A small synthetic face chip, 150x150 like the aligned ones a press keeps, in a few lights: the stranger for
    the face the model did not know, else the astronaut or her twin, as the users' first verdict says."""
    if MARKED[n][3] is False:
        face = stranger().crop((110, 40, 420, 390))
    else:
        face = face_crop(twin=next(iter(MARKED[n][6].values())) == "Twin")
    face = ImageEnhance.Brightness(face).enhance(0.85 + 0.06 * n)
    return jpeg(face.resize((150, 150), Image.Resampling.LANCZOS))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", KEY)
    for n, (label, confidence, distance, known, platform, kind, votes) in enumerate(MARKED):
        sample = FaceSample(chip(n), None, ModelSaid(label, confidence, distance, known, MODEL_INFO.trained_at))
        for i, (user, verdict) in enumerate(votes.items()):
            store.record(Vote(f"{platform}:1:{n}:1", verdict, platform, kind, user), sample if i == 0 else None)
    yield store
    store.close()


async def never_examined(data: bytes):
    raise AssertionError("the review page never looks at photos")


def review_core(store: FeedbackStore | None) -> ChatCore:
    """A core whose feedback is kept in `store`; no photo is answered here, so it needs no model."""
    feedback = Feedback(store, never_examined, lambda: list(MODEL_INFO.classes), lambda: MODEL_INFO.trained_at)
    return ChatCore(None, RateLimiter(1000), lambda: MODEL_INFO, feedback=feedback)


@pytest.fixture
def site(store: FeedbackStore) -> Iterator[Site]:
    with Site(review_core(store), review_token=TOKEN) as running:
        yield running


def sign_in(page: Page, site: Site, token: str = TOKEN) -> int:
    """Fill the token's form and send it, as the owner does; the status of the answer to the form."""
    page.fill("input[name=token]", token)
    with page.expect_response(lambda r: r.url.endswith("/review/login")) as answer:
        page.click("button[type=submit]")
    return answer.value.status


def statuses(store: FeedbackStore) -> dict[int, tuple[str, str | None]]:
    return {item.id: (item.status, item.label) for item in store.items(None)}


# -- the page -------------------------------------------------------------------------------------


def test_the_token_is_asked_once_and_a_wrong_one_is_refused(site: Site, browser: Browser, page: Page) -> None:
    page.goto(site.url + "review")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert page.locator(".card").count() == 0

    assert sign_in(page, site, "guess") == 403
    expect(page.locator(".error")).to_have_text("That token isn't right.")
    assert page.context.cookies() == []

    assert sign_in(page, site) == 303
    expect(page.locator(".card")).to_have_count(len(MARKED))
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        SESSION_COOKIE,
        True,
        "Strict",
        "/review",
    )
    assert TOKEN not in cookie["value"] and "4f9c2a" not in cookie["value"]

    # Asked once: the page opens straight away from now on; another browser is asked.
    page.goto(site.url + "review")
    expect(page.locator(".card")).to_have_count(len(MARKED))
    other = browser.new_context().new_page()
    other.goto(site.url + "review")
    expect(other.locator("input[name=token]")).to_be_visible()
    other.context.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("input[name=token]")).to_be_visible()


def test_the_grid_shows_each_waiting_face_with_the_models_answer_and_the_users_votes(site: Site, page: Page) -> None:
    page.goto(site.url + "review")
    sign_in(page, site)
    cards = page.locator(".card")
    expect(cards).to_have_count(len(MARKED))
    expect(page.locator("#count")).to_have_text(f"{len(MARKED)} faces")
    first = cards.nth(0)
    expect(first.locator(".label")).to_have_text("Users say: Eileen")
    expect(first.locator(".model")).to_have_text("Model: Eileen, 97% · distance 0.31")
    expect(first.locator(".votes")).to_have_text("Users: Eileen 2 · neither of them 1")
    expect(first.locator(".meta")).to_contain_text("telegram private")
    expect(cards.nth(1).locator(".label")).to_have_text("Users say: Twin")
    stranger_card = cards.nth(3)
    expect(stranger_card.locator(".model")).to_have_text("Model: someone else (closest: Eileen) · distance 0.70")
    expect(stranger_card.locator(".label")).to_have_text("Users say: neither of them")
    assert cards.nth(0).locator(".relabel button").all_inner_texts() == ["1 Eileen", "2 Twin", "n Neither"]
    # Every chip came through (served only with the session's cookie).
    page.wait_for_function(
        "[...document.querySelectorAll('.card > img')].every((img) => img.complete && img.naturalWidth === 150)"
    )
    # No model answers here, so no evidence: each face says so, and the page still works.
    expect(first.locator(".because")).to_have_text("Why: The model answering here can't show what its answers rest on.")

    if target := os.environ.get("DOPPELBOT_REVIEW_SCREENSHOT"):
        page.keyboard.press("j")  # the selected face is outlined, as the keys move it
        page.screenshot(path=target, full_page=True)


def test_approve_reject_and_relabel_by_click_and_by_key_change_the_store(
    site: Site, store: FeedbackStore, page: Page
) -> None:
    page.goto(site.url + "review")
    sign_in(page, site)
    cards = page.locator(".card")
    expect(cards).to_have_count(len(MARKED))
    ids = [int(cards.nth(i).get_attribute("data-id")) for i in range(len(MARKED))]
    selected = page.locator(".card.selected")

    def after(n_left: int) -> None:
        expect(cards).to_have_count(n_left)
        expect(page.locator("body")).to_have_attribute("data-state", "ready")

    # The keys move the selection, and act on it.
    page.locator("h1").click()
    expect(selected).to_have_attribute("data-id", str(ids[0]))
    for key, index in (("j", 1), ("ArrowRight", 2), ("k", 1), ("ArrowLeft", 0)):
        page.keyboard.press(key)
        expect(selected).to_have_attribute("data-id", str(ids[index]))

    cards.nth(0).get_by_role("button", name="Approve").click()  # as the users said: Eileen
    after(6)
    expect(page.locator("#said")).to_have_text(f"Approved #{ids[0]} as Eileen.")
    page.keyboard.press("a")  # approve, by key: as the user said, Twin
    after(5)
    cards.nth(0).get_by_role("button", name="Reject").click()
    after(4)
    page.keyboard.press("r")
    after(3)
    cards.nth(0).get_by_role("button", name="Twin").click()  # relabel by click
    after(2)
    page.keyboard.press("1")  # relabel to the first class, Eileen, by key
    after(1)
    page.keyboard.press("n")  # neither of them
    after(0)
    expect(page.locator("#empty")).to_be_visible()

    assert statuses(store) == {
        ids[0]: ("approved", "Eileen"),
        ids[1]: ("approved", "Twin"),
        ids[2]: ("rejected", "Twin"),
        ids[3]: ("rejected", None),
        ids[4]: ("approved", "Twin"),
        ids[5]: ("approved", "Eileen"),
        ids[6]: ("approved", None),
    }
    # What training may use: the approved faces with the owner's labels, none of the rejected.
    assert {face.id: face.label for face in store.approved()} == {
        ids[0]: "Eileen",
        ids[1]: "Twin",
        ids[4]: "Twin",
        ids[5]: "Eileen",
        ids[6]: None,
    }

    # Reviewed faces are one choice away, with their status.
    page.select_option("#status", "all")
    expect(cards).to_have_count(len(MARKED))
    expect(cards.nth(2).locator(".status")).to_have_text("rejected")


# -- the guards -----------------------------------------------------------------------------------


async def http(
    method: str, url: str, cookie: str | None = None, json: dict | None = None, **headers: str
) -> tuple[int, dict | bytes, dict[str, str]]:
    """One request, with the session's cookie when given; the JSON (or the bytes) of the answer."""
    if cookie is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    async with aiohttp.ClientSession() as session, session.request(method, url, json=json, headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, dict(r.headers)


async def login(url: str, token: str = TOKEN, **headers: str) -> tuple[int, str | None, str]:
    """The form's POST: its status, the session cookie it set, and the Set-Cookie header as sent."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "review/login", data={"token": token}, allow_redirects=False, headers=headers) as r,
    ):
        morsel = r.cookies.get(SESSION_COOKIE)
        return r.status, morsel.value if morsel else None, r.headers.get("Set-Cookie", "")


def test_changes_need_the_sessions_csrf_token_and_this_pages_origin(site: Site, store: FeedbackStore) -> None:
    url = site.url
    face = store.items()[0].id
    approve = url + "review/api/approve"
    ours = {"Origin": url.rstrip("/")}

    async def scenario() -> dict[str, int]:
        status, cookie, set_cookie = await login(url, **ours)
        assert status == 303 and cookie and TOKEN not in cookie
        assert {"HttpOnly", "SameSite=Strict", "Path=/review"} <= {p.strip() for p in set_cookie.split(";")}
        _, listing, _ = await http("GET", url + "review/api/items", cookie)
        csrf = listing["csrf"]
        with_csrf = {CSRF_HEADER: csrf}
        forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
        chip_status, chip, chip_headers = await http("GET", url + f"review/chip/{face}", cookie)
        assert chip[:2] == b"\xff\xd8" and chip_headers["Cache-Control"] == "no-store"
        answers = {
            "no cookie": (await http("POST", approve, None, {"ids": [face]}, **{CSRF_HEADER: csrf}, **ours))[0],
            "forged cookie": (await http("POST", approve, forged, {"ids": [face]}, **{CSRF_HEADER: csrf}))[0],
            "no csrf": (await http("POST", approve, cookie, {"ids": [face]}, **ours))[0],
            "wrong csrf": (await http("POST", approve, cookie, {"ids": [face]}, **{CSRF_HEADER: "0" * 64}))[0],
            "other origin": (
                await http(
                    "POST", approve, cookie, {"ids": [face]}, **{CSRF_HEADER: csrf}, Origin="http://evil.example"
                )
            )[0],
            "chip without cookie": (await http("GET", url + f"review/chip/{face}"))[0],
            "items without cookie": (await http("GET", url + "review/api/items"))[0],
            "chip": chip_status,
            "bad label": (
                await http("POST", url + "review/api/relabel", cookie, {"id": face, "label": "Bob"}, **with_csrf)
            )[0],
            "login from elsewhere": (await login(url, Origin="http://evil.example"))[0],
            "another name": (await http("GET", url + "review", Host=f"evil.example:{site.port}"))[0],
        }
        unchanged = store.items()[0].status
        answers["all refused, nothing changed"] = unchanged == "waiting"
        answers["with both"] = (await http("POST", approve, cookie, {"ids": [face]}, **{CSRF_HEADER: csrf}, **ours))[0]
        return answers

    assert run(scenario()) == {
        "no cookie": 401,
        "forged cookie": 401,
        "no csrf": 403,
        "wrong csrf": 403,
        "other origin": 403,
        "chip without cookie": 401,
        "items without cookie": 401,
        "chip": 200,
        "bad label": 400,
        "login from elsewhere": 403,
        "another name": 421,
        "all refused, nothing changed": True,
        "with both": 200,
    }
    assert statuses(store)[face] == ("approved", "Eileen")


def test_a_run_of_wrong_tokens_is_slowed_down(site: Site) -> None:
    async def scenario() -> list[int]:
        return [(await login(site.url, f"guess {i}"))[0] for i in range(10)] + [(await login(site.url))[0]]

    assert run(scenario()) == [403] * 10 + [429]


def test_without_review_token_there_is_no_review_page(store: FeedbackStore) -> None:
    with Site(review_core(store)) as site:

        async def scenario() -> list[int]:
            return [
                (await http("GET", site.url + "review"))[0],
                (await login(site.url))[0],
                (await http("GET", site.url + "review/api/items"))[0],
                (await http("GET", site.url + f"review/chip/{store.items()[0].id}"))[0],
            ]

        assert run(scenario()) == [404, 404, 404, 404]

    # With the token but FEEDBACK=off there is nothing to review, and the page says so.
    with Site(review_core(None), review_token=TOKEN) as site:

        async def off() -> tuple[int, dict]:
            _, cookie, _ = await login(site.url)
            status, body, _ = await http("GET", site.url + "review/api/items", cookie)
            return status, body

        status, body = run(off())
        assert (status, body["reason"]) == (404, "feedback_off")


def test_each_face_shows_the_evidence_of_its_kept_chip(worker, tmp_path: Path, page: Page) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'evidence.sqlite3'}", KEY)
    try:
        # A face kept as a press keeps it: the aligned chip the model looked at.
        examined = run(worker.examine(jpeg(face_crop())))
        said = ModelSaid("Eileen", 0.97, 0.3, True, MODEL_INFO.trained_at)
        store.record(Vote("web:x:1", "Twin", "web", "page", "u1"), FaceSample(examined.chips[0], None, said))
        [face] = store.items()
        feedback = Feedback(store, worker.examine, lambda: list(MODEL_INFO.classes), why=worker.why)
        core = ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO, feedback=feedback)
        with Site(core, review_token=TOKEN) as site:
            page.goto(site.url + "review")
            sign_in(page, site)
            card = page.locator(".card")
            expect(card).to_have_count(1)
            line = re.compile(r"Why: Closer to Eileen's photos \(0\.\d\d\) than to Twin's \(0\.\d\d\)\.")
            expect(card.locator(".because")).to_have_text(line, timeout=60_000)
            picture = card.locator(".evidence img")
            expect(picture).to_be_visible()
            assert picture.evaluate("img => img.complete && img.naturalWidth > 300")

            async def api() -> tuple[tuple, tuple, tuple]:
                _, cookie, _ = await login(site.url)
                return (
                    await http("GET", site.url + f"review/api/why/{face.id}", cookie),
                    await http("GET", site.url + f"review/api/why/{face.id}"),
                    await http("GET", site.url + f"review/api/why/{face.id + 1}", cookie),
                )

            (status, body, headers), (signed_out, _, _), (missing, _, _) = run(api())
        assert status == 200 and body["evidence"]["label"] == "Eileen" and headers["Cache-Control"] == "no-store"
        assert Image.open(io.BytesIO(base64.b64decode(body["evidence"]["picture"]))).format == "JPEG"
        assert (signed_out, missing) == (401, 404)
        assert statuses(store) == {face.id: ("waiting", "Twin")}  # looking changes nothing
    finally:
        store.close()
