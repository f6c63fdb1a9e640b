"""The web page in the reader's language, for real: the page, `/api/about`, `/api/classify?lang=`, `/privacy` and the
feedback routes on the real aiohttp adapter and core; the page in Debian's Chromium with `Accept-Language: fr`, and
its language picker. Set DOPPELBOT_FR_SCREENSHOT=docs/web-page-fr.png to save the README's French screenshot.

Texts are compared with the catalogs' (`texts_for(code).gettext(...)`), so these tests hold for any wording; the
assertions marked "needs the catalogs" also check that the text is not English, which holds once they are filled.
"""

from __future__ import annotations

import gettext
import json
import os
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from playwright.sync_api import Browser, Page, expect

from bot import i18n
from bot.core import ChatCore, ModelInfo, RateLimiter
from bot.feedback import Feedback
from bot.i18n import ENGLISH, LANGUAGES, texts_for
from bot.replies import describe
from bot.web_common import accepted_languages
from bot.web_page import LANGUAGE_NAMES, PAGE_TEXTS, SCRIPT_TEXTS, TEMPLATE, render_page
from feedback.store import FeedbackStore
from model.answers import PhotoAnswer
from testkit.imagery import jpeg, scene
from testkit.webpage import CHROMIUM_PAGE_SIZE, Site, get_text, post_with_headers, run

MODEL_INFO = ModelInfo(["Eileen", "Twin"], 0.975, "2025-06-01T10:00:00+00:00", 40)
OTHERS = [code for code in LANGUAGES if code != ENGLISH]
ANSWER_TIMEOUT_MS = 60_000
FR = texts_for("fr")


def page_core(worker=None, default_language: str = ENGLISH) -> ChatCore:
    return ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO, default_language=default_language)


@pytest.fixture(scope="module")
def site(worker) -> Iterator[Site]:
    with Site(page_core(worker)) as running:
        yield running


def html_lang(text: str) -> str:
    match = re.search(r'<html lang="([^"]+)">', text)
    assert match, text[:300]
    return match.group(1)


def script_block(page: str) -> dict:
    """The page's JSON block of the words its script writes."""
    return json.loads(re.search(r'<script id="page-texts" type="application/json">(.*?)</script>', page).group(1))


# -- which language ---------------------------------------------------------------------------------


def test_accept_language_is_read_by_q_value_then_in_the_order_written() -> None:
    assert accepted_languages("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == ["fr-CH", "fr", "en", "de"]
    # q-values outrank the order: a browser may write them in any order.
    assert accepted_languages("en;q=0.5, ru;q=0.9,de") == ["de", "ru", "en"]
    assert accepted_languages("es;q=0.8, pt-BR;q=0.8") == ["es", "pt-BR"]  # equal: as written
    # q=0 means "not this one"; a malformed q is no preference at all; empty items and "*" say nothing.
    assert accepted_languages("de;q=0, fr;q=0.1, ru;q=abc, it;q=nan, ja;q=2, , *") == ["fr"]
    assert accepted_languages("DE;Q=0.5 , es ; q=0.9") == ["es", "DE"]
    assert accepted_languages("") == accepted_languages(None) == []


def test_the_page_speaks_the_query_then_the_cookie_then_accept_language_then_the_default() -> None:
    cases = [  # (query, cookie, Accept-Language, the page's language)
        (None, None, None, "en"),
        (None, None, "fr-CH, fr;q=0.9, en;q=0.8", "fr"),
        (None, None, "en;q=0.5, ru;q=0.9", "ru"),  # by q, not by the order written
        (None, None, "zh-CN, ja;q=0.9, pt;q=0.8", "pt-BR"),  # the first one we speak
        (None, None, "de;q=0, fr;q=0.1", "fr"),  # q=0: not German
        (None, None, "zh-CN, *", "en"),  # none we speak: the default
        (None, "es", "fr", "es"),  # the picker's choice outranks the browser's
        (None, "pt-BR", None, "pt-BR"),
        (None, "xx", "de", "de"),  # a cookie naming no language of ours is passed over
        ("ru", "es", "fr", "ru"),  # ?lang= outranks everything
        ("pt_BR", None, None, "pt-BR"),
        ("zz", "es", "fr", "es"),  # one we do not speak is passed over
    ]

    async def pages(url: str) -> list[tuple[str, str, str]]:
        seen = []
        for query, cookie, accept, _ in cases:
            headers = {"Accept-Language": accept} if accept else {}
            cookies = {"lang": cookie} if cookie else {}
            path = f"?lang={query}" if query else ""
            async with aiohttp.ClientSession(cookies=cookies) as session, session.get(url + path, headers=headers) as r:
                seen.append((html_lang(await r.text()), r.headers["Content-Language"], r.headers["Vary"]))
        return seen

    with Site(page_core()) as site:
        seen = run(pages(site.url))
    assert [lang for lang, _, _ in seen] == [expected for *_, expected in cases]
    assert all(lang == content_language for lang, content_language, _ in seen)
    assert {vary for _, _, vary in seen} == {"Accept-Language, Cookie"}

    # With nothing said, the bot's DEFAULT_LANGUAGE; a browser's language still comes first.
    with Site(page_core(default_language="de")) as german:
        assert html_lang(run(get_text(german.url))[1]) == "de"
        assert html_lang(run(get_text(german.url, {"Accept-Language": "es"}))[1]) == "es"
        _, about = run(get_text(german.url + "api/about", {"Accept-Language": "xx"}))
        assert json.loads(about)["about"] == page_core().about_text(texts_for("de"))


def test_the_picker_lists_every_language_in_its_own_name_with_the_pages_selected() -> None:
    text = render_page("ru")
    options = re.findall(r'<option value="([^"]+)" lang="[^"]+"( selected)?>([^<]+)</option>', text)
    assert [(value, name) for value, _, name in options] == [
        ("en", "English"),
        ("es", "Español"),
        ("pt-BR", "Português (Brasil)"),
        ("ru", "Русский"),
        ("de", "Deutsch"),
        ("fr", "Français"),
    ]
    assert [value for value, selected, _ in options if selected] == ["ru"]
    assert set(LANGUAGE_NAMES) == set(LANGUAGES)


# -- the page's words ---------------------------------------------------------------------------------


class _Words(HTMLParser):
    """The words a reader sees in a page: its text, and the attributes read out or shown (alt, title, labels)."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.words += [v for k, v in attrs if k in ("alt", "title", "aria-label", "placeholder") and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script and data.strip():
            self.words.append(data.strip())


def test_the_template_has_no_words_of_its_own_and_every_text_has_its_place() -> None:
    template = TEMPLATE.read_text(encoding="utf-8")
    parser = _Words()
    parser.feed(template)
    # Only the bot's name and a separator are the template's; every other word is a {{ name }} the server fills.
    assert {w for w in parser.words if not re.fullmatch(r"\{\{ \w+ \}\}", w)} == {"doppelbot", "·"}
    names = set(re.findall(r"\{\{ (\w+) \}\}", template))
    assert set(PAGE_TEXTS) <= names
    assert names - set(PAGE_TEXTS) == {"lang", "query", "languages", "script_texts"}
    page = render_page(ENGLISH)
    assert not re.search(r"\{\{\s*\w+\s*\}\}", page)
    for text in PAGE_TEXTS.values():
        assert text.replace("'", "&#x27;") in page


def test_page_js_writes_no_english_of_its_own() -> None:
    """Its sentences come from SCRIPT_TEXTS: a string literal that reads as words would be left in English."""
    script = (TEMPLATE.parent / "page.js").read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", script)  # comments are for developers
    literals = re.findall(r'"((?:[^"\\\n]|\\.)*)"|`((?:[^`\\]|\\.)*)`', code)
    worded = [
        text
        for pair in literals
        for text in pair
        if re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}|[A-Za-z][.?!…]$", text)
    ]
    assert worded == []
    used = set(re.findall(r'\bt\("(\w+)"', code))
    assert used == set(SCRIPT_TEXTS)


@pytest.mark.parametrize("code", OTHERS)
def test_a_page_in_another_language_leaves_no_english_text(code: str) -> None:
    """Needs the catalogs: every text of the page and its script is translated, and none is left in English."""
    tr = texts_for(code)
    page = render_page(code)
    assert html_lang(page) == tr.tag
    script = script_block(page)
    assert script["language"] == code and script["tag"] == tr.tag
    assert script["texts"] == {key: tr.gettext(text) for key, text in SCRIPT_TEXTS.items()}
    parser = _Words()
    parser.feed(page)
    for key, text in PAGE_TEXTS.items():
        assert tr.gettext(text) in [*parser.words, *(w.strip() for w in parser.words)] or key == "keeping"
    untranslated = [text for text in [*PAGE_TEXTS.values(), *SCRIPT_TEXTS.values()] if tr.gettext(text) == text]
    assert untranslated == [], f"{code}: left in English"
    left = [text for text in [*PAGE_TEXTS.values(), *SCRIPT_TEXTS.values()] if text in page]
    assert left == [], f"{code}: English in the page"


# -- the API ------------------------------------------------------------------------------------------


def test_classify_answers_in_the_language_asked_for_and_its_fields_stay_as_they_are(site: Site) -> None:
    photo = jpeg(scene(2, twins=(False, True)))

    async def answers() -> dict[str, tuple[int, dict, dict]]:
        return {
            "en": await post_with_headers(site.url, photo),
            "es": await post_with_headers(site.url, photo, query="lang=es"),
            "ru by the browser": await post_with_headers(site.url, photo, **{"Accept-Language": "ru, en;q=0.5"}),
            "de over the browser": await post_with_headers(
                site.url, photo, query="lang=de", **{"Accept-Language": "ru"}
            ),
            "refused in fr": await post_with_headers(site.url, b"hello", "text/plain", query="lang=fr"),
        }

    got = run(answers())
    english = got["en"][1]
    for key, code in (("es", "es"), ("ru by the browser", "ru"), ("de over the browser", "de")):
        status, body, _ = got[key]
        assert status == 200
        reply = body.pop("reply")
        assert body == {k: v for k, v in english.items() if k != "reply"}  # labels, boxes, numbers: unchanged
        tr = texts_for(code)
        expected = describe(PhotoAnswer.from_json(body), tr=tr)
        assert reply["text"] == expected.text
        assert reply["summary"] == tr.ngettext("{n} face", "{n} faces", 2)
        assert reply["text"] != english["reply"]["text"], f"{code}: needs the catalogs"
    assert english["reply"]["summary"] == "2 faces"
    status, refused, _ = got["refused in fr"]
    assert (status, refused["reason"]) == (415, "not_an_image")
    assert refused["message"] == page_core().not_an_image(FR).text
    assert refused["message"] != page_core().not_an_image().text, "needs the catalogs"


def test_refusals_of_the_page_itself_are_in_the_language_asked_for(site: Site) -> None:
    de, ru = texts_for("de"), texts_for("ru")

    async def scenario() -> list[tuple[int, dict]]:
        form = aiohttp.FormData()
        form.add_field("caption", b"hi", filename="a.txt", content_type="text/plain")
        async with aiohttp.ClientSession() as session:
            answers = []
            async with session.post(site.url + "api/classify", data=form, headers={"Accept-Language": "ru"}) as r:
                answers.append((r.status, await r.json()))
            async with session.get(site.url + "api/about?lang=de", headers={"Host": "evil.example"}) as r:
                answers.append((r.status, await r.json()))
        status, body, _ = await post_with_headers(
            site.url, jpeg(scene(1)), query="lang=de", Origin="http://evil.example"
        )
        return [*answers, (status, body)]

    (no_photo, no_photo_body), (host, host_body), (cross, cross_body) = run(scenario())
    assert (no_photo, no_photo_body["reason"]) == (400, "no_photo")
    assert no_photo_body["message"] == ru.gettext("Send the photo as the request body, or as the form field `image`.")
    assert (host, host_body["reason"]) == (421, "unknown_host")
    assert host_body["message"] == de.gettext(
        "This server does not answer to the name {host}; to reach it by that name, add it to WEB_ALLOWED_HOSTS.",
        host="'evil.example'",
    )
    assert (cross, cross_body["message"]) == (403, de.gettext("Photos can only be sent from this page."))
    assert cross_body["message"] != "Photos can only be sent from this page.", "needs the catalogs"


# -- every word through the catalogs: a pseudo-language ------------------------------------------------


class _Marked(gettext.NullTranslations):
    """A catalog that marks every text it translates: ⟦That file isn't an image.⟧. A word on the page without
    the marks never went through a catalog, and would stay English in every language."""

    def gettext(self, message: str) -> str:
        return f"⟦{message}⟧"

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return f"⟦{singular if n == 1 else plural}⟧"


@pytest.fixture
def marked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every language but English speaks the marked pseudo-language while the test runs."""
    real = i18n._catalog
    monkeypatch.setattr(i18n, "_catalog", lambda code: real(code) if code == ENGLISH else _Marked())
    texts_for.cache_clear()
    render_page.cache_clear()
    yield
    monkeypatch.undo()
    texts_for.cache_clear()
    render_page.cache_clear()


# What the page shows that is no text of ours: the bot's name, the classes' names (never translated), numbers and
# percentages, the languages' own names, separators.
_NOT_TEXTS = re.compile(
    r"doppelbot|[✓·\s\d%.,]*(Eileen|Twin)?[\s\d%.,]*|" + "|".join(map(re.escape, LANGUAGE_NAMES.values()))
)

_SHOWN_WORDS = """() => {
    const words = [];
    const wholes = new Set(); // a sentence with a word in bold is one text, not three
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (node.parentElement.closest("[hidden], script, option")) continue;
        const whole = node.parentElement.closest("p:has(strong)");
        if (whole && wholes.has(whole)) continue;
        if (whole) wholes.add(whole);
        const text = (whole || node).textContent.trim();
        if (text) words.push(text);
    }
    for (const element of document.querySelectorAll("[alt], [title], [aria-label]")) {
        for (const name of ["alt", "title", "aria-label"]) {
            const value = element.getAttribute(name);
            if (value && value.trim()) words.push(value.trim());
        }
    }
    words.push(document.title);
    return words;
}"""


def unmarked(words: list[str]) -> list[str]:
    """The words that went through no catalog (a marked text may hold names and numbers in its placeholders)."""
    return [w for w in words if not _NOT_TEXTS.fullmatch(w) and not (w.startswith("⟦") and w.endswith("⟧"))]


def test_every_word_the_pages_templates_show_goes_through_the_catalogs(marked: None) -> None:
    for code in OTHERS:
        parser = _Words()
        parser.feed(render_page(code))
        assert unmarked(parser.words) == [], code
        assert unmarked(list(script_block(render_page(code))["texts"].values())) == [], code


def test_every_word_of_the_page_and_its_answers_goes_through_the_catalogs(
    marked: None, worker, browser: Browser, tmp_path: Path
) -> None:
    """In Chromium, in the pseudo-language: the page, an answer with its buttons, a press, a Why?, a refusal,
    "Forget my feedback" and the privacy page show no word that skipped the catalogs."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", b"a test key of at least sixteen bytes")
    feedback = Feedback(
        store, worker.examine, lambda: list(MODEL_INFO.classes), lambda: MODEL_INFO.trained_at, why=worker.why
    )
    core = ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO, feedback=feedback, keep_days=90)
    page = french_page(browser)
    try:
        with Site(core) as site:
            open_page(page, site.url)
            expect(page.locator("#model")).to_have_text(re.compile("^⟦"))
            assert unmarked(page.evaluate(_SHOWN_WORDS)) == []

            upload(page, "deux.jpg", jpeg(scene(2, twins=(False, True))))
            expect(page.locator(".face")).to_have_count(2)
            second = page.locator(".face").nth(1)
            second.locator("button.choice").last.click()
            expect(second.locator(".said")).to_have_text(re.compile("^⟦"))
            second.locator(".why-link").click()
            expect(second.locator(".evidence .because")).to_have_text(re.compile("^⟦"), timeout=ANSWER_TIMEOUT_MS)
            page.locator("#forget").click()
            expect(page.locator("#forgotten")).to_have_text(re.compile("^⟦"))
            assert unmarked(page.evaluate(_SHOWN_WORDS)) == []

            upload(page, "notes.jpg", b"<html>not a photo</html>")
            expect(page.locator("#message")).to_have_text(re.compile("^⟦"))
            assert unmarked(page.evaluate(_SHOWN_WORDS)) == []

            page.locator("footer a").click()
            expect(page.locator("main.privacy")).to_be_visible()
            expect(page.locator("html")).to_have_attribute("lang", "fr")
            assert unmarked(page.evaluate(_SHOWN_WORDS)) == []
    finally:
        page.context.close()
        store.close()


# -- the page in Chromium -------------------------------------------------------------------------------


def french_page(browser: Browser) -> Page:
    context = browser.new_context(
        locale="fr-FR", extra_http_headers={"Accept-Language": "fr"}, viewport=CHROMIUM_PAGE_SIZE
    )
    return context.new_page()


def capitalised(line: str) -> str:
    return line[0].upper() + line[1:]


async def both(first, second) -> tuple:
    return await first, await second


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready")


def upload(page: Page, name: str, data: bytes) -> None:
    page.evaluate("document.body.dataset.state = 'ready'")
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
    page.wait_for_selector("body[data-state=answered]", timeout=ANSWER_TIMEOUT_MS)


def test_with_accept_language_fr_the_page_is_french(site: Site, browser: Browser) -> None:
    page = french_page(browser)
    try:
        open_page(page, site.url)
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page).to_have_title(FR.gettext(PAGE_TEXTS["title"]))
        expect(page.locator("h1 span")).to_have_text(FR.gettext(PAGE_TEXTS["tagline"]))
        expect(page.locator("label.button")).to_have_text(FR.gettext(PAGE_TEXTS["choose"]))
        expect(page.get_by_role("link", name=FR.gettext(PAGE_TEXTS["privacy"]))).to_be_visible()
        expect(page.locator("#language")).to_have_value("fr")
        expect(page.locator("#language option:checked")).to_have_text("Français")
        # The header's words come from /api/about, asked in the page's language.
        expect(page.locator("#model")).to_have_text(page_core().about_text(FR))

        photo = jpeg(scene(3, twins=(False, True, False)))
        upload(page, "trois.jpg", photo)
        (_, answer, _), (_, english, _) = run(
            both(post_with_headers(site.url, photo, query="lang=fr"), post_with_headers(site.url, photo))
        )
        expect(page.locator("#summary")).to_have_text(FR.ngettext("{n} face", "{n} faces", 3))
        lines = page.locator(".face .words").all_inner_texts()
        assert lines == [capitalised(line) for line in answer["reply"]["faces"]]
        # Percentages as French writes them: "97 %"; each bar still as long as its number says.
        values = page.locator(".face .bar-row .value").all_inner_texts()
        assert all(re.fullmatch(r"\d+\s%", value) for value in values), values
        filled = page.locator(".face .bar").evaluate_all(
            "bars => bars.map((bar) => [bar.firstChild.offsetWidth / bar.offsetWidth, +bar.ariaValueNow / 100])"
        )
        assert len(filled) == 6 and all(abs(shown - said) < 0.02 for shown, said in filled), filled
        if target := os.environ.get("DOPPELBOT_FR_SCREENSHOT"):
            page.locator(".face").first.hover()
            page.screenshot(path=target, full_page=True)

        # Needs the catalogs: French, not English.
        assert page.locator("h1 span").inner_text() != PAGE_TEXTS["tagline"]
        assert answer["reply"]["faces"] != english["reply"]["faces"]
    finally:
        page.context.close()


def test_the_picker_switches_the_language_and_it_is_remembered(site: Site, browser: Browser) -> None:
    page = french_page(browser)
    de = texts_for("de")
    try:
        open_page(page, site.url)
        with page.expect_navigation():
            page.locator("#language").select_option("de")
        expect(page.locator("body")).to_have_attribute("data-state", "ready")
        expect(page.locator("html")).to_have_attribute("lang", "de")
        expect(page.locator("h1 span")).to_have_text(de.gettext(PAGE_TEXTS["tagline"]))
        expect(page.locator("#language")).to_have_value("de")
        (cookie,) = [c for c in page.context.cookies() if c["name"] == "lang"]
        assert (cookie["value"], cookie["path"], cookie["sameSite"]) == ("de", "/", "Lax")
        assert 364 * 86400 < cookie["expires"] - time.time() <= 365 * 86400

        # The page's requests carry its language: the answer is German though the browser asks for French.
        photo = jpeg(scene(1))
        upload(page, "eins.jpg", photo)
        _, answer, _ = run(post_with_headers(site.url, photo, query="lang=de"))
        assert page.locator(".face .words").all_inner_texts() == [capitalised(answer["reply"]["faces"][0])]

        # Remembered: on reload, and on another visit, over the browser's French.
        page.reload()
        expect(page.locator("html")).to_have_attribute("lang", "de")
        again = page.context.new_page()
        open_page(again, site.url)
        expect(again.locator("html")).to_have_attribute("lang", "de")
        # A link with ?lang= outranks the remembered choice; picking again replaces it and drops the ?lang=.
        open_page(again, site.url + "?lang=ru")
        expect(again.locator("html")).to_have_attribute("lang", "ru")
        with again.expect_navigation():
            again.locator("#language").select_option("es")
        expect(again.locator("html")).to_have_attribute("lang", "es")
        assert "lang=" not in again.url
        expect(again.locator("h1 span")).to_have_text(texts_for("es").gettext(PAGE_TEXTS["tagline"]))
        assert again.locator("h1 span").inner_text() != PAGE_TEXTS["tagline"], "needs the catalogs"
    finally:
        page.context.close()
