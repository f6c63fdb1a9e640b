"""Users' feedback on answers: the buttons under a reply, what a press keeps, and what `/forget` removes; and the
"Why?" button beside them, which shows what the model compared the face with (kept: nothing).

Knows no chat service: each adapter draws the `Keyboard` it is given in its own way (Telegram's inline
keyboard, Discord's buttons, the page's) and hands back the `Button.data` pressed. Everything a press needs is
in that data and in the database, never in one process's memory, so a press works on any replica and after a
restart: which face (its number), which choice, and the model's label of every face of the answer (so each
keyboard can be drawn again). Nothing is kept until a press; then only that face (its aligned chip and
descriptor, taken again from the photo the answer replied to), never the photo, and the presser's id only as
a keyed hash (`feedback.store`). A Why? press takes the photo again too, and answers with the face's evidence (its
line and picture, `model.evidence`); it is offered even with FEEDBACK=off, where it is the only button.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from feedback.store import NEITHER, FaceSample, FeedbackStore, ModelSaid, StoreUnavailable, Vote
from model.answers import Examined, PhotoAnswer, display_name

from .evidence_words import evidence_line
from .i18n import ENGLISH, N_, Texts, texts_for
from .replies import Reply

__all__ = [
    "GONE",
    "MAX_FEEDBACK_FACES",
    "NEITHER",
    "NOT_SAVED",
    "THANKS",
    "WHY",
    "WHY_GONE",
    "Action",
    "Button",
    "Feedback",
    "Keyboard",
    "Pressed",
    "Shown",
    "slow_down",
]

log = logging.getLogger("doppelbot.feedback")

# Past this many faces no buttons are offered: a crowd's face 37 is not how anyone corrects a model, and every
# face's label rides in each button's data (one character each, within Telegram's 64 bytes).
MAX_FEEDBACK_FACES = 12
_PREFIX = "fb1"  # versioned: a keyboard drawn by an older bot is still read, or refused, knowingly
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # a class's index, one character: up to 36 classes
_NEITHER_CHOICE = "x"
_FACES_PER_ROW = 6
# Fetching the photo again for a press, within the ~15 s Telegram gives a callback query its answer (the user
# watches the button's spinner meanwhile).
_FETCH_SECONDS = 10.0

# In English: an adapter that shows one translates it (`tr.gettext(THANKS)`).
THANKS = N_("Thanks: sent for review")
NOT_SAVED = N_("Sorry, I couldn't save that right now; please try again later.")
GONE = N_("That photo is gone, so I can't keep this face.")
WHY = N_("Why?")
WHY_GONE = N_("That photo is gone, so I can't show why.")
_BUSY = N_("I'm busy with a lot of photos right now; please press again in a minute.")
_OFF = N_("Feedback is off for this bot.")


@dataclass(frozen=True)
class Button:
    """One button: its words, and the data the chat service hands back when it is pressed (<= 64 bytes)."""

    text: str
    data: str


Keyboard = list[list[Button]]  # rows of buttons


@dataclass(frozen=True)
class Action:
    """What a button's data asks: pick a face, go back to the faces, vote for a face, or see why the model said so."""

    kind: str  # "face", "back", "vote", "why"
    face: int  # 1-based; 0 with "back"
    choice: str | None  # with "vote": a class's index (one base-36 character) or "x" for neither
    labels: str  # the model's label of each face of the answer, one base-36 character each


@dataclass(frozen=True)
class Pressed:
    """What to show after a press: a short note for the presser (None: nothing to say) and the new keyboard."""

    toast: str | None
    keyboard: Keyboard | None  # None: leave the message's keyboard as it is


@dataclass(frozen=True)
class Shown:
    """What a Why? press shows the presser: the face's evidence (its line, and its picture when the model keeps
    training faces to show), or only a toast saying why not."""

    toast: str | None
    text: str | None = None
    picture: bytes | None = None  # JPEG


def slow_down(wait: float, tr: Texts | None = None) -> str:
    """What a Why? press past the rate limit is told: each look at a photo again counts as a photo sent."""
    return (tr or texts_for(ENGLISH)).ngettext(
        "You're asking faster than I can look; please try again in {n} second.",
        "You're asking faster than I can look; please try again in {n} seconds.",
        max(1, round(wait)),
    )


def _digit(i: int) -> str:
    return _DIGITS[i]


class Feedback:
    """The buttons under answers and what their presses do; `store=None` (FEEDBACK=off) shows only Why? (none
    without `why` either)."""

    def __init__(
        self,
        store: FeedbackStore | None,
        examine: Callable[[bytes], Awaitable],
        classes: Callable[[], list[str]],
        model_date: Callable[[], str | None] = lambda: None,
        counted: Callable[[str, str | None], None] | None = None,
        why: Callable[[bytes], Awaitable] | None = None,
    ) -> None:
        """`examine(data)`: the worker's `Examined` for a photo; `classes()`: the model's classes now;
        `counted(verdict, model)`: told of each recorded press ("right", "wrong" or "neither"), for /metrics;
        `why(data)`: the worker's `model.evidence.Explained` for a photo (None: no Why? button)."""
        self.store = store
        self._examine = examine
        self._classes = classes
        self._model_date = model_date
        self._counted = counted
        self._why = why

    @property
    def enabled(self) -> bool:
        """Whether presses are kept (FEEDBACK is on)."""
        return self.store is not None

    @property
    def explains(self) -> bool:
        """Whether answers carry a Why? button."""
        return self._why is not None

    # -- keyboards ---------------------------------------------------------------------------

    def keyboard(self, answer: PhotoAnswer | None, tr: Texts | None = None) -> Keyboard | None:
        """The buttons under an answer: the choices for its one face (and Why?), or its faces' numbers; None for no
        buttons."""
        if not (self.enabled or self.explains) or answer is None or answer.outcome != "ok" or not answer.faces:
            return None
        classes = list(answer.faces[0].probabilities)
        if len(answer.faces) > MAX_FEEDBACK_FACES or not 2 <= len(classes) <= len(_DIGITS):
            return None
        labels = _labels(answer, classes)
        if len(labels) == 1:
            return self._choices(1, labels, classes, {}, tr or texts_for(ENGLISH))
        return self._faces(labels)

    def vote(self, answer: PhotoAnswer, face: int, verdict: str) -> Action | None:
        """The press a button under `answer` sends to vote `verdict` (a class name or NEITHER) for face `face`
        (1-based); None when no such button is drawn (no buttons for this answer, no such face or class)."""
        if not self.enabled or self.keyboard(answer) is None or not 1 <= face <= len(answer.faces):
            return None
        classes = list(answer.faces[0].probabilities)
        if verdict != NEITHER and verdict not in classes:
            return None
        choice = _NEITHER_CHOICE if verdict == NEITHER else _digit(classes.index(verdict))
        return Action("vote", face, choice, _labels(answer, classes))

    @staticmethod
    def verdict(action: Action, classes: list[str]) -> str | None:
        """What a vote says, by `classes` (in the answers' order): a class name or NEITHER; None for a class index
        past them (a keyboard drawn by a model with more classes than `classes`) or an action that is no vote."""
        if action.kind != "vote" or action.choice is None:
            return None
        if action.choice == _NEITHER_CHOICE:
            return NEITHER
        index = _DIGITS.index(action.choice)
        return classes[index] if index < len(classes) else None

    def _faces(self, labels: str) -> Keyboard:
        numbers = [Button(str(n), f"{_PREFIX}:f:{n}:{labels}") for n in range(1, len(labels) + 1)]
        return [numbers[i : i + _FACES_PER_ROW] for i in range(0, len(numbers), _FACES_PER_ROW)]

    def _choices(self, face: int, labels: str, classes: list[str], votes: dict[str, int], tr: Texts) -> Keyboard:
        """One row per class (the model's answer marked ✓) and "Neither of them" (with feedback on), then a last
        row: with several faces "back", and "Why?"."""
        said = _DIGITS.index(labels[face - 1])
        rows = []
        if self.enabled:
            for i, name in enumerate(classes):
                text = ("✓ " if i == said else "") + display_name(name) + _count(votes.get(name, 0))
                rows.append([Button(text, f"{_PREFIX}:v:{face}:{_digit(i)}:{labels}")])
            neither = tr.gettext("Neither of them") + _count(votes.get(NEITHER, 0))
            rows.append([Button(neither, f"{_PREFIX}:v:{face}:x:{labels}")])
        last = []
        if len(labels) > 1:
            back = tr.gettext("« Back (face {face} of {faces})", face=face, faces=len(labels))
            last.append(Button(back, f"{_PREFIX}:b:{labels}"))
        if self.explains:
            last.append(Button(tr.gettext(WHY), f"{_PREFIX}:w:{face}:{labels}"))
        return [*rows, last] if last else rows

    def parse(self, data: str | None) -> Action | None:
        """The action a button's data asks for; None when it is not one of ours or does not hold together."""
        parts = (data or "").split(":")
        if len(parts) < 3 or parts[0] != _PREFIX:
            return None
        kind, labels = parts[1], parts[-1]
        if not labels or any(c not in _DIGITS for c in labels) or len(labels) > MAX_FEEDBACK_FACES:
            return None
        if kind == "b" and len(parts) == 3:
            return Action("back", 0, None, labels)
        if kind not in ("f", "v", "w") or len(parts) != (5 if kind == "v" else 4) or not parts[2].isdigit():
            return None
        face = int(parts[2])
        if not 1 <= face <= len(labels):
            return None
        if kind in ("f", "w"):
            return Action("face" if kind == "f" else "why", face, None, labels)
        choice = parts[3]
        if choice != _NEITHER_CHOICE and (len(choice) != 1 or choice not in _DIGITS):
            return None
        return Action("vote", face, choice, labels)

    # -- presses -----------------------------------------------------------------------------

    async def act(
        self,
        action: Action,
        key_of: Callable[[int], str],
        photo: Callable[[], Awaitable[bytes]] | None,
        adapter: str,
        chat_kind: str,
        user: str,
        examined: Examined | None = None,
        tr: Texts | None = None,
    ) -> Pressed:
        """Do what a press asks. `key_of(face)`: that face's key (the adapter knows the chat and the message);
        `photo()`: the asked-about photo's bytes again, fetched only for a face not yet kept (None: it is gone);
        `examined`: the photo already examined again, by an adapter that had to look at it (the web page).
        A Why? press is `explain`'s, not this. `tr`: the presser's language."""
        tr = tr or texts_for(ENGLISH)
        if self.store is None and not self.explains:
            return Pressed(tr.gettext(_OFF), [])  # a keyboard drawn before FEEDBACK=off: its buttons go
        classes = self._classes()
        if action.kind == "back":
            return Pressed(None, self._faces(action.labels))
        if action.kind == "face":
            votes = await self._votes(key_of(action.face)) if self.store is not None else {}
            return Pressed(None, self._choices(action.face, action.labels, classes, votes, tr))
        if action.kind != "vote":  # Why?: nothing to keep, nothing to redraw
            return Pressed(None, None)
        if self.store is None:  # a vote on a keyboard drawn before FEEDBACK=off: only its Why? stays
            return Pressed(tr.gettext(_OFF), self._choices(action.face, action.labels, classes, {}, tr))
        verdict = self.verdict(action, classes)
        if verdict is None:  # a keyboard drawn by a model with more classes than the one answering now
            return Pressed(tr.gettext(GONE), None)
        key = key_of(action.face)
        try:
            sample = None
            if not await asyncio.to_thread(self.store.has_face, key):
                sample = await self._sample(photo, action.face, examined)
                if isinstance(sample, str):
                    return Pressed(tr.gettext(sample), None)
            votes = await asyncio.to_thread(self.store.record, Vote(key, verdict, adapter, chat_kind, user), sample)
        except StoreUnavailable as e:
            log.warning("a feedback press was lost: the database is unavailable (%s)", type(e.__cause__).__name__)
            return Pressed(tr.gettext(NOT_SAVED), None)
        log.info("feedback adapter=%s chat=%s verdict=%s", adapter, chat_kind, _kind(verdict, action, classes))
        if self._counted is not None:
            self._counted(_kind(verdict, action, classes), self._model_date())
        return Pressed(tr.gettext(THANKS), self._choices(action.face, action.labels, classes, votes, tr))

    async def _votes(self, key: str) -> dict[str, int]:
        try:
            return await asyncio.to_thread(self.store.votes, key)
        except StoreUnavailable:
            return {}  # the choices are drawn without their counts

    async def _sample(
        self, photo: Callable[[], Awaitable[bytes]] | None, face: int, examined: Examined | None
    ) -> FaceSample | str:
        """Face `face` of the photo, taken again and examined: what the press keeps; or what to tell the presser."""
        from .core import Refused  # the core imports this module
        from .worker import Busy

        if examined is None:
            if photo is None:
                return GONE
            try:
                async with asyncio.timeout(_FETCH_SECONDS):
                    data = await photo()
                examined = await self._examine(data)
            except (Refused, TimeoutError):
                return GONE
            except Busy:
                return _BUSY
        answer = examined.answer
        if answer.outcome != "ok" or face > len(answer.faces) or face > len(examined.chips):
            return GONE  # not the photo that was answered (edited, or the model now finds other faces)
        found = answer.faces[face - 1]
        descriptor = None
        if examined.descriptors is not None:
            descriptor = np.asarray(examined.descriptors[face - 1], dtype=np.float32).tobytes()
        said = ModelSaid(found.label, found.confidence, found.distance, found.known, self._model_date())
        return FaceSample(examined.chips[face - 1], descriptor, said)

    async def explain(
        self,
        face: int,
        photo: Callable[[], Awaitable[bytes]] | None,
        labels: str | None = None,
        tr: Texts | None = None,
    ) -> Shown:
        """Why the model said what it did of face `face` (1-based) of the photo `photo()` fetches again (None: it is
        gone): its evidence, or a toast saying why not. `labels`: the answer's, from the button (the photo's faces
        must still be as many); `tr`: the presser's language. Nothing is kept."""
        from .core import Refused  # the core imports this module
        from .worker import Busy

        tr = tr or texts_for(ENGLISH)
        if self._why is None:
            return Shown(tr.gettext(_OFF))
        if photo is None:
            return Shown(tr.gettext(WHY_GONE))
        try:
            async with asyncio.timeout(_FETCH_SECONDS):
                data = await photo()
            explained = await self._why(data)
        except (Refused, TimeoutError):
            return Shown(tr.gettext(WHY_GONE))
        except Busy:
            return Shown(tr.gettext(_BUSY))
        faces = explained.answer.faces if explained.answer.outcome == "ok" else []
        if face > len(explained.evidence) or (labels is not None and len(labels) != len(faces)):
            return Shown(
                tr.gettext(WHY_GONE)
            )  # not the photo that was answered (edited, or the model now finds other faces)
        evidence = explained.evidence[face - 1]
        line = evidence_line(evidence, faces[face - 1] if face <= len(faces) else None, tr)
        # Under a crowd's answer the picture may come long after the press: it says which face it is about.
        text = tr.gettext("Face {face}: {evidence}", face=face, evidence=line) if len(faces) > 1 else line
        return Shown(None, text, evidence.picture)

    # -- the user's rights -------------------------------------------------------------------

    async def forget(self, adapter: str, user: str, tr: Texts | None = None) -> Reply:
        """Delete every face this user marked; say how many, in `tr`'s language."""
        tr = tr or texts_for(ENGLISH)
        if self.store is None:
            return Reply(
                tr.gettext("I keep nothing from anyone here: feedback is off, so there was nothing to delete.")
            )
        try:
            n = await asyncio.to_thread(self.store.forget, adapter, user)
        except StoreUnavailable:
            return Reply(
                tr.gettext(
                    "Sorry, I couldn't reach my records just now, so nothing was deleted; please try again later."
                ),
                refused="unavailable",
            )
        if n == 0:
            return Reply(tr.gettext("You haven't marked any faces, so there was nothing of yours to delete."))
        return Reply(
            tr.ngettext(
                "Done: I deleted the {n} face you marked, and your votes. Nothing else of yours is kept.",
                "Done: I deleted the {n} faces you marked, and your votes. Nothing else of yours is kept.",
                n,
            )
        )

    async def tally(self) -> dict[str, int] | None:
        """How many answers of the model answering now users marked right, wrong and neither; None: not known."""
        if self.store is None:
            return None
        try:
            return await asyncio.to_thread(self.store.tally, self._model_date())
        except StoreUnavailable:
            return None


def _labels(answer: PhotoAnswer, classes: list[str]) -> str:
    """The model's label of each face, one base-36 character each: what every button of the answer carries."""
    return "".join(_digit(classes.index(face.label)) for face in answer.faces)


def _count(n: int) -> str:
    return f" · {n}" if n else ""


def _kind(verdict: str, action: Action, classes: list[str]) -> str:
    """A vote as /metrics counts it: "right" (the model's label), "wrong" (another class) or "neither"."""
    if verdict == NEITHER:
        return "neither"
    said = _DIGITS.index(action.labels[action.face - 1])
    return "right" if said < len(classes) and classes[said] == verdict else "wrong"
