"""The web page's feedback: the choices under each face, `POST /api/feedback` for a press, `POST /api/why` for a
face's evidence, `GET /privacy` and `POST /api/forget`.

The page keeps nothing of an answer but the photo on show, and a press sends that photo again with the face's
number and the verdict: as on Telegram, where the button's data carries the answer, nothing about a pending
answer lives in this process. The server looks at the photo again (`worker.examine`, beside the queue) to know
what the model says of each face, so nothing of what the model said is taken from the client. A face of the page
is keyed by the photo itself (`web:<sha256 of the photo>:<n>`), so one photo sent from several browsers is one
face with several votes; the voter is the sender as the rate limit counts senders (an IPv4 address or an IPv6 /64).
A Why? link sends the photo again the same way (`worker.why`), with or without FEEDBACK; nothing of it is kept.
Every message is in the request's language (`web_common.texts_of`), as the page's own words are.
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
from .evidence_words import evidence_line
from .feedback import GONE, MAX_FEEDBACK_FACES, NEITHER, NOT_SAVED, THANKS, Feedback, slow_down
from .i18n import N_, Texts, texts_for
from .replies import no_answer_text
from .web_common import (
    Refusal,
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
from .web_guards import UploadSlots, WebGuards

__all__ = ["MAX_EXPLAINED_FACES", "add_feedback_routes", "explains", "face_choices", "privacy_page"]

log = logging.getLogger("doppelbot.web")

_FIELD_BYTES = 512  # `face` and `verdict`: a number and a class name
_FORM_SLACK = 64 * 1024  # the form's boundaries and part headers around the photo
_OFF = N_("Feedback is off for this bot.")
_BUSY_RETRY = 60
_UPLOADS_RETRY = 5
# The page offers Why? under every face it lists; past this many a crowd's faces are too small to say much of.
MAX_EXPLAINED_FACES = 100
_NO_EVIDENCE = N_("This bot can't show what its answers rest on.")


def face_choices(
    feedback: Feedback | None, answer: PhotoAnswer, tr: Texts | None = None
) -> list[list[dict[str, str]]] | None:
    """For each face, the buttons the chat adapters draw for it (`text`, in `tr`'s language, and the `verdict` it
    sends: a class name or "neither"); None when no buttons are offered (feedback off, no face, too many faces)."""
    if feedback is None or not feedback.enabled or feedback.keyboard(answer, tr=tr) is None:
        return None
    faces = []
    for face in answer.faces:
        classes = list(face.probabilities)
        # The one-face keyboard: the same words (and ✓ on the model's answer) as under a chat reply.
        rows = feedback.keyboard(dataclasses.replace(answer, faces=[face]), tr=tr) or []
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


def privacy_page(text: str, feedback_on: bool, tr: Texts | None = None) -> str:
    """`/privacy`: the core's words (in `tr`'s language, as this page's own) in a small page of their own."""
    tr = tr or texts_for("en")
    paragraphs = [f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip()]
    if feedback_on:
        # The button's name is the page's own words for it, in bold: escaped apart, then put in the sentence.
        button = "<strong>" + html.escape(tr.gettext("Forget my feedback")) + "</strong>"
        # TRANSLATORS: {button} is the name of the page's "Forget my feedback" button, shown in bold.
        sentence = tr.gettext(
            "On the web page, the {button} button at the foot of the page does what /forget does, for presses made "
            "from your address."
        )
        paragraphs.append(f"<p>{html.escape(sentence).replace('{button}', button)}</p>")
    title = html.escape(tr.gettext("doppelbot: privacy"))
    heading = html.escape(tr.gettext("Privacy"))  # the page's link to here, not the command's name (`privacy`)
    back = html.escape(tr.gettext("Back to the page"))
    lang, page = html.escape(tr.tag), html.escape(f"./?lang={tr.tag}")
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n  <meta charset="utf-8">\n'
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'  <title>{title}</title>\n  <link rel="icon" href="data:,">\n'
        '  <link rel="stylesheet" href="static/page.css">\n</head>\n<body>\n'
        f"  <header>\n    <h1>doppelbot <span>{heading}</span></h1>\n  </header>\n"
        '  <main class="privacy">\n    ' + "\n    ".join(paragraphs) + "\n"
        f'    <p><a href="{page}">{back}</a></p>\n  </main>\n</body>\n</html>\n'
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
        tr = texts_of(request, self.core)
        page = privacy_page(self.core.privacy_text(tr), self._feedback() is not None, tr)
        response = web.Response(text=page, content_type="text/html")
        response.headers["Content-Language"] = tr.tag
        response.headers["Vary"] = "Accept-Language, Cookie"
        return response

    async def forget(self, request: web.Request) -> web.Response:
        """Delete every face this sender marked from the page; say how many."""
        tr = texts_of(request, self.core)
        if cross_site(request, self.guards):
            return refused(403, "cross_site", tr.gettext("Only this page can ask to forget your feedback."))
        if self.core.feedback is None:
            return refused(404, "feedback_off", tr.gettext(_OFF))
        reply = await self.core.feedback.forget("web", sender(request, self.guards), tr=tr)
        if reply.refused:  # the database could not be reached: nothing was deleted
            return refused(503, reply.refused, reply.text)
        return web.json_response({"outcome": "forgotten", "message": reply.text})

    async def press(self, request: web.Request) -> web.Response:
        """One press: the photo again, the face's number and the verdict; the face's votes now."""
        tr = texts_of(request, self.core)
        feedback = self._feedback()
        if feedback is None:
            return refused(404, "feedback_off", tr.gettext(_OFF))
        if cross_site(request, self.guards):
            return refused(403, "cross_site", tr.gettext("Feedback can only be sent from this page."))
        if (problem := self.model_problem()) is not None:
            return refused(503, "no_model", problem, _BUSY_RETRY)
        if (too_large := self.core.refuse_size(max(0, (request.content_length or 0) - _FORM_SLACK), tr)) is not None:
            return refused(413, "too_large", too_large.text)
        try:
            # A press examines the photo again: bounded with the uploads, so presses cannot crowd out the photos.
            if not self.slots.take():
                raise uploads_busy(tr, _UPLOADS_RETRY)
            try:
                return await self._press(request, feedback, tr)
            finally:
                self.slots.give_back()
        except Refusal as refusal:
            closing = request if refusal.status == 408 else None
            return refused(refusal.status, refusal.reason, refusal.message, refusal.retry_after, closing)

    async def _press(self, request: web.Request, feedback: Feedback, tr: Texts) -> web.Response:
        from .worker import Busy  # the worker module stays out of adapters' imports

        data, fields = await self._read_form(request, tr)
        face = _face_number(fields.get("face", ""), tr)
        verdict = fields.get("verdict", "")
        if not verdict:
            # TRANSLATORS: "verdict" is the form field's name, sent as it is: keep it in English.
            raise Refusal(400, "bad_verdict", tr.gettext("verdict must be a class name, or neither."))
        try:
            examined = await self.core.worker.examine(data)
        except Busy:
            return refused(503, "busy", self.core.busy(tr).text, _BUSY_RETRY)
        answer = examined.answer
        if (unanswered := _unanswered(answer, tr)) is not None:
            return unanswered
        if face > len(answer.faces):
            return refused(400, "bad_face", _faces_in(len(answer.faces), tr))
        if feedback.keyboard(answer, tr=tr) is None:
            message = tr.ngettext(
                "I take feedback on photos of up to {n} face.",
                "I take feedback on photos of up to {n} faces.",
                MAX_FEEDBACK_FACES,
            )
            return refused(400, "bad_face", message)
        vote = feedback.vote(answer, face, verdict)
        if vote is None:
            classes = list(answer.faces[0].probabilities)
            # The verdicts are the API's own values, written as the form must send them: not translated.
            choices = ", ".join([*classes, NEITHER])
            # TRANSLATORS: "verdict" is the form field's name, and {choices} the values it takes: keep them as they are.
            return refused(400, "bad_verdict", tr.gettext("verdict must be one of: {choices}.", choices=choices))
        photo_key = hashlib.sha256(data).hexdigest()

        def key_of(n: int) -> str:
            return f"web:{photo_key}:{n}"

        user = sender(request, self.guards)
        # The photo was just looked at again: the press keeps its face from that look, not from another.
        pressed = await feedback.act(vote, key_of, None, "web", "page", user, examined, tr=tr)
        # The toast is in the user's language: which one it is, is told by its English original's translation.
        if pressed.toast == tr.gettext(NOT_SAVED):
            return refused(503, "unavailable", pressed.toast)
        if pressed.toast == tr.gettext(GONE):  # a new model with other classes came in meanwhile
            return refused(409, "changed", tr.gettext("The model changed meanwhile; please send the photo again."))
        if pressed.toast != tr.gettext(THANKS):
            return refused(503, "busy", pressed.toast or self.core.busy(tr).text, _BUSY_RETRY)
        try:
            votes = await asyncio.to_thread(feedback.store.votes, key_of(face))
        except StoreUnavailable:  # the press is kept; only its count could not be read back
            votes = {}
        return web.json_response({"outcome": "recorded", "message": pressed.toast, "votes": votes})

    async def why(self, request: web.Request) -> web.Response:
        """Why the model said what it did of face `?face=N` of the photo sent again (the form's `image`): the line
        and the picture of its evidence."""
        tr = texts_of(request, self.core)
        if not explains(self.core):
            return refused(404, "no_evidence", tr.gettext(_NO_EVIDENCE))
        if cross_site(request, self.guards):
            return refused(403, "cross_site", tr.gettext("Only this page can ask why."))
        if (problem := self.model_problem()) is not None:
            return refused(503, "no_model", problem, _BUSY_RETRY)
        if (too_large := self.core.refuse_size(max(0, (request.content_length or 0) - _FORM_SLACK), tr)) is not None:
            return refused(413, "too_large", too_large.text)
        # A look at the photo again: it counts against the sender's rate limit as a photo sent does, and it is
        # bounded with the uploads, as a press is.
        if (wait := await self.core.limiter.take(f"web:{sender(request, self.guards)}")) > 0:
            return refused(429, "rate_limited", slow_down(wait, tr=tr), max(1, math.ceil(wait)))
        try:
            if not self.slots.take():
                raise uploads_busy(tr, _UPLOADS_RETRY)
            try:
                return await self._why(request, tr)
            finally:
                self.slots.give_back()
        except Refusal as refusal:
            closing = request if refusal.status == 408 else None
            return refused(refusal.status, refusal.reason, refusal.message, refusal.retry_after, closing)

    async def _why(self, request: web.Request, tr: Texts) -> web.Response:
        from .worker import Busy  # the worker module stays out of adapters' imports

        face = _face_number(request.query.get("face", ""), tr, MAX_EXPLAINED_FACES)
        data, _ = await self._read_form(request, tr)
        try:
            explained = await self.core.worker.why(data)
        except Busy:
            return refused(503, "busy", self.core.busy(tr).text, _BUSY_RETRY)
        answer = explained.answer
        if (unanswered := _unanswered(answer, tr)) is not None:
            return unanswered
        if face > len(explained.evidence):
            return refused(400, "bad_face", _faces_in(len(answer.faces), tr))
        evidence = explained.evidence[face - 1]
        found = answer.faces[face - 1] if face <= len(answer.faces) else None
        line = evidence_line(evidence, found, tr)
        # The picture rides in the JSON (base64): the page shows it from a data: URL, and nothing is kept here.
        return web.json_response({"outcome": "explained", "message": line, "evidence": evidence.to_json()})

    async def _read_form(self, request: web.Request, tr: Texts) -> tuple[bytes, dict[str, str]]:
        """The form's photo (under the core's cap) and its small fields, within the upload deadline."""
        if not request.content_type.startswith("multipart/"):
            # TRANSLATORS: image, face and verdict are the form fields' names: keep them in English.
            message = tr.gettext("Send a form (multipart/form-data) with the fields image, face, verdict.")
            raise Refusal(400, "bad_request", message)
        seconds = self.guards.upload_seconds
        try:
            async with asyncio.timeout(seconds):
                data, fields = await self._parts(request, tr)
        except TimeoutError:
            raise too_slow(tr, seconds) from None
        except (ConnectionError, HttpProcessingError) as e:
            log.info("a feedback upload was cut off: %s", e)
            raise cut_off(tr) from None
        except (ValueError, AssertionError, RuntimeError) as e:  # aiohttp's words for a malformed form
            log.info("a malformed feedback form: %s", e)
            raise garbled(tr) from None
        if data is None:
            raise Refusal(400, "no_photo", tr.gettext("Send the photo again as the form field `image`."))
        return data, fields

    async def _parts(self, request: web.Request, tr: Texts) -> tuple[bytes | None, dict[str, str]]:
        data: bytes | None = None
        fields: dict[str, str] = {}

        def too_large(size: int) -> Refusal:
            reply = self.core.refuse_size(max(size, self.core.max_bytes + 1), tr)
            return Refusal(413, "too_large", reply.text if reply else "")

        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in ("image", "face", "verdict"):
                await part.release()
            elif part.name == "image":
                if not is_image(part.headers.get("Content-Type"), part.filename):
                    raise Refusal(415, "not_an_image", self.core.not_an_image(tr).text)
                data = await read_capped(part_chunks(part), self.core.max_bytes, None, too_large)
            else:
                name = part.name

                def too_long(size: int, name: str = name) -> Refusal:
                    return Refusal(400, f"bad_{name}", tr.gettext("The field {name} is too long.", name=name))

                value = await read_capped(part_chunks(part), _FIELD_BYTES, None, too_long)
                fields[name] = value.decode("utf-8", "replace").strip()
        return data, fields


def _face_number(text: str, tr: Texts, most: int = MAX_FEEDBACK_FACES) -> int:
    """The form's (or the query's) `face` (1-based, up to `most`), or a 400 refusal."""
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= most:
        # TRANSLATORS: "face" is the form field's name, sent as it is: keep it in English.
        message = tr.gettext(
            "face must be a face's number, 1 to {most}, as the answer lists them.", most=tr.integer(most)
        )
        raise Refusal(400, "bad_face", message)
    return int(text)


def _faces_in(n: int, tr: Texts) -> str:
    # TRANSLATORS: the second "face" is the form field's name, sent as it is: keep it in English.
    return tr.ngettext(
        "That photo has {n} face: face must be 1.", "That photo has {n} faces: face must be 1 to {n}.", n
    )


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


def _unanswered(answer, tr: Texts) -> web.Response | None:
    """The refusal for a photo looked at again that has no face to press on (None: it has faces)."""
    if answer.outcome == "ok":
        return None
    text = no_answer_text(answer, tr) or answer.note or ""
    if answer.outcome == "error":
        return refused(422, "unreadable", text)
    return refused(400, "no_face", text)
