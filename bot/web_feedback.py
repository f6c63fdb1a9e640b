"""The web page's feedback: the choices under each face, `POST /api/feedback` for a press, `POST /api/why` for a
face's evidence, `GET /privacy` and `POST /api/forget`.

The page keeps nothing of an answer but the photo on show, and a press sends that photo again with the face's
number and the verdict: as on Telegram, where the button's data carries the answer, nothing about a pending
answer lives in this process. The server looks at the photo again (`worker.examine`, beside the queue) to know
what the model says of each face, so nothing of what the model said is taken from the client. A face of the page
is keyed by the photo itself (`web:<sha256 of the photo>:<n>`), so one photo sent from several browsers is one
face with several votes; the voter is the sender as the rate limit counts senders (an IPv4 address or an IPv6 /64).
A Why? link sends the photo again the same way (`worker.why`), with or without FEEDBACK; nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import html
import logging
import math

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from feedback.store import StoreUnavailable
from model.answers import PhotoAnswer

from .core import ChatCore, is_image
from .feedback import GONE, MAX_FEEDBACK_FACES, NEITHER, NOT_SAVED, THANKS, Feedback, slow_down
from .web_common import Refusal, cross_site, part_chunks, read_capped, refused, sender
from .web_guards import UploadSlots, WebGuards

__all__ = ["MAX_EXPLAINED_FACES", "add_feedback_routes", "explains", "face_choices", "privacy_page"]

log = logging.getLogger("doppelbot.web")

_FIELD_BYTES = 512  # `face` and `verdict`: a number and a class name
_FORM_SLACK = 64 * 1024  # the form's boundaries and part headers around the photo
_OFF = "Feedback is off for this bot."
_BUSY_RETRY = 60
_UPLOADS_RETRY = 5
# The page offers Why? under every face it lists; past this many a crowd's faces are too small to say much of.
MAX_EXPLAINED_FACES = 100
_NO_EVIDENCE = "This bot can't show what its answers rest on."


def face_choices(feedback: Feedback | None, answer: PhotoAnswer) -> list[list[dict[str, str]]] | None:
    """For each face, the buttons the chat adapters draw for it (`text`, and the `verdict` it sends: a class name
    or "neither"); None when no buttons are offered (feedback off, no face, too many faces)."""
    if feedback is None or not feedback.enabled or feedback.keyboard(answer) is None:
        return None
    faces = []
    for face in answer.faces:
        classes = list(face.probabilities)
        # The one-face keyboard: the same words (and ✓ on the model's answer) as under a chat reply.
        rows = feedback.keyboard(dataclasses.replace(answer, faces=[face])) or []
        choices = []
        for button in (button for row in rows for button in row):
            action = feedback.parse(button.data)
            if action is not None and (verdict := feedback.verdict(action, classes)) is not None:
                choices.append({"text": button.text, "verdict": verdict})
        faces.append(choices)
    return faces


def explains(core: ChatCore) -> bool:
    """Whether the page offers a Why? link under each face: the worker shows its evidence (`POST /api/why`)."""
    return callable(getattr(core.worker, "why", None))


def privacy_page(text: str, feedback_on: bool) -> str:
    """`/privacy`: the core's words in a small page of their own."""
    paragraphs = [f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip()]
    if feedback_on:
        paragraphs.append(
            "<p>On the web page, the <strong>Forget my feedback</strong> button at the foot of the page does what "
            "/forget does, for presses made from your address.</p>"
        )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n'
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '  <title>doppelbot: privacy</title>\n  <link rel="icon" href="data:,">\n'
        '  <link rel="stylesheet" href="static/page.css">\n</head>\n<body>\n'
        "  <header>\n    <h1>doppelbot <span>privacy</span></h1>\n  </header>\n"
        '  <main class="privacy">\n    ' + "\n    ".join(paragraphs) + "\n"
        '    <p><a href="./">Back to the page</a></p>\n  </main>\n</body>\n</html>\n'
    )


class _FeedbackRoutes:
    """The routes, holding the chat core whose `Feedback` they press."""

    def __init__(self, core: ChatCore, guards: WebGuards, slots: UploadSlots, model_problem) -> None:
        self.core, self.guards, self.slots, self.model_problem = core, guards, slots, model_problem

    def _feedback(self) -> Feedback | None:
        feedback = self.core.feedback
        return feedback if feedback is not None and feedback.enabled else None

    async def privacy(self, request: web.Request) -> web.Response:
        """What is kept, when, for how long, who sees it and how to delete it."""
        page = privacy_page(self.core.privacy_text(), self._feedback() is not None)
        return web.Response(text=page, content_type="text/html")

    async def forget(self, request: web.Request) -> web.Response:
        """Delete every face this sender marked from the page; say how many."""
        if cross_site(request, self.guards):
            return refused(403, "cross_site", "Only this page can ask to forget your feedback.")
        if self.core.feedback is None:
            return refused(404, "feedback_off", _OFF)
        reply = await self.core.feedback.forget("web", sender(request, self.guards))
        if reply.refused:  # the database could not be reached: nothing was deleted
            return refused(503, reply.refused, reply.text)
        return web.json_response({"outcome": "forgotten", "message": reply.text})

    async def press(self, request: web.Request) -> web.Response:
        """One press: the photo again, the face's number and the verdict; the face's votes now."""
        feedback = self._feedback()
        if feedback is None:
            return refused(404, "feedback_off", _OFF)
        if cross_site(request, self.guards):
            return refused(403, "cross_site", "Feedback can only be sent from this page.")
        if (problem := self.model_problem()) is not None:
            return refused(503, "no_model", problem, _BUSY_RETRY)
        if (too_large := self.core.refuse_size(max(0, (request.content_length or 0) - _FORM_SLACK))) is not None:
            return refused(413, "too_large", too_large.text)
        # A press examines the photo again: bounded with the uploads, so presses cannot crowd out the photos.
        if not self.slots.take():
            return refused(503, "busy", "I'm receiving too many photos at once; please try again.", _UPLOADS_RETRY)
        try:
            return await self._press(request, feedback)
        except Refusal as refusal:
            closing = request if refusal.status == 408 else None
            return refused(refusal.status, refusal.reason, refusal.message, refusal.retry_after, closing)
        finally:
            self.slots.give_back()

    async def _press(self, request: web.Request, feedback: Feedback) -> web.Response:
        from .worker import Busy  # the worker module stays out of adapters' imports

        data, fields = await self._read_form(request)
        face = _face_number(fields.get("face", ""))
        verdict = fields.get("verdict", "")
        if not verdict:
            raise Refusal(400, "bad_verdict", "verdict must be a class name, or neither.")
        try:
            examined = await self.core.worker.examine(data)
        except Busy:
            return refused(503, "busy", self.core.busy().text, _BUSY_RETRY)
        answer = examined.answer
        if (unanswered := _unanswered(answer)) is not None:
            return unanswered
        if face > len(answer.faces):
            return refused(400, "bad_face", _faces_in(len(answer.faces)))
        if feedback.keyboard(answer) is None:
            return refused(400, "bad_face", f"I take feedback on photos of up to {MAX_FEEDBACK_FACES} faces.")
        vote = feedback.vote(answer, face, verdict)
        if vote is None:
            classes = list(answer.faces[0].probabilities)
            return refused(400, "bad_verdict", f"verdict must be one of: {', '.join([*classes, NEITHER])}.")
        photo_key = hashlib.sha256(data).hexdigest()

        def key_of(n: int) -> str:
            return f"web:{photo_key}:{n}"

        user = sender(request, self.guards)
        # The photo was just looked at again: the press keeps its face from that look, not from another.
        pressed = await feedback.act(vote, key_of, None, "web", "page", user, examined)
        if pressed.toast == NOT_SAVED:
            return refused(503, "unavailable", NOT_SAVED)
        if pressed.toast == GONE:  # a new model with other classes came in meanwhile
            return refused(409, "changed", "The model changed meanwhile; please send the photo again.")
        if pressed.toast != THANKS:
            return refused(503, "busy", pressed.toast or self.core.busy().text, _BUSY_RETRY)
        try:
            votes = await asyncio.to_thread(feedback.store.votes, key_of(face))
        except StoreUnavailable:  # the press is kept; only its count could not be read back
            votes = {}
        return web.json_response({"outcome": "recorded", "message": THANKS, "votes": votes})

    async def why(self, request: web.Request) -> web.Response:
        """Why the model said what it did of face `?face=N` of the photo sent again (the form's `image`): the line
        and the picture of its evidence."""
        if not explains(self.core):
            return refused(404, "no_evidence", _NO_EVIDENCE)
        if cross_site(request, self.guards):
            return refused(403, "cross_site", "Only this page can ask why.")
        if (problem := self.model_problem()) is not None:
            return refused(503, "no_model", problem, _BUSY_RETRY)
        if (too_large := self.core.refuse_size(max(0, (request.content_length or 0) - _FORM_SLACK))) is not None:
            return refused(413, "too_large", too_large.text)
        # A look at the photo again: it counts against the sender's rate limit as a photo sent does, and it is
        # bounded with the uploads, as a press is.
        if (wait := await self.core.limiter.take(f"web:{sender(request, self.guards)}")) > 0:
            return refused(429, "rate_limited", slow_down(wait), max(1, math.ceil(wait)))
        if not self.slots.take():
            return refused(503, "busy", "I'm receiving too many photos at once; please try again.", _UPLOADS_RETRY)
        try:
            return await self._why(request)
        except Refusal as refusal:
            closing = request if refusal.status == 408 else None
            return refused(refusal.status, refusal.reason, refusal.message, refusal.retry_after, closing)
        finally:
            self.slots.give_back()

    async def _why(self, request: web.Request) -> web.Response:
        from .worker import Busy  # the worker module stays out of adapters' imports

        face = _face_number(request.query.get("face", ""), MAX_EXPLAINED_FACES)
        data, _ = await self._read_form(request)
        try:
            explained = await self.core.worker.why(data)
        except Busy:
            return refused(503, "busy", self.core.busy().text, _BUSY_RETRY)
        answer = explained.answer
        if (unanswered := _unanswered(answer)) is not None:
            return unanswered
        if face > len(explained.evidence):
            return refused(400, "bad_face", _faces_in(len(answer.faces)))
        evidence = explained.evidence[face - 1]
        # The picture rides in the JSON (base64): the page shows it from a data: URL, and nothing is kept here.
        return web.json_response({"outcome": "explained", "message": evidence.text, "evidence": evidence.to_json()})

    async def _read_form(self, request: web.Request) -> tuple[bytes, dict[str, str]]:
        """The form's photo (under the core's cap) and its small fields, within the upload deadline."""
        if not request.content_type.startswith("multipart/"):
            raise Refusal(400, "bad_request", "Send a form (multipart/form-data) with the fields image, face, verdict.")
        seconds = self.guards.upload_seconds
        try:
            async with asyncio.timeout(seconds):
                data, fields = await self._parts(request)
        except TimeoutError:
            raise Refusal(
                408, "too_slow", f"The upload took longer than {seconds:g} seconds; please try again."
            ) from None
        except (ConnectionError, HttpProcessingError) as e:
            log.info("a feedback upload was cut off: %s", e)
            raise Refusal(400, "cut_off", "The upload was cut off; please try again.") from None
        except (ValueError, AssertionError, RuntimeError) as e:  # aiohttp's words for a malformed form
            log.info("a malformed feedback form: %s", e)
            raise Refusal(400, "bad_request", "That form was garbled; please try again.") from None
        if data is None:
            raise Refusal(400, "no_photo", "Send the photo again as the form field `image`.")
        return data, fields

    async def _parts(self, request: web.Request) -> tuple[bytes | None, dict[str, str]]:
        data: bytes | None = None
        fields: dict[str, str] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in ("image", "face", "verdict"):
                await part.release()
            elif part.name == "image":
                if not is_image(part.headers.get("Content-Type"), part.filename):
                    raise Refusal(415, "not_an_image", self.core.not_an_image().text)
                data = await read_capped(part_chunks(part), self.core.max_bytes, None, self._too_large)
            else:
                name = part.name

                def too_long(size: int, name: str = name) -> Refusal:
                    return Refusal(400, f"bad_{name}", f"The field {name} is too long.")

                value = await read_capped(part_chunks(part), _FIELD_BYTES, None, too_long)
                fields[name] = value.decode("utf-8", "replace").strip()
        return data, fields

    def _too_large(self, size: int) -> Refusal:
        reply = self.core.refuse_size(max(size, self.core.max_bytes + 1))
        return Refusal(413, "too_large", reply.text if reply else "")


def _face_number(text: str, most: int = MAX_FEEDBACK_FACES) -> int:
    """The form's (or the query's) `face` (1-based, up to `most`), or a 400 refusal."""
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= most:
        raise Refusal(400, "bad_face", f"face must be a face's number, 1 to {most}, as the answer lists them.")
    return int(text)


def _faces_in(n: int) -> str:
    return "That photo has one face: face must be 1." if n == 1 else f"That photo has {n} faces: face must be 1 to {n}."


def add_feedback_routes(
    app: web.Application, core: ChatCore, guards: WebGuards, slots: UploadSlots, model_problem
) -> None:
    """`POST /api/feedback`, `POST /api/why`, `POST /api/forget` and `GET /privacy` on `app`; `slots`: the uploads'
    bound, shared."""
    routes = _FeedbackRoutes(core, guards, slots, model_problem)
    app.router.add_post("/api/feedback", routes.press)
    app.router.add_post("/api/why", routes.why)
    app.router.add_post("/api/forget", routes.forget)
    app.router.add_get("/privacy", routes.privacy)


def _unanswered(answer) -> web.Response | None:
    """The refusal for a photo looked at again that has no face to press on (None: it has faces)."""
    if answer.outcome == "ok":
        return None
    if answer.outcome == "error":
        return refused(422, "unreadable", answer.note or "")
    return refused(400, "no_face", answer.note or "")
