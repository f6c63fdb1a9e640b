"""The owner's review page at `/review`: the faces users marked, approved, rejected or relabelled before any of
them may reach training. Served only when REVIEW_TOKEN is set.

The token is asked once, in a form; what the browser keeps is a session cookie signed with a key drawn from the
token (never the token), HttpOnly and SameSite=Strict, so every replica knows it and a new token ends every
session. Requests that change anything also carry the session's CSRF token (a header) and, from a browser, an
Origin of this page's own names. The Host allow-list of `web_guards.py` applies to these paths as to every other.
Each face shows its evidence (what the model compared it with), worked out again from its stored chip at each
look (`worker.why_chip`): nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

from aiohttp import web

from feedback.store import NEITHER, STATUSES, FeedbackStore, StoreUnavailable
from model.answers import display_name

from .core import ChatCore
from .ratelimit import RateLimiter
from .web_common import Refusal, chunks, cross_site, read_capped, refused, sender
from .web_guards import WebGuards

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "SESSION_SECONDS", "Sessions", "add_review_routes"]

log = logging.getLogger("doppelbot.review")

SESSION_COOKIE = "doppelbot_review"
SESSION_SECONDS = 7 * 24 * 3600  # the token is asked again after a week
CSRF_HEADER = "X-CSRF-Token"
_PAGE = Path(__file__).with_name("static") / "review.html"
# The login form posts to this page itself, hence form-action 'self'; the faces are the page's own images, and
# their evidence pictures come inside the API's JSON (data: URLs).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",  # users' faces and the session's CSRF token: never kept by a cache
    # With no-referrer a browser sends the form's POST with "Origin: null", and the Origin check would refuse it.
    "Referrer-Policy": "same-origin",
}
_BODY_BYTES = 64 * 1024  # a login form, or a list of ids
# Wrong tokens from one sender: a few typos, not a guessing run.
_LOGINS_PER_MINUTE = 10
_NONCE = web.RequestKey("review_nonce", str)  # the signed-in session's nonce, for its CSRF token

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sessions:
    """The review token, and the session values and CSRF tokens signed with a key drawn from it."""

    def __init__(self, token: str, seconds: float = SESSION_SECONDS) -> None:
        self._token = hashlib.sha256(token.encode()).digest()
        self._key = hmac.new(token.encode(), b"doppelbot review sessions", hashlib.sha256).digest()
        self.seconds = seconds

    def matches(self, given: str) -> bool:
        """Whether `given` is the token, compared in constant time (digests: not even its length shows)."""
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._token)

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def new(self, now: float | None = None) -> str:
        """A fresh session value: when it was issued, a random nonce, and their signature."""
        body = f"{int(now if now is not None else time.time())}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._sign('session', body)}"

    def nonce(self, value: str | None, now: float | None = None) -> str | None:
        """The session's nonce when `value` is a session this key signed and not yet expired, else None."""
        issued, _, rest = (value or "").partition(".")
        nonce, _, signature = rest.partition(".")
        if not (issued.isascii() and issued.isdigit() and nonce and signature):
            return None
        if not hmac.compare_digest(signature, self._sign("session", f"{issued}.{nonce}")):
            return None
        age = (now if now is not None else time.time()) - int(issued)
        return nonce if 0 <= age < self.seconds else None

    def csrf(self, nonce: str) -> str:
        """The CSRF token of the session with this nonce."""
        return self._sign("csrf", nonce)


def _login_page(message: str | None = None) -> str:
    error = f'\n    <p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n'
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '  <title>doppelbot: review</title>\n  <link rel="icon" href="data:,">\n'
        '  <link rel="stylesheet" href="/static/review.css">\n</head>\n<body class="login">\n'
        "  <main>\n    <h1>doppelbot <span>review</span></h1>\n"
        "    <p>The faces users marked wait here for you. Enter the review token (REVIEW_TOKEN in the bot's "
        ".env) once; this browser then stays signed in for a week.</p>"
        f"{error}\n"
        '    <form method="post" action="/review/login">\n'
        '      <label>Review token <input type="password" name="token" autocomplete="current-password" '
        "required autofocus></label>\n"
        '      <button type="submit">Sign in</button>\n    </form>\n  </main>\n</body>\n</html>\n'
    )


class _ReviewRoutes:
    """The review page's routes, on the chat core's feedback store."""

    def __init__(self, core: ChatCore, guards: WebGuards, sessions: Sessions) -> None:
        self.core, self.guards, self.sessions = core, guards, sessions
        self.logins = RateLimiter(_LOGINS_PER_MINUTE)

    # -- signing in --------------------------------------------------------------------------

    def _nonce(self, request: web.Request) -> str | None:
        return self.sessions.nonce(request.cookies.get(SESSION_COOKIE))

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The review page once signed in; the token's form before."""
        if self._nonce(request) is None:
            return _html(_login_page())
        return web.FileResponse(_PAGE, headers=_HEADERS)

    async def login(self, request: web.Request) -> web.Response:
        """The token's form: right, a session cookie and back to the page; wrong, 403 and the form again."""
        if cross_site(request, self.guards):
            return _html(_login_page("Sign in from this page itself."), 403)
        who = sender(request, self.guards)
        if (wait := await self.logins.wait(who)) > 0:
            return _html(_login_page(f"Too many wrong tokens; try again in {math.ceil(wait)} seconds."), 429)
        try:
            form = parse_qs((await _body(request)).decode("utf-8", "replace"))
        except Refusal as refusal:
            return _html(_login_page(refusal.message), refusal.status)
        if not self.sessions.matches((form.get("token") or [""])[0]):
            await self.logins.take(who)
            log.info("a wrong review token was given")
            return _html(_login_page("That token isn't right."), 403)
        response = web.Response(status=303, headers={**_HEADERS, "Location": "/review"})
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.new(),
            max_age=int(self.sessions.seconds),
            path="/review",
            httponly=True,
            samesite="Strict",
            secure=request.secure or None,
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """End this browser's session."""
        response = web.json_response({"outcome": "signed_out"}, headers=_HEADERS)
        response.del_cookie(SESSION_COOKIE, path="/review")
        return response

    # -- the faces ---------------------------------------------------------------------------

    def _store(self) -> FeedbackStore | None:
        feedback = self.core.feedback
        return feedback.store if feedback is not None else None

    async def _chip(self, request: web.Request) -> bytes | web.Response:
        """The kept face's chip the path names (a JPEG), or the refusal that says why there is none."""
        store = self._store()
        if store is None:
            return _off()
        try:
            chip = await asyncio.to_thread(store.chip, int(request.match_info["id"]))
        except StoreUnavailable as e:
            return _unavailable(e)
        return refused(404, "no_such_face", "There is no such face.") if chip is None else chip

    async def chip(self, request: web.Request) -> web.Response:
        """A kept face's chip, as a JPEG."""
        chip = await self._chip(request)
        if isinstance(chip, web.Response):
            return chip
        return web.Response(body=chip, content_type="image/jpeg", headers=_HEADERS)

    async def why(self, request: web.Request) -> web.Response:
        """A kept face's evidence, from its chip: the line, and the picture (base64) beside its nearest training
        faces."""
        from .worker import Busy  # the worker module stays out of adapters' imports

        if self._store() is None:
            return _off()
        why_chip = getattr(self.core.worker, "why_chip", None)
        if why_chip is None:
            return refused(404, "no_evidence", "The model answering here can't show what its answers rest on.")
        chip = await self._chip(request)
        if isinstance(chip, web.Response):
            return chip
        try:
            evidence = await why_chip(chip)
        except Busy:
            return refused(503, "busy", "The model is busy right now; try again in a while.")
        except ValueError as e:
            log.warning("review: a kept face could not be read: %s", e)
            return refused(422, "unreadable", "This face's picture can't be read.")
        body = {"outcome": "explained", "message": evidence.text, "evidence": evidence.to_json()}
        return web.json_response(body, headers=_HEADERS)

    async def items(self, request: web.Request) -> web.Response:
        """The faces with a status (`?status=waiting`, the default; `all` for every one), the classes to relabel
        to, and this session's CSRF token."""
        store = self._store()
        if store is None:
            return _off()
        status = request.query.get("status", "waiting")
        if status != "all" and status not in STATUSES:
            return refused(400, "bad_status", f"status must be one of: {', '.join([*STATUSES, 'all'])}.")
        try:
            items = await asyncio.to_thread(store.items, None if status == "all" else status)
        except StoreUnavailable as e:
            return _unavailable(e)
        return web.json_response(
            {
                "csrf": self.sessions.csrf(request[_NONCE]),
                "status": status,
                "classes": [{"name": name, "display": display_name(name)} for name in self._classes()],
                "items": [{**item.to_json(), "chip": f"/review/chip/{item.id}"} for item in items],
            },
            headers=_HEADERS,
        )

    def _classes(self) -> list[str]:
        """The classes a face may be relabelled to: the answering model's."""
        info = self.core.model_info()
        if info is not None and info.classes:
            return list(info.classes)
        return [str(c) for c in getattr(getattr(self.core.worker, "classifier", None), "classes", [])]

    async def approve(self, request: web.Request) -> web.Response:
        """Approve faces (`{"ids": [...]}`) with the label each carries now."""
        return await self._change(request, "approve")

    async def reject(self, request: web.Request) -> web.Response:
        """Reject faces (`{"ids": [...]}`): never trained on."""
        return await self._change(request, "reject")

    async def _change(self, request: web.Request, verb: str) -> web.Response:
        store = self._store()
        if store is None:
            return _off()
        ids = (await _json(request)).get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return refused(400, "bad_ids", 'Send {"ids": [face id, ...]}.')
        try:
            changed = await asyncio.to_thread(getattr(store, verb), ids)
        except StoreUnavailable as e:
            return _unavailable(e)
        log.info("review: %s %d of %d face(s)", verb, changed, len(ids))
        return web.json_response({"outcome": "done", "changed": changed}, headers=_HEADERS)

    async def relabel(self, request: web.Request) -> web.Response:
        """Give a face the owner's label (`{"id": n, "label": class or "neither"}`) and approve it."""
        store = self._store()
        if store is None:
            return _off()
        body = await _json(request)
        face, label = body.get("id"), body.get("label")
        if not isinstance(face, int) or isinstance(face, bool):
            return refused(400, "bad_ids", 'Send {"id": face id, "label": class or "neither"}.')
        classes = self._classes()
        if label != NEITHER and label not in classes:
            return refused(400, "bad_label", f"label must be one of: {', '.join([*classes, NEITHER])}.")
        try:
            changed = await asyncio.to_thread(store.relabel, face, None if label == NEITHER else label)
        except StoreUnavailable as e:
            return _unavailable(e)
        log.info("review: relabelled %d face(s)", int(changed))
        return web.json_response({"outcome": "done", "changed": int(changed)}, headers=_HEADERS)


def _signed_in(routes: _ReviewRoutes, handler: _Handler, changes: bool) -> _Handler:
    """`handler` for a signed-in browser only; one that `changes` anything also needs the session's CSRF token and,
    from a browser, an Origin of our own."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        nonce = routes._nonce(request)
        if nonce is None:
            return refused(401, "signed_out", "Sign in on the review page first.")
        if changes:
            if cross_site(request, routes.guards):
                return refused(403, "cross_site", "Reviews can only be changed from the review page.")
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), routes.sessions.csrf(nonce).encode()):
                return refused(403, "csrf", f"This request lacks the review page's {CSRF_HEADER}; reload the page.")
        request[_NONCE] = nonce
        try:
            return await handler(request)
        except Refusal as refusal:
            return refused(refusal.status, refusal.reason, refusal.message)

    return guarded


async def _body(request: web.Request) -> bytes:
    def too_large(size: int) -> Refusal:
        return Refusal(413, "too_large", "That request is too large.")

    return await read_capped(chunks(request.content), _BODY_BYTES, request.content_length, too_large)


async def _json(request: web.Request) -> dict:
    try:
        body = json.loads(await _body(request) or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status, headers=_HEADERS)


def _off() -> web.Response:
    return refused(404, "feedback_off", "Feedback is off (FEEDBACK=off), so no face is kept for review.")


def _unavailable(error: StoreUnavailable) -> web.Response:
    log.warning("review: %s", error)
    return refused(503, "unavailable", "The feedback database can't be reached right now; try again in a while.")


def add_review_routes(app: web.Application, core: ChatCore, guards: WebGuards, token: str) -> None:
    """The review page and its API on `app`, behind `token` (REVIEW_TOKEN)."""
    routes = _ReviewRoutes(core, guards, Sessions(token))
    app.router.add_get("/review", routes.page)
    app.router.add_post("/review/login", routes.login)
    app.router.add_post("/review/logout", _signed_in(routes, routes.logout, changes=True))
    app.router.add_get(r"/review/chip/{id:\d{1,18}}", _signed_in(routes, routes.chip, changes=False))
    app.router.add_get("/review/api/items", _signed_in(routes, routes.items, changes=False))
    app.router.add_get(r"/review/api/why/{id:\d{1,18}}", _signed_in(routes, routes.why, changes=False))
    app.router.add_post("/review/api/approve", _signed_in(routes, routes.approve, changes=True))
    app.router.add_post("/review/api/reject", _signed_in(routes, routes.reject, changes=True))
    app.router.add_post("/review/api/relabel", _signed_in(routes, routes.relabel, changes=True))
