"""What the web app's routes share: refusals as JSON, bodies read under a cap, the same-origin rule, the sender.

Used by `web_adapter.py` (the page and `/api/classify`), `web_feedback.py` (presses, `/privacy`, `/api/forget`) and
`web_review.py` (the owner's review page).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from aiohttp import BodyPartReader, hdrs, web

from .web_guards import WebGuards, client_key

__all__ = [
    "FORWARDED_FOR",
    "SECURITY_HEADERS",
    "ClosingResponse",
    "Refusal",
    "chunks",
    "cross_site",
    "part_chunks",
    "read_capped",
    "refused",
    "sender",
]

CHUNK = 64 * 1024
FORWARDED_FOR = "X-Forwarded-For"
# Past the cap, a body without a Content-Length is still counted (not kept) this far, to say its size.
_COUNT_PAST_CAP = 4
# The page is one HTML file, one script and one style sheet, all our own; photos are shown from blob: URLs.
# A route may send a policy of its own (the review page's, which posts one form); these fill in the rest.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


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
