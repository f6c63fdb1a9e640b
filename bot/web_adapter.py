"""The web adapter (aiohttp): a local page to try the model, and `POST /api/classify` for scripts; the page's
feedback routes (`web_feedback.py`) and the owner's review page (`web_review.py`) are put together with them here.

The page and every answer are in the request's language (`?lang=`, the page's picker's cookie, Accept-Language,
then DEFAULT_LANGUAGE: `web_common.texts_of`); only the words change, never the JSON's fields or values.

A third adapter on the same `ChatCore` as Telegram and Discord: the same queue, rate limit and
wording. Uploads are read into memory under a cap (never `request.post()`, which spools large
files to a temporary file) and are never written anywhere. The guards of `web_guards.py` (the names the page
answers to, uploads at once and their deadline, one rate limit per IPv6 /64) are applied here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from .core import ChatCore, Photo, Request, face_line, is_image
from .i18n import Texts
from .operations import PROBE_ONLY
from .replies import quality_reason
from .web_common import (
    SECURITY_HEADERS,
    Refusal,
    chunks,
    cross_site,
    cut_off,
    garbled,
    part_chunks,
    read_capped,
    refused,
    sender,
    texts_of,
    too_slow,
    uploads_busy,
)
from .web_feedback import add_feedback_routes, explains, face_choices
from .web_guards import Access, UploadSlots, WebGuards
from .web_page import render_page

__all__ = ["STATIC_DIR", "build_web_app", "run_web", "start_web"]

log = logging.getLogger("doppelbot.web")

STATIC_DIR = Path(__file__).with_name("static")
# A form upload wraps the photo in boundaries and part headers: a few hundred bytes, capped generously.
_FORM_SLACK = 64 * 1024
# The status of each of the core's refusals; the others (no photo, a garbled or cut-off upload) are ours.
_REFUSAL_STATUS = {"not_an_image": 415, "too_large": 413, "rate_limited": 429, "busy": 503}
# Retry-After (seconds) of each 503: the core's "busy" says "try again in a minute"; a model is made in minutes;
# an upload's place frees as soon as one photo is answered, usually within a second or two.
_BUSY_RETRY = 60
_NO_MODEL_RETRY = 60
_UPLOADS_RETRY = 5

ModelProblem = Callable[[], str | None]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Handlers:
    """The routes, holding the chat core they answer with."""

    def __init__(self, core: ChatCore, model_problem: ModelProblem, guards: WebGuards) -> None:
        self.core = core
        self.model_problem = model_problem
        self.guards = guards
        self.slots = UploadSlots(guards.max_uploads)

    async def index(self, request: web.Request) -> web.Response:
        """The page, in the reader's language."""
        tr = texts_of(request, self.core)
        response = web.Response(text=render_page(tr.code), content_type="text/html")
        response.headers[hdrs.CONTENT_LANGUAGE] = tr.tag
        # Another reader's language, or the same reader after picking one, is another page.
        response.headers[hdrs.VARY] = "Accept-Language, Cookie"
        return response

    async def about(self, request: web.Request) -> web.Response:
        """Which model answers (with what users said of its answers), or why none does yet; whether the page
        asks for feedback."""
        tr = texts_of(request, self.core)
        info = self.core.model_info()
        problem = self.model_problem()
        feedback = self.core.feedback
        return web.json_response(
            {
                "ready": problem is None,
                "message": problem,
                "about": await self.core.about(tr),
                "model": dataclasses.asdict(info) if info else None,
                "max_bytes": self.core.max_bytes,
                "feedback": feedback is not None and feedback.enabled,
            }
        )

    async def classify(self, request: web.Request) -> web.Response:
        """One photo in (the body, or the form field `image`), `python -m model --json`'s object for it out."""
        tr = texts_of(request, self.core)
        if (problem := self.model_problem()) is not None:
            return refused(503, "no_model", problem, _NO_MODEL_RETRY)
        if cross_site(request, self.guards):
            return refused(403, "cross_site", tr.gettext("Photos can only be sent from this page."))
        names: list[str | None] = []
        held = False

        async def download() -> bytes:
            nonlocal held
            # After the rate limit and before a byte of the body: a full house costs the sender no quota.
            if not self.slots.take():
                raise uploads_busy(tr, _UPLOADS_RETRY)
            held = True
            seconds = self.guards.upload_seconds
            try:
                async with asyncio.timeout(seconds):
                    data, name = await self._read_photo(request, tr)
            except TimeoutError:
                log.info("an upload took over %g s and was cut off", seconds)
                raise too_slow(tr, seconds) from None
            names.append(name)
            return data

        # The chat adapters' flow: the announced size and type refused, then the rate limit, before the body is
        # read. A form's photo has its type and name inside the body, and is at least its length less the slack.
        form = request.content_type.startswith("multipart/")
        size = request.content_length
        if form and size is not None:
            size = max(0, size - _FORM_SLACK)
        content_type = None if form else request.headers.get(hdrs.CONTENT_TYPE, "")
        user = sender(request, self.guards)
        try:
            asker = Request("web", "page", user, language=tr.code)
            reply = await self.core.answer(Photo(download, size, content_type), asker)
        except Refusal as refusal:
            # A deadline passed mid-body: hang up, or the rest would still be read.
            closing = request if refusal.status == 408 else None
            return refused(refusal.status, refusal.reason, refusal.message, refusal.retry_after, closing)
        except (ConnectionError, HttpProcessingError) as e:
            # The sender went away or broke the transfer encoding mid-upload: routine, not our failure.
            log.info("an upload was cut off: %s", e)
            refusal = cut_off(tr)
            return refused(refusal.status, refusal.reason, refusal.message)
        finally:
            if held:
                self.slots.give_back()
        if reply.answer is None:
            status = _REFUSAL_STATUS.get(reply.refused or "", 400)
            retry_after = _BUSY_RETRY if status == 503 else None
            if reply.retry_after is not None:
                retry_after = max(1, math.ceil(reply.retry_after))  # whole seconds, never "now"
            return refused(status, reply.refused or "refused", reply.text, retry_after)
        answer = reply.answer
        body = answer.to_json(names[0] if names else None)
        body["reply"] = {
            "text": reply.text,
            "faces": [face_line(face, tr) for face in answer.faces],
            # TRANSLATORS: the heading over the list of faces found in a photo on the web page.
            "summary": tr.ngettext("{n} face", "{n} faces", len(answer.faces)),
            # Why each face seen but not named was turned away (a photo with none named): `turned_away`'s reasons.
            "turned_away": [quality_reason(face, tr) for face in answer.turned_away],
            # The feedback buttons under each face (None: none are offered); `POST /api/feedback` takes a press.
            "choices": face_choices(self.core.feedback, answer, tr),
            # A Why? link under each face: `POST /api/why?face=N` with the photo again shows its evidence.
            "why": explains(self.core),
        }
        return web.json_response(body, status=422 if answer.outcome == "error" else 200)

    async def _read_photo(self, request: web.Request, tr: Texts) -> tuple[bytes, str | None]:
        """The photo's bytes and file name, read into memory and never past the cap (its type and announced
        size already passed the core)."""
        limit = self.core.max_bytes
        announced = request.content_length

        def too_large(size: int) -> Refusal:
            reply = self.core.refuse_size(max(size, limit + 1), tr)
            return Refusal(413, "too_large", reply.text if reply else "")

        if not request.content_type.startswith("multipart/"):
            return await read_capped(chunks(request.content), limit, announced, too_large), None
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name != "image":
                    await part.release()
                    continue
                if not is_image(part.headers.get(hdrs.CONTENT_TYPE), part.filename):
                    raise Refusal(415, "not_an_image", self.core.not_an_image(tr).text)
                return await read_capped(part_chunks(part), limit, announced, too_large), part.filename
        except (ValueError, AssertionError, RuntimeError) as e:  # aiohttp's words for a malformed form
            log.info("a malformed form upload: %s", e)
            raise garbled(tr) from None
        message = tr.gettext("Send the photo as the request body, or as the form field `image`.")
        raise Refusal(400, "no_photo", message)


def _middleware(core: ChatCore, guards: WebGuards):
    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Only our own names answered (the webhook's and addresses, each for its paths); security headers on every
        response; words, not a stack trace, on failure."""
        host = request.headers.get(hdrs.HOST)
        tr = texts_of(request, core)
        try:
            access = guards.access(host, request.method, request.path)
            if access is Access.NOTHING:
                # 421 Misdirected Request: this server is not the one for that name (a rebound DNS name, say).
                response = refused(421, "unknown_host", _unknown_host(host, tr))
            else:
                request[PROBE_ONLY] = access is Access.PROBE
                response = await handler(request)
        except web.HTTPException as e:  # aiohttp's own answers: not found, method not allowed
            _secure(e.headers)
            raise
        except Exception:
            log.exception("the web page's %s %s failed", request.method, request.path)
            response = refused(500, "failed", core.failed(tr).text)
        _secure(response.headers)
        return response

    return guard


def _secure(headers) -> None:
    # A header a route set itself (the review page's own policy, `no-store` on faces) is kept.
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def _unknown_host(host: str | None, tr: Texts) -> str:
    if not host:
        return tr.gettext("The request does not say which host it is for (no Host header).")
    return tr.gettext(
        "This server does not answer to the name {host}; to reach it by that name, add it to WEB_ALLOWED_HOSTS.",
        host=repr(host),
    )


async def _to_the_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("../")


def build_web_app(
    core: ChatCore,
    model_problem: ModelProblem = lambda: None,
    guards: WebGuards | None = None,
    operations=None,
    review_token: str | None = None,
) -> web.Application:
    """The one place the web app is put together: the page, its files, the API, the feedback routes, the review
    page (only with `review_token`, REVIEW_TOKEN) and `operations`' endpoints."""
    guards = guards or WebGuards()
    # Our handlers read bodies under the core's cap themselves; aiohttp's own cap guards any other reader.
    middlewares = [_middleware(core, guards)]
    app = web.Application(client_max_size=core.max_bytes + _FORM_SLACK, middlewares=middlewares)
    handlers = _Handlers(core, model_problem, guards)
    log.info("the web page answers to %s (WEB_ALLOWED_HOSTS)", guards.hosts)
    if guards.webhook is not None:
        log.info("the webhook's host answers at %s only", guards.webhook.path)
    app.router.add_get("/", handlers.index)
    # The page's template, unfilled, is no page: its address leads to the page.
    app.router.add_get("/static/index.html", _to_the_page)
    app.router.add_get("/api/about", handlers.about)
    app.router.add_post("/api/classify", handlers.classify)
    add_feedback_routes(app, core, guards, handlers.slots, model_problem)
    if review_token:
        from .web_review import add_review_routes

        add_review_routes(app, core, guards, review_token)
    # aiohttp resolves each path and refuses any outside this folder (and, by default, symlinks out of it).
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    if operations is not None:
        from .operations import add_operations_routes

        add_operations_routes(app, operations)
    return app


async def start_web(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on `host:port` (0: any free port); the runner's `addresses` say where."""
    # No access log: the core logs one line per photo, and the page's own requests say nothing useful.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=60.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise RuntimeError(f"can't serve the web page on {host}:{port} ({e.strerror}); set WEB_PORT") from None
    return runner


async def run_web(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` until `stop` is set; answers in progress are sent before it returns."""
    runner = await start_web(app, host, port)
    try:
        for address in runner.addresses:
            log.info("web page at http://%s:%d/", *address[:2])
        await stop.wait()
    finally:
        await runner.cleanup()
