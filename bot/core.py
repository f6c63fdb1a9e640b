"""The chat core: image bytes and a little context in, a reply out. Knows no chat service.

Every sentence a user reads is written here, once, so Telegram, Discord and the web page say the
same thing the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from model.answers import FaceAnswer, PhotoAnswer

__all__ = [
    "COMMAND_DESCRIPTIONS",
    "WHOIS_PHOTO_DESCRIPTION",
    "ChatCore",
    "ModelInfo",
    "RateLimiter",
    "Reply",
    "Request",
    "read_model_info",
]

log = logging.getLogger("doppelbot")

# The command menus chat apps show beside the text box (Telegram's setMyCommands, Discord's /whois).
COMMAND_DESCRIPTIONS = {
    "start": "What this bot does",
    "help": "How to ask, in private and in groups",
    "about": "The model and how accurate it is",
    "whois": "Who is in this photo? I answer for every face I find.",
}
WHOIS_PHOTO_DESCRIPTION = "A photo with one or more faces"


@dataclass(frozen=True)
class Reply:
    """What to send back: text, and a JPEG with numbered boxes when the photo has several faces."""

    text: str
    image: bytes | None = None
    answer: PhotoAnswer | None = None  # the model's answer, for adapters that show more than words
    refused: str | None = None  # why the model never saw the photo: "rate_limited", "too_large", "busy"


@dataclass(frozen=True)
class Request:
    """Who asks, for rate limits and logs: never the photo, never a token."""

    adapter: str  # "telegram", "discord", "web"
    chat_kind: str  # "private", "group", "guild", "dm", ...
    user: str  # a stable id within the adapter


@dataclass(frozen=True)
class ModelInfo:
    """What `/about` says of the model, from `export.json`.

    Read once, when the model is loaded, and kept with it (bot/app.py's loader): a newer model file that
    fails to load never has `/about` describing another model than the one answering.
    """

    classes: list[str]
    accuracy: float | None
    trained_at: str | None
    n_valid: int | None


def read_model_info(model_path: Path) -> ModelInfo | None:
    """The metadata the training script wrote beside the model, or None; the bot's loader calls it."""
    try:
        meta = json.loads(model_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return ModelInfo(list(meta.get("classes", [])), meta.get("accuracy"), meta.get("trained_at"), meta.get("n_valid"))


class RateLimiter:
    """At most `limit` photos per user in any `period` seconds (a sliding window)."""

    def __init__(self, limit: int, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def wait_for(self, user: str) -> float:
        """0 and the photo counts, or the seconds until this user may send another."""
        now, seen = self.clock(), self._seen[user]
        while seen and seen[0] <= now - self.period:
            seen.popleft()
        if len(seen) >= self.limit:
            return seen[0] + self.period - now
        seen.append(now)
        return 0.0


def _percent(p: float) -> str:
    return f"{p:.0%}"


def _neither(face: FaceAnswer) -> str:
    return "either of them" if len(face.probabilities) <= 2 else "any of them"


def face_line(face: FaceAnswer) -> str:
    """`Jessica Chastain, 97% sure`, `not sure (maybe Jessica Chastain, 55%)`, or someone else."""
    if not face.known:
        return f"someone who doesn't look like {_neither(face)} (closest: {face.label})"
    if face.sure:
        return f"{face.label}, {_percent(face.confidence)} sure"
    return f"not sure (maybe {face.label}, {_percent(face.confidence)})"


def describe(answer: PhotoAnswer, annotated: bytes | None = None) -> Reply:
    """The reply for the model's answer about one photo."""
    if answer.outcome != "ok":
        return Reply(answer.note or "Something went wrong with this photo.", answer=answer)
    if len(answer.faces) == 1:
        face = answer.faces[0]
        if not face.known:
            return Reply(f"This doesn't look like {_neither(face)}. Closest: {face.label}.", answer=answer)
        text = face_line(face)
        return Reply(text[0].upper() + text[1:], answer=answer)
    lines = [f"I found {len(answer.faces)} faces:"]
    lines += [f"{i}. {face_line(face)}" for i, face in enumerate(answer.faces, start=1)]
    return Reply("\n".join(lines), annotated, answer=answer)


class ChatCore:
    """Turns photos into replies through the inference worker, with a per-user rate limit."""

    def __init__(
        self,
        worker,
        limiter: RateLimiter,
        model_info: Callable[[], ModelInfo | None] = lambda: None,
        max_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self.worker = worker
        self.limiter = limiter
        self.model_info = model_info
        self.max_bytes = max_bytes

    # -- photos ------------------------------------------------------------------------------

    def refuse_size(self, size: int | None) -> Reply | None:
        """A reply refusing a file by its announced size, before it is downloaded; None if it may come."""
        if size is not None and size > self.max_bytes:
            mb = self.max_bytes / (1024 * 1024)
            return Reply(f"That file is {size / (1024 * 1024):.0f} MB; I can look at files up to {mb:.0f} MB.")
        return None

    def not_an_image(self) -> Reply:
        return Reply("That file isn't an image. Send me a photo (JPEG, PNG, WebP, GIF...) with a face in it.")

    def download_failed(self) -> Reply:
        return Reply("I couldn't download that file; please send it again.")

    def whois_without_photo(self) -> Reply:
        return Reply("Reply to a photo with /whois (or a mention of me) and I'll tell you who is in it.")

    def mention_hint(self) -> Reply:
        return Reply(
            "Mention me in a message with a photo attached, or reply to a photo and mention me, and I'll tell "
            "you who is in it. /whois with a photo works too."
        )

    def failed(self) -> Reply:
        return Reply("Sorry, something went wrong on my side. Please try again.")

    async def answer_photo(self, data: bytes, request: Request) -> Reply:
        """Classify one photo for `request`'s user and word the answer."""
        from .worker import Busy  # the worker module stays out of adapters' imports

        start = time.perf_counter()
        wait = self.limiter.wait_for(f"{request.adapter}:{request.user}")
        if wait > 0:
            self._log(request, "rate-limited", 0, start)
            return Reply(
                f"You're sending photos faster than I can look at them; try again in {wait:.0f} seconds.",
                refused="rate_limited",
            )
        if len(data) > self.max_bytes:
            self._log(request, "too-large", 0, start)
            return replace(self.refuse_size(len(data)), refused="too_large")
        try:
            result = await self.worker.classify(data)
        except Busy:
            self._log(request, "busy", 0, start)
            return Reply("I'm busy with a lot of photos right now; please try again in a minute.", refused="busy")
        answer = result.answer
        outcome = answer.error_kind if answer.outcome == "error" else answer.outcome
        self._log(request, outcome, len(answer.faces), start)
        return describe(answer, result.annotated)

    @staticmethod
    def _log(request: Request, outcome: str | None, faces: int, start: float) -> None:
        ms = (time.perf_counter() - start) * 1000
        log.info(
            "request adapter=%s chat=%s faces=%d outcome=%s ms=%.0f",
            request.adapter,
            request.chat_kind,
            faces,
            outcome,
            ms,
        )

    # -- commands ----------------------------------------------------------------------------

    def _names(self) -> str:
        info = self.model_info()
        if info is None or len(info.classes) < 2:
            return "two look-alike actresses"
        return ", ".join(info.classes[:-1]) + " or " + info.classes[-1]

    def start_text(self) -> str:
        return (
            f"Hi! Send me a photo and I'll tell you who is in it: {self._names()}. "
            "I answer for every face I find. /help for more, /about for the model."
        )

    def help_text(self) -> str:
        return (
            "Send a photo (or an image file) with one or more faces. For each face I say who it looks "
            f"like ({self._names()}) and how sure I am; with several faces I send the photo back with "
            "numbered boxes. In groups, mention me in the caption, or reply to a photo with a mention "
            "or /whois. I don't keep your photos."
        )

    def about_text(self) -> str:
        info = self.model_info()
        if info is None:
            return "I tell look-alikes apart by their faces. (No details about the current model are recorded.)"
        parts = [f"I tell {self._names()} apart, face by face."]
        if info.accuracy is not None:
            on = f" on {info.n_valid} faces it did not train on" if info.n_valid else ""
            parts.append(f"Validation accuracy: {info.accuracy:.1%}{on}.")
        if info.trained_at:
            parts.append(f"Trained: {info.trained_at[:10]}.")
        return " ".join(parts)
