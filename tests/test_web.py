"""The web page in a real browser (Debian's Chromium, driven by Playwright), and its API, for real.

The page is served by the real aiohttp adapter on the real core and inference worker, on a free
port (tests/webpage.py); one test starts `python -m bot --web` itself. The guards against strangers on
the network are tested in tests/test_web_guards.py. Set DOPPELBOT_SCREENSHOT=docs/web-page.png to
save the README's screenshot while the tests run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.sync_api import Browser, Page, expect

from bot.core import ChatCore, ModelInfo, RateLimiter
from bot.settings import SettingsError, load_settings
from bot.web_guards import WebGuards
from testkit.e2e import LiveBot
from testkit.imagery import encode, jpeg, noise_image, scene, stranger
from testkit.processes import run_python
from testkit.webpage import Site, post, post_form, post_with_headers, raw_get, run, status_of_announced_upload

MODEL_INFO = ModelInfo(["Eileen", "Twin"], 0.975, "2025-06-01T10:00:00+00:00", 40)
ANSWER_TIMEOUT_MS = 60_000  # a cold first photo on two busy cores; answers normally take well under a second


@pytest.fixture(scope="module")
def site(worker) -> Iterator[Site]:
    """The page on the session's model, with a rate limit no test reaches by accident."""
    core = ChatCore(worker, RateLimiter(1000), lambda: MODEL_INFO)
    with Site(core) as running:
        yield running


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready")


def upload(page: Page, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    """Pick a file with the page's file button, as a user does, and wait for the answer."""
    forget_answer(page)
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    wait_for_answer(page)


def forget_answer(page: Page) -> None:
    """Mark the page as not answered, so that waiting for an answer waits for the next one."""
    page.evaluate("document.body.dataset.state = 'ready'")


def wait_for_answer(page: Page) -> None:
    page.wait_for_selector("body[data-state=answered]", timeout=ANSWER_TIMEOUT_MS)


def face_lines(page: Page) -> list[str]:
    return page.locator(".face .words").all_inner_texts()


def box_centres(page: Page) -> list[tuple[float, float]]:
    """Each drawn box's centre, as a fraction of the photo's width and height on screen."""
    photo = page.locator("#photo").bounding_box()
    centres = []
    for box in page.locator(".box").all():
        b = box.bounding_box()
        centres.append(
            (
                (b["x"] + b["width"] / 2 - photo["x"]) / photo["width"],
                (b["y"] + b["height"] / 2 - photo["y"]) / photo["height"],
            )
        )
    return centres


# -- the page -----------------------------------------------------------------------------------


def test_a_one_face_photo_shows_the_name_and_a_box_on_the_face(site: Site, page: Page) -> None:
    open_page(page, site.url)
    model = page.locator("#model")
    expect(model).to_contain_text("Eileen or Twin")
    expect(model).to_contain_text("Validation accuracy: 97.5%")
    expect(model).to_contain_text("Trained: June 1, 2025")

    upload(page, "eileen.jpg", jpeg(scene(1)))

    (line,) = face_lines(page)
    assert re.fullmatch(r"Eileen, \d+% sure", line), line
    assert page.locator(".face .bar-row .class").all_inner_texts() == ["Eileen", "Twin"]
    values = page.locator(".face .bar-row .value").all_inner_texts()
    assert all(re.fullmatch(r"\d+%", v) for v in values) and int(values[0][:-1]) > int(values[1][:-1])
    expect(page.locator("#message")).to_be_hidden()
    # The scene pastes the face over x 490-790 and y 271-582 of a 1280x853 photo.
    assert page.locator(".box .tag").all_inner_texts() == ["1"]
    ((x, y),) = box_centres(page)
    assert 490 / 1280 < x < 790 / 1280 and 271 / 853 < y < 582 / 853, (x, y)


def test_someone_else_is_said_so_in_words_and_a_grey_box(site: Site, page: Page) -> None:
    open_page(page, site.url)
    upload(page, "hopper.jpg", jpeg(stranger()))

    (line,) = face_lines(page)
    assert re.fullmatch(r"Someone who doesn't look like either of them \(closest: (Eileen|Twin)\)", line), line
    (box,) = page.locator(".box").all()
    assert "unknown" in (box.get_attribute("class") or "").split()


def test_several_faces_get_numbered_boxes_that_match_the_list(site: Site, page: Page) -> None:
    open_page(page, site.url)
    upload(page, "three.jpg", jpeg(scene(3, twins=(False, True, False))))

    expect(page.locator("#summary")).to_have_text("3 faces")
    lines = face_lines(page)
    assert sorted(line.split(",")[0] for line in lines) == ["Eileen", "Eileen", "Twin"], lines
    assert page.locator(".box .tag").all_inner_texts() == ["1", "2", "3"]
    # The box numbered like the list's "Twin" is the middle face, where the scene put her.
    twin = next(i for i, line in enumerate(lines) if line.startswith("Twin"))
    centres = box_centres(page)
    assert 1 / 3 < centres[twin][0] < 2 / 3, centres
    assert all(not 1 / 3 < x < 2 / 3 for i, (x, _) in enumerate(centres) if i != twin), centres

    if target := os.environ.get("DOPPELBOT_SCREENSHOT"):
        page.locator(".face").first.hover()  # shows how a face's box and its answer light up together
        page.screenshot(path=target, full_page=True)


def test_files_that_are_not_photos_get_plain_answers(site: Site, page: Page) -> None:
    open_page(page, site.url)
    upload(page, "notes.txt", b"shopping: eggs, milk\n", mime="text/plain")
    expect(page.locator("#message")).to_have_text(re.compile(r"^That file isn't an image\. Send me a photo"))
    expect(page.locator("#figure")).to_be_hidden()
    assert page.locator(".face").count() == 0

    # Named and typed like a photo, but not one: the decoder says so.
    upload(page, "holiday.jpg", b"<html>not a photo</html>")
    expect(page.locator("#message")).to_have_text(re.compile(r"^That file isn't an image I can read \(I take JPEG"))

    truncated = jpeg(scene(1))
    upload(page, "cut.jpg", truncated[: len(truncated) // 2])
    expect(page.locator("#message")).to_contain_text("cut short or damaged")


def dispatch_file(page: Page, how: str, name: str, data: bytes, mime: str) -> None:
    """Drop a file on the page, or paste one, as the browser delivers them (a DataTransfer with a File)."""
    forget_answer(page)
    page.evaluate(
        """([how, name, data, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const files = new DataTransfer();
            files.items.add(new File([bytes], name, { type: mime }));
            const init = { bubbles: true, cancelable: true };
            if (how === "drop") {
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: files }));
            } else {
                document.dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: files }));
            }
        }""",
        [how, name, base64.b64encode(data).decode(), mime],
    )
    wait_for_answer(page)


def test_dropped_and_pasted_photos_are_answered(site: Site, page: Page) -> None:
    open_page(page, site.url)
    dispatch_file(page, "drop", "landscape.png", encode(noise_image(), "PNG"), "image/png")
    expect(page.locator("#message")).to_have_text("I can't find a face in this photo.")
    expect(page.locator("#photo")).to_be_visible()  # the photo is shown, with no boxes on it
    assert page.locator(".box").count() == 0

    dispatch_file(page, "paste", "image.png", encode(scene(1, twins=(True,)), "PNG"), "image/png")
    (line,) = face_lines(page)
    assert line.startswith("Twin, "), line
    expect(page.locator("#message")).to_be_hidden()
    assert page.locator(".box").count() == 1


def test_a_50_mb_upload_is_refused_with_its_size(site: Site, page: Page, tmp_path: Path) -> None:
    big = tmp_path / "huge.jpg"
    with big.open("wb") as f:
        f.write(jpeg(scene(1)))
        f.truncate(50 * 1024 * 1024)
    open_page(page, site.url)
    forget_answer(page)
    page.set_input_files("#file", str(big))
    wait_for_answer(page)
    expect(page.locator("#message")).to_have_text("That file is 50 MB; I can look at files up to 20 MB.")

    # The refusal comes from the announced size, before the body is sent.
    status = status_of_announced_upload(site.port, 50 * 1024 * 1024)
    assert status.startswith(b"HTTP/1.1 413"), status


# -- the API ------------------------------------------------------------------------------------


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


def test_the_api_answers_bad_requests_in_plain_words(site: Site) -> None:
    async def scenario() -> None:
        status, body = await post(site.url, b"hello", content_type="text/plain")
        assert (status, body["reason"]) == (415, "not_an_image")
        assert body["message"].startswith("That file isn't an image.")

        status, body = await post_form(site.url, [("caption", "a.txt", b"hi", "text/plain")])
        assert (status, body["reason"]) == (400, "no_photo") and "image" in body["message"]

        status, body = await post(site.url, jpeg(scene(1)), Origin="http://evil.example")
        assert (status, body["reason"]) == (403, "cross_site")

        status, body = await post(site.url, png_bomb(50_000, 50_000), content_type="image/png")
        assert status == 422 and body["outcome"] == "error" and "pixels" in body["message"], body
        assert body["reply"]["text"] == body["message"]

        # Every request above was refused or answered in words, and the page still answers photos.
        status, body = await post(site.url, jpeg(scene(1)))
        assert status == 200 and body["outcome"] == "ok" and body["reply"]["text"].startswith("Eileen, ")

    run(scenario())


def test_static_files_cannot_be_read_outside_their_folder(site: Site) -> None:
    assert raw_get(site.port, "/static/page.js").startswith(b"HTTP/1.1 200")
    for path in (
        "/static/../web_adapter.py",
        "/static/%2e%2e/web_adapter.py",
        "/static/..%2fweb_adapter.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static//etc/passwd",
    ):
        response = raw_get(site.port, path)
        assert not response.startswith(b"HTTP/1.1 200"), (path, response[:200])
        assert b"ChatCore" not in response and b"[project]" not in response and b"root:" not in response


class _Held:
    """The session's classifier, held on its first photos until `burst` is set: so a burst fills the queue however
    slowly a loaded machine lets its uploads arrive."""

    def __init__(self, classifier, burst: threading.Event) -> None:
        self._classifier, self._burst = classifier, burst

    def __getattr__(self, name: str):
        return getattr(self._classifier, name)

    def classify_in_parts(self, *args, **kwargs):
        self._burst.wait(60)
        return self._classifier.classify_in_parts(*args, **kwargs)


class _Reached:
    """A worker that sets `burst` once `n` photos have reached it (queued, or refused as busy)."""

    def __init__(self, worker, n: int, burst: threading.Event) -> None:
        self._worker, self._left, self._burst = worker, n, burst

    def __getattr__(self, name: str):
        return getattr(self._worker, name)

    async def classify(self, data: bytes):
        self._left -= 1
        if self._left <= 0:
            self._burst.set()
        return await self._worker.classify(data)


def test_a_full_queue_answers_busy_and_a_fast_sender_is_told_to_wait(classifier) -> None:
    from bot.worker import InferenceWorker

    arrived = threading.Event()
    small = InferenceWorker(_Held(classifier, arrived), queue_size=2)
    try:
        busy_core = ChatCore(_Reached(small, 20, arrived), RateLimiter(1000))
        # Room for every upload at once: the queue, not the bound on uploads, is what answers "busy" here.
        with Site(busy_core, guards=WebGuards(max_uploads=32)) as busy:

            async def burst() -> list[tuple[int, dict, dict[str, str]]]:
                photo = jpeg(scene(1))
                return await asyncio.gather(*(post_with_headers(busy.url, photo) for _ in range(20)))

            answers = run(burst())
        statuses = [status for status, _, _ in answers]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        busy_words = {body["message"] for status, body, _ in answers if status == 503}
        assert busy_words == {"I'm busy with a lot of photos right now; please try again in a minute."}
        # The words say a minute; so does the header programs read.
        assert {headers.get("Retry-After") for status, _, headers in answers if status == 503} == {"60"}

        with Site(ChatCore(small, RateLimiter(3))) as limited:

            async def five() -> list[tuple[int, dict, dict[str, str]]]:
                return [await post_with_headers(limited.url, jpeg(scene(1))) for _ in range(5)]

            answers = run(five())
        assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
        _, body, headers = answers[-1]
        # "try again in 60 seconds", and the same wait, rounded up, in Retry-After.
        wait = int(re.search(r"try again in (\d+) seconds", body["message"]).group(1))
        assert body["message"].startswith("You're sending photos faster than I can look at them")
        assert 1 <= int(headers["Retry-After"]) <= 60 and abs(int(headers["Retry-After"]) - wait) <= 1, headers
    finally:
        small.close(timeout=30)


def test_the_rate_limit_comes_before_the_body_is_read_and_refusals_use_no_quota(worker) -> None:
    with Site(ChatCore(worker, RateLimiter(1))) as limited:

        async def two() -> list[tuple[int, dict]]:
            refused = await post(limited.url, b"hello", content_type="text/plain")
            return [refused, await post(limited.url, jpeg(scene(1)))]

        assert [status for status, _ in run(two())] == [415, 200]
        # Past the limit, an upload announcing a megabyte is refused before a byte of it is sent.
        status = status_of_announced_upload(limited.port, 1024 * 1024)
    assert status.startswith(b"HTTP/1.1 429"), status


def test_uploads_are_never_written_to_disk(site: Site) -> None:
    """No file is opened for writing while photos are uploaded, in a body or a form, and answered."""
    written: list[tuple] = []
    watching = threading.Event()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def audit(event: str, args: tuple) -> None:
        if watching.is_set() and event == "open":
            _, mode, flags = args
            if (isinstance(flags, int) and flags & write_flags) or (mode and set(str(mode)) & set("wax+")):
                written.append(args)

    sys.addaudithook(audit)  # audit hooks cannot be removed: this one goes quiet when the test ends

    async def uploads() -> None:
        photo = jpeg(scene(2))
        # Megabytes: past what aiohttp's own form parser (`request.post()`) keeps in memory before spooling to disk.
        large = photo * (4 * 1024 * 1024 // len(photo))
        answers = [await post(site.url, large), await post_form(site.url, [("image", "a.jpg", large, "image/jpeg")])]
        assert [status for status, _ in answers] == [200, 200], answers

    watching.set()
    try:
        run(uploads())
    finally:
        watching.clear()
    assert written == []


def test_web_settings() -> None:
    settings = load_settings({})
    assert settings.web_port is None and settings.web_host == "127.0.0.1"
    settings = load_settings({"WEB_PORT": "0", "WEB_HOST": "0.0.0.0"})
    assert settings.web_port == 0 and settings.web_host == "0.0.0.0"
    for bad in ("http", "70000", "-1"):
        with pytest.raises(SettingsError, match="WEB_PORT"):
            load_settings({"WEB_PORT": bad})
    settings = load_settings({"WEB_ALLOWED_HOSTS": " photos.lan, 192.168.1.20:8080,[::1] ,"})
    assert settings.web_allowed_hosts == ("photos.lan", "192.168.1.20:8080", "[::1]")
    # A URL, a space, a port past 65535 or a broken IPv6 address: the setting is named, and how to write it.
    for bad in ("http://photos.lan", "photos lan", "photos.lan:99999", "[::1"):
        with pytest.raises(SettingsError, match=r"^WEB_ALLOWED_HOSTS=.* is not a host name or address"):
            load_settings({"WEB_ALLOWED_HOSTS": f"localhost,{bad}"})


# -- python -m bot --web --------------------------------------------------------------------------


def test_python_m_bot_web_without_a_model_says_how_to_make_one_then_answers_like_the_cli(
    exported: Path, browser: Browser, tmp_path: Path
) -> None:
    model = tmp_path / "model" / "export.pkl"
    env = {"WEB_PORT": "0", "MODEL_RELOAD_SECONDS": "0.5"}
    with LiveBot(model, tmp_path, telegram=False, discord=False, env=env, args=["--web"]) as live:
        url = live.web_url()
        page = browser.new_page()
        open_page(page, url)
        expect(page.locator("#problem")).to_contain_text("python -m training")
        upload(page, "photo.jpg", jpeg(scene(1)))
        expect(page.locator("#message")).to_contain_text("make one with `python -m training`")
        page.close()

        # The model appears (as `python -m training` writes it) and the page answers without a restart.
        model.parent.mkdir()
        shutil.copy(exported, model)
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(jpeg(scene(2, twins=(False, True))))

        async def answers() -> tuple[dict, dict]:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 120
                while not (await (await session.get(url + "api/about")).json())["ready"]:
                    assert time.monotonic() < deadline, "the new model was never served"
                    await asyncio.sleep(0.3)
            form = await post_form(url, [("image", "photo.jpg", photo.read_bytes(), "image/jpeg")])
            body = await post(url, photo.read_bytes())
            return form, body

        (form_status, form), (body_status, body) = run(answers())
        cli = run_python("-m", "model", "--json", "photo.jpg", cwd=tmp_path, env={"MODEL_PATH": str(model)})
        assert cli.returncode == 0, cli.stderr
        (expected,) = json.loads(cli.stdout)
        assert form_status == body_status == 200
        assert form.pop("reply")["faces"] and body.pop("reply")
        assert form == expected
        assert body == {**expected, "path": None}

        assert live.run(live.stop_and_wait()) == 0
    assert "request adapter=web chat=page faces=2 outcome=ok" in live.log, live.log[-3000:]
