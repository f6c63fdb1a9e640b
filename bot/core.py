"""The chat core: image bytes and a little context in, a reply out. Knows no chat service.

Every sentence a user reads is written here, once, so Telegram, Discord and the web page say the
same thing the same way (the words for the model's answers, and how a reply is cut into messages each
chat service accepts, are in `replies.py`). So is the one photo flow every adapter goes through
(`ChatCore.answer`: type and announced size, rate limit, download, answer), and the one rule for what
counts as an image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model.resources import read_metadata

from .i18n import ENGLISH, N_, Texts, negotiate, texts_for
from .ratelimit import RateLimiter
from .replies import (
    DISCORD,
    MAX_FACES_LISTED,
    TELEGRAM,
    MessageLimits,
    Reply,
    describe,
    display_name,
    face_line,
    reply_messages,
)

__all__ = [
    "COMMAND_DESCRIPTIONS",
    "DISCORD",
    "IMAGE_SUFFIXES",
    "MAX_FACES_LISTED",
    "TELEGRAM",
    "WHOIS_PHOTO_DESCRIPTION",
    "ChatCore",
    "Indicator",
    "MessageLimits",
    "ModelInfo",
    "Photo",
    "RateLimiter",
    "Refused",
    "Reply",
    "Request",
    "bot_description",
    "command_descriptions",
    "describe",
    "display_name",
    "face_line",
    "is_image",
    "read_model_info",
    "reply_messages",
    "short_description",
    "showing",
]

log = logging.getLogger("doppelbot")

# The command menus chat apps show beside the text box (Telegram's setMyCommands, Discord's /whois), in English;
# `command_descriptions` gives them in a user's language.
COMMAND_DESCRIPTIONS = {
    "start": N_("What this bot does"),
    "help": N_("How to ask, in private and in groups"),
    "about": N_("The model and how accurate it is"),
    "whois": N_("Who is in this photo? I answer for every face I find."),
    "privacy": N_("What I keep, for how long, and who sees it"),
    "forget": N_("Delete every face you marked"),
}
WHOIS_PHOTO_DESCRIPTION = N_("A photo with one or more faces")


def command_descriptions(tr: Texts) -> dict[str, str]:
    """The command menu in `tr`'s language (each description within Telegram's 256 characters)."""
    return {command: tr.gettext(text) for command, text in COMMAND_DESCRIPTIONS.items()}


def bot_description(tr: Texts) -> str:
    """What a chat app shows on the bot's empty chat, before the first message (Telegram: at most 512)."""
    return tr.gettext(
        "Send me a photo and I'll tell you who is in it, face by face, and how sure I am. I tell look-alikes "
        "apart. I don't keep your photos."
    )


def short_description(tr: Texts) -> str:
    """The line on the bot's profile and in shared links (Telegram: at most 120)."""
    return tr.gettext("Who is in this photo? I tell look-alikes apart, face by face.")


# Names of the formats the decoder reads (model/decode.py): a file so named is looked at whatever type its
# sender declared (phones and scripts send photos as application/octet-stream).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
# Types that say nothing of what a file holds.
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# Photos being downloaded at once, over every adapter, when the caller does not say (`python -m bot` passes
# QUEUE_SIZE): each holds up to MAX_PHOTO_MB in memory until it is answered.
DEFAULT_MAX_DOWNLOADS = 32
# How long a photo past that bound waits for a download to finish before it is answered "busy": most photos
# arrive in a second or two, and a sender would rather wait a few seconds than be asked to send again.
DOWNLOAD_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Request:
    """Who asks, for rate limits and logs: never the photo, never a token."""

    adapter: str  # "telegram", "discord", "web"
    chat_kind: str  # "private", "group", "guild", "dm", ...
    user: str  # a stable id within the adapter
    language: str = ENGLISH  # the asker's language (one of `bot.i18n.LANGUAGES`): the reply's


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

    @classmethod
    def from_metadata(cls, meta: dict) -> ModelInfo:
        """From the metadata as the training script writes it (or the classifier service's `/about` sends it)."""
        return cls(list(meta.get("classes", [])), meta.get("accuracy"), meta.get("trained_at"), meta.get("n_valid"))


def read_model_info(model_path: Path) -> ModelInfo | None:
    """The metadata the training script wrote beside the model, or None; the bot's loader calls it."""
    meta = read_metadata(model_path)
    return None if meta is None else ModelInfo.from_metadata(meta)


@dataclass(frozen=True)
class Indicator:
    """A chat service's "typing..." status: `show()` puts it up for a few seconds, so it is shown every `every` s."""

    show: Callable[[], Awaitable[object]]
    every: float


@contextlib.asynccontextmanager
async def showing(indicator: Indicator | None) -> AsyncIterator[None]:
    """Keep `indicator` up while the block runs; failing to show it is logged, never raised."""
    if indicator is None:
        yield
        return
    task = asyncio.create_task(_keep_showing(indicator))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _keep_showing(indicator: Indicator) -> None:
    while True:
        try:
            await indicator.show()
        except Exception as e:  # any failure: a missing "typing..." must never cost the answer
            log.debug("could not show that the bot is working: %s", type(e).__name__)
        await asyncio.sleep(indicator.every)


# -- the photo flow ------------------------------------------------------------------------------


def is_image(content_type: str | None, name: str | None = None) -> bool:
    """Whether a file is worth fetching as a photo, from what its sender declared: every adapter's one rule.

    An image type, or a name with an image suffix, is looked at. So is a file that says nothing of itself
    (no type or octet-stream, and no suffix): the decoder checks the bytes anyway. Another declared type (a
    PDF, a text) or another suffix is refused unread.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    suffix = PurePosixPath(name or "").suffix.lower()
    return kind.startswith("image/") or suffix in IMAGE_SUFFIXES or (kind in _UNTYPED and not suffix)


@dataclass(frozen=True)
class Photo:
    """A file a user sent, as the chat service announces it, and how to fetch it: not fetched yet."""

    download: Callable[[], Awaitable[bytes]]  # raises `Refused` to answer with its reply instead
    size: int | None = None  # as announced; None when the service does not say
    content_type: str | None = None
    name: str | None = None


class Refused(Exception):
    """Raised by a `Photo.download` that cannot or must not fetch the photo; `reply` tells the user why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.refused or reply.text)
        self.reply = reply


class ChatCore:
    """Turns photos into replies through the inference worker, with a per-user rate limit.

    At most `max_downloads` photos are downloaded at once, whichever adapters they come from: the memory
    downloads hold is bounded by it, times the largest photo taken. One more waits up to `download_wait` seconds
    for a place, then hears "busy".
    """

    def __init__(
        self,
        worker,
        limiter: RateLimiter,
        model_info: Callable[[], ModelInfo | None] = lambda: None,
        max_bytes: int = 20 * 1024 * 1024,
        max_faces_listed: int = MAX_FACES_LISTED,
        operations=None,
        max_downloads: int = DEFAULT_MAX_DOWNLOADS,
        download_wait: float = DOWNLOAD_WAIT_SECONDS,
        feedback=None,
        keep_days: float | None = None,
        default_language: str = ENGLISH,
    ) -> None:
        """`feedback`: a `bot.feedback.Feedback` (None: no buttons, nothing kept); `keep_days`: FEEDBACK_KEEP_DAYS,
        as `/privacy` says it; `default_language`: DEFAULT_LANGUAGE, for users whose language we do not speak."""
        self.worker = worker
        self.default_language = texts_for(default_language).code
        self.feedback = feedback
        self.keep_days = keep_days
        self.operations = operations  # `bot.operations.Operations`: counts every photo for /metrics
        self.limiter = limiter
        self.model_info = model_info
        self.max_bytes = max_bytes
        self.max_faces_listed = max_faces_listed
        self.max_downloads, self.download_wait = max_downloads, download_wait
        self._downloads = asyncio.Semaphore(max_downloads)

    # -- languages ---------------------------------------------------------------------------

    def texts(self, *tags: str | None) -> Texts:
        """The words for a user whose app names these languages, most preferred first (None: it names none):
        the first we speak, else DEFAULT_LANGUAGE."""
        return texts_for(negotiate(tags, self.default_language))

    def _tr(self, tr: Texts | None) -> Texts:
        return tr if tr is not None else texts_for(self.default_language)

    # -- photos ------------------------------------------------------------------------------

    def refuse_size(self, size: int | None, tr: Texts | None = None) -> Reply | None:
        """A reply refusing a file by its announced size, before it is downloaded; None if it may come."""
        if size is not None and size > self.max_bytes:
            tr = self._tr(tr)
            text = tr.gettext(
                "That file is {size} MB; I can look at files up to {most} MB.",
                size=tr.integer(round(size / (1024 * 1024))),
                most=tr.integer(round(self.max_bytes / (1024 * 1024))),
            )
            return Reply(text, refused="too_large")
        return None

    def not_an_image(self, tr: Texts | None = None) -> Reply:
        """The reply to a file that is not an image (or a sticker, a video, a voice note)."""
        text = self._tr(tr).gettext(
            "That file isn't an image. Send me a photo (JPEG, PNG, WebP, GIF...) with a face in it."
        )
        return Reply(text, refused="not_an_image")

    def download_failed(self, tr: Texts | None = None) -> Reply:
        """The reply when the chat service would not hand over the photo."""
        text = self._tr(tr).gettext("I couldn't download that file; please send it again.")
        return Reply(text, refused="download_failed")

    def whois_without_photo(self, tr: Texts | None = None) -> Reply:
        """The reply to /whois (or a mention) with no photo to look at."""
        return Reply(
            self._tr(tr).gettext("Reply to a photo with /whois (or a mention of me) and I'll tell you who is in it.")
        )

    def mention_hint(self, tr: Texts | None = None) -> Reply:
        """The reply to a mention with no photo, where mentions are how one asks (Discord)."""
        return Reply(
            self._tr(tr).gettext(
                "Mention me in a message with a photo attached, or reply to a photo and mention me, and I'll tell "
                "you who is in it. /whois with a photo works too."
            )
        )

    def failed(self, tr: Texts | None = None) -> Reply:
        """The apology for a failure of ours."""
        return Reply(self._tr(tr).gettext("Sorry, something went wrong on my side. Please try again."))

    async def answer(self, photo: Photo, request: Request, working: Indicator | None = None) -> Reply:
        """Every adapter's photo flow: refuse by type and announced size, rate-limit, download, then answer.

        Nothing is downloaded for a photo that is refused, nor for a user at the rate limit. A photo counts
        against the limit once it is downloaded and fits, whatever the model then finds in it; one that is
        turned away as "busy" after that still counts (see `bot.ratelimit`). `working` ("typing...") is shown
        from the download to the answer.
        """
        from .worker import Busy  # the worker module stays out of adapters' imports

        start = time.perf_counter()
        tr = texts_for(request.language)
        if not is_image(photo.content_type, photo.name):
            refused = self.not_an_image(tr)
        else:
            refused = self.refuse_size(photo.size, tr)
        if refused is not None:
            return self._refusal(request, refused, start)
        user = f"{request.adapter}:{request.user}"
        if (wait := await self.limiter.wait(user)) > 0:
            return self._refusal(request, self.slow_down(wait, tr), start)
        try:
            async with showing(working):
                data = await self._download(photo, tr)
                if (refused := self.refuse_size(len(data), tr)) is not None:  # announced less than it held, or nothing
                    return self._refusal(request, refused, start)
                if (wait := await self.limiter.take(user)) > 0:  # its other photos got there while this one came
                    return self._refusal(request, self.slow_down(wait, tr), start)
                result = await self.worker.classify(data)
        except Refused as refusal:
            return self._refusal(request, refusal.reply, start)
        except Busy:
            return self._refusal(request, self.busy(tr), start)
        answer = result.answer
        outcome = answer.error_kind if answer.outcome == "error" else answer.outcome
        self._log(request, outcome, len(answer.faces), start)
        if self.operations is not None:
            self.operations.answered(request.adapter, outcome or "error", time.perf_counter() - start)
        return describe(answer, result.annotated, self.max_faces_listed, tr)

    def busy(self, tr: Texts | None = None) -> Reply:
        """The reply when more photos wait than the bot takes at once."""
        text = self._tr(tr).gettext("I'm busy with a lot of photos right now; please try again in a minute.")
        return Reply(text, refused="busy")

    async def _download(self, photo: Photo, tr: Texts) -> bytes:
        """`photo.download()` once one of the `max_downloads` places is free; `Refused` ("busy") if none frees in
        time."""
        try:
            async with asyncio.timeout(self.download_wait):
                await self._downloads.acquire()
        except TimeoutError:
            log.info("a photo waited %g s to be downloaded and was answered busy", self.download_wait)
            raise Refused(self.busy(tr)) from None
        try:
            return await photo.download()
        finally:
            self._downloads.release()

    async def answer_photo(self, data: bytes, request: Request) -> Reply:
        """`answer` for a photo already in memory (scripts, benchmarks, tests): nothing left to download."""

        async def in_hand() -> bytes:
            return data

        return await self.answer(Photo(in_hand, len(data)), request)

    def slow_down(self, wait: float, tr: Texts | None = None) -> Reply:
        """The reply to a user past the rate limit: when they may send again."""
        seconds = max(1, round(wait))
        text = self._tr(tr).ngettext(
            "You're sending photos faster than I can look at them; try again in {n} second.",
            "You're sending photos faster than I can look at them; try again in {n} seconds.",
            seconds,
        )
        return Reply(text, refused="rate_limited", retry_after=wait)

    def _refusal(self, request: Request, reply: Reply, start: float) -> Reply:
        self._log(request, (reply.refused or "refused").replace("_", "-"), 0, start)
        if self.operations is not None:
            self.operations.refused(request.adapter, reply.refused or "refused")
        return reply

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

    def _names(self, tr: Texts) -> str:
        """The model's people, as who a face may be: "A or B"."""
        info = self.model_info()
        if info is None or len(info.classes) < 2:
            return tr.gettext("two look-alike actresses")
        return tr.either([display_name(name) for name in info.classes])  # names are never translated

    def start_text(self, tr: Texts | None = None) -> str:
        """`/start`: what the bot does."""
        tr = self._tr(tr)
        return tr.gettext(
            "Hi! Send me a photo and I'll tell you who is in it: {names}. I answer for every face I find. "
            "/help for more, /about for the model.",
            names=self._names(tr),
        )

    def help_text(self, tr: Texts | None = None) -> str:
        """`/help`: how to ask, in private and in groups, and what is kept."""
        tr = self._tr(tr)
        asking = tr.gettext(
            "Send a photo (or an image file) with one or more faces. For each face I say who it looks like "
            "({names}) and how sure I am; with several faces I send the photo back with numbered boxes. In "
            "groups, mention me in the caption, or reply to a photo with a mention or /whois.",
            names=self._names(tr),
        )
        return f"{asking} {self._keeping(tr)}"

    def _keeping(self, tr: Texts) -> str:
        if not self._asks_feedback():
            return tr.gettext("I don't keep your photos.")
        return tr.gettext(
            "The buttons under an answer tell me who it really is, so a person can check it and I can learn; "
            "/privacy says what a press keeps, /forget deletes it. I don't keep your photos."
        )

    def _asks_feedback(self) -> bool:
        return self.feedback is not None and self.feedback.enabled

    def privacy_text(self, tr: Texts | None = None) -> str:
        """What is kept, when, for how long, who sees it, and how to delete it: in plain words."""
        tr = self._tr(tr)
        if not self._asks_feedback():
            return tr.gettext(
                "I keep nothing. Your photos are looked at in memory and forgotten as soon as I answer; this bot "
                "asks for no feedback, so no face, name or id of yours is stored."
            )
        paragraphs = [
            tr.gettext(
                "What I keep: nothing, unless you press one of the buttons under an answer. A press keeps that one "
                "face (a small cut-out of it, never your whole photo), the numbers the model worked out from it, "
                "what the model said and what you said, where it was asked (Telegram, Discord or the web page, "
                "private or group) and when, and a scrambled form of your user id that only lets /forget find "
                "your presses (never your name or username)."
            ),
            tr.gettext(
                "Who sees it: only the owner of this bot, who checks each face before it may be used to train the "
                "model."
            ),
            self._how_long(tr),
            tr.gettext("Delete: /forget deletes every face you marked, at any time, and says how many."),
        ]
        return "\n".join(paragraphs)

    def _how_long(self, tr: Texts) -> str:
        days = self.keep_days
        if not days:
            return tr.gettext(
                "How long: faces nobody has checked are deleted after a while; checked ones are kept to train "
                "future models, until you delete them."
            )
        if float(days).is_integer():
            return tr.ngettext(
                "How long: faces nobody has checked are deleted after {n} day; checked ones are kept to train "
                "future models, until you delete them.",
                "How long: faces nobody has checked are deleted after {n} days; checked ones are kept to train "
                "future models, until you delete them.",
                int(days),
            )
        return tr.ngettext(
            "How long: faces nobody has checked are deleted after {n} hour; checked ones are kept to train "
            "future models, until you delete them.",
            "How long: faces nobody has checked are deleted after {n} hours; checked ones are kept to train "
            "future models, until you delete them.",
            max(1, round(days * 24)),
        )

    async def forget(self, adapter: str, user: str, tr: Texts | None = None) -> Reply:
        """`/forget`: delete every face `user` marked, and say how many; without feedback, that nothing is kept."""
        tr = self._tr(tr)
        if self.feedback is None:
            return Reply(self.privacy_text(tr))
        return await self.feedback.forget(adapter, user, tr)

    async def about(self, tr: Texts | None = None) -> str:
        """`about_text`, and how many of this model's answers users marked right, wrong and neither."""
        tr = self._tr(tr)
        text = self.about_text(tr)
        tally = await self.feedback.tally() if self._asks_feedback() else None
        if tally and sum(tally.values()):
            marked = tr.gettext(
                "Users marked {right} of its answers right, {wrong} wrong and {neither} as neither of them.",
                right=tr.integer(tally.get("right", 0)),
                wrong=tr.integer(tally.get("wrong", 0)),
                neither=tr.integer(tally.get("neither", 0)),
            )
            text += " " + marked
        return text

    def about_text(self, tr: Texts | None = None) -> str:
        """`/about`: the model, how accurate it is and when it was trained."""
        tr = self._tr(tr)
        info = self.model_info()
        if info is None:
            return tr.gettext(
                "I tell look-alikes apart by their faces. (No details about the current model are recorded.)"
            )
        parts = [tr.gettext("Face by face, I tell whether it is {names}.", names=self._names(tr))]
        if info.accuracy is not None:
            accuracy = tr.percent(info.accuracy, decimals=1)
            if info.n_valid:
                parts.append(
                    tr.ngettext(
                        "Validation accuracy: {accuracy} on {n} face it did not train on.",
                        "Validation accuracy: {accuracy} on {n} faces it did not train on.",
                        info.n_valid,
                        accuracy=accuracy,
                    )
                )
            else:
                parts.append(tr.gettext("Validation accuracy: {accuracy}.", accuracy=accuracy))
        if info.trained_at:
            parts.append(tr.gettext("Trained: {date}.", date=_date(tr, info.trained_at)))
        return " ".join(parts)


def _date(tr: Texts, iso: str) -> str:
    try:
        return tr.date(iso)
    except ValueError:  # not a date: as the training script wrote it
        return iso[:10]
