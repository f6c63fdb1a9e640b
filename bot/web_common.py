"""What the web app's routes share: the language a request is answered in, refusals as JSON, bodies read under a
cap, the same-origin rule, the sender, and the refusals of an upload gone wrong.

Used by `web_adapter.py` (the page and `/api/classify`), `web_feedback.py` (presses, `/privacy`, `/api/forget`) and
`web_review.py` (the owner's review page).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import BodyPartReader, hdrs, web

from .i18n import Texts
from .web_guards import WebGuards, client_key

if TYPE_CHECKING:
    from .core import ChatCore

__all__ = [
    "FORWARDED_FOR",
    "LANGUAGE_COOKIE",
    "SECURITY_HEADERS",
    "ClosingResponse",
    "Refusal",
    "accepted_languages",
    "chunks",
    "cross_site",
    "cut_off",
    "garbled",
    "language_tags",
    "part_chunks",
    "read_capped",
    "refused",
    "sender",
    "texts_of",
    "too_slow",
    "uploads_busy",
]

CHUNK = 64 * 1024
FORWARDED_FOR = "X-Forwarded-For"
# The language the page's picker remembers (a code or a tag: "fr", "pt-BR").
LANGUAGE_COOKIE = "lang"
# Past the cap, a body without a Content-Length is still counted (not kept) this far, to say its size.
_COUNT_PAST_CAP = 4
# The page is one HTML file, one script and one style sheet, all our own; photos are shown from blob: URLs.
# A route may send a policy of its own (the review page's, which posts one form); these fill in the rest.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "  # not for users
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def accepted_languages(header: str | None) -> list[str]:
    """An Accept-Language header's tags, most wanted first: by q-value (1 when not given), then in the order
    written; `q=0` ("not this one"), `*` and entries with a malformed q are left out."""
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate((header or "").split(",")):
        tag, *params = (part.strip() for part in item.split(";"))
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if 0 < q <= 1:  # NaN is neither
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


def language_tags(request: web.Request) -> list[str | None]:
    """The languages a request asks for, most wanted first: its `?lang=`, then the one the page's picker remembered
    (the `lang` cookie), then the browser's Accept-Language."""
    return [
        request.query.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        *accepted_languages(request.headers.get(hdrs.ACCEPT_LANGUAGE)),
    ]


def texts_of(request: web.Request, core: ChatCore) -> Texts:
    """The words to answer `request` in: the first of its `language_tags` the bot speaks (one it does not, a
    `?lang=zz` say, is passed over), else the bot's DEFAULT_LANGUAGE."""
    return core.texts(*language_tags(request))


class Refusal(Exception):
    """A request refused before the model sees it: an HTTP status, a reason for programs, words for people."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after


class ClosingResponse(web.Response):
    """A response after which the connection is closed at once, the rest of the request's body unread."""

    def __init__(self, request: web.Request, **kwargs) -> None:
        super().__init__(**kwargs)
        self._closing = request
        self.force_close()  # "Connection: close"

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        # Otherwise aiohttp goes on reading (and dropping) the body for up to 10 s more, at the sender's pace.
        if (protocol := self._closing.protocol) is not None:
            protocol.force_close()


def refused(
    status: int, reason: str, message: str, retry_after: int | None = None, closing: web.Request | None = None
) -> web.Response:
    """A refusal as JSON; `retry_after`: seconds, sent as Retry-After; `closing`: the request to hang up on."""
    body = {"outcome": "refused", "reason": reason, "message": message}
    if closing is None:
        response = web.json_response(body, status=status)
    else:
        response = ClosingResponse(closing, text=json.dumps(body), content_type="application/json", status=status)
    if retry_after is not None:
        response.headers[hdrs.RETRY_AFTER] = str(retry_after)
    return response


def cross_site(request: web.Request, guards: WebGuards) -> bool:
    """Whether a browser sent this request from another site's page: any web site could post to a page on
    127.0.0.1, and only this page (and scripts, which send no Origin) may."""
    origin = request.headers.get(hdrs.ORIGIN)
    return origin is not None and not guards.hosts.allows_origin(origin, request.headers.get(hdrs.HOST, ""))


def sender(request: web.Request, guards: WebGuards) -> str:
    """Who sent the request, as the rate limit counts senders (an IPv4 address or an IPv6 /64)."""
    return client_key(guards.client_address(request.remote, request.headers.getall(FORWARDED_FOR, [])))


async def read_capped(
    chunks: AsyncIterator[bytes], limit: int, announced: int | None, too_large: Callable[[int], Refusal]
) -> bytes:
    """The body's bytes, never more than `limit` of them kept: `too_large(size)` is raised past it."""
    kept: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            if announced is None:
                # Counted, not kept, so the refusal can say how large the file is.
                async for more in chunks:
                    size += len(more)
                    if size > _COUNT_PAST_CAP * limit:
                        break
            raise too_large(announced or size)
        kept.append(chunk)
    return b"".join(kept)


async def chunks(stream) -> AsyncIterator[bytes]:
    async for chunk in stream.iter_chunked(CHUNK):
        yield chunk


async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


def uploads_busy(tr: Texts, retry_after: int) -> Refusal:
    """All the places for uploads are taken: "busy", before a byte of the body is read."""
    message = tr.gettext("I'm receiving too many photos at once; please try again in a few seconds.")
    return Refusal(503, "busy", message, retry_after)


def too_slow(tr: Texts, seconds: float) -> Refusal:
    """An upload that did not arrive within its deadline (WEB_UPLOAD_SECONDS)."""
    n = math.ceil(seconds)
    written = tr.integer(n) if n == seconds else tr.decimal(seconds, 1)
    message = tr.ngettext(
        "The upload took longer than {seconds} second, so I stopped reading it; please send the photo again.",
        "The upload took longer than {seconds} seconds, so I stopped reading it; please send the photo again.",
        n,
        seconds=written,
    )
    return Refusal(408, "too_slow", message)


def cut_off(tr: Texts) -> Refusal:
    """The sender went away or broke the transfer encoding mid-upload."""
    return Refusal(400, "cut_off", tr.gettext("The upload was cut off; please send the photo again."))


def garbled(tr: Texts) -> Refusal:
    """A form aiohttp could not read."""
    return Refusal(400, "bad_request", tr.gettext("That upload was garbled; please send the photo again."))
