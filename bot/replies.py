"""Replies: the words for the model's answer about a photo, and each chat service's message limits.

`describe` turns an answer into one reply; `reply_messages` cuts it into the messages a chat service
accepts, the boxed photo first.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.answers import FaceAnswer, PhotoAnswer, TurnedAway, display_name

from .i18n import ENGLISH, N_, Texts, texts_for

__all__ = [
    "DISCORD",
    "MAX_FACES_LISTED",
    "TELEGRAM",
    "MessageLimits",
    "Reply",
    "describe",
    "display_name",
    "face_line",
    "listed_numbers",
    "no_answer_text",
    "quality_reason",
    "reply_messages",
]

# A crowd photo lists this many faces, then "and N more": past about 20 lines a list stops being read.
MAX_FACES_LISTED = 20


@dataclass(frozen=True)
class Reply:
    """What to send back: text, and a JPEG with numbered boxes when the photo has several faces."""

    text: str
    image: bytes | None = None
    answer: PhotoAnswer | None = None  # the model's answer, for adapters that show more than words
    # Why the model never saw the photo: "not_an_image", "too_large", "rate_limited", "download_failed", "busy".
    refused: str | None = None
    retry_after: float | None = None  # with "rate_limited": seconds until this user may send again


def _neither(face: FaceAnswer, tr: Texts, name: str) -> str:
    """ "someone who doesn't look like either of them (closest: X)": two classes read "either", more "any"."""
    if len(face.probabilities) <= 2:
        return tr.gettext("someone who doesn't look like either of them (closest: {name})", name=name)
    return tr.gettext("someone who doesn't look like any of them (closest: {name})", name=name)


# Why a face is not named, in a group photo's line (the quality verdicts of model/quality.py).
_NOT_NAMED = {
    "side_on": N_("not named: turned side-on, send a photo where it is facing the camera"),
    "too_dark": N_("not named: too dark, send a photo where it is in better light"),
    "washed_out": N_("not named: washed out, send a photo where it is in softer light"),
    "blurred": N_("not named: blurred, send a photo where it is sharper"),
}
# Why the one face of a photo is not named, in a sentence of its own.
_REASON = {
    "side_on": N_("This face is turned side-on: send one that faces the camera."),
    "too_dark": N_("This face is too dark: send a photo taken in better light."),
    "washed_out": N_("This face is washed out by the light: send a photo that is less bright."),
    "blurred": N_("This face is blurred: send a sharper photo."),
}
# What a photo's faces would need, after "send a photo where they are ...".
_INSTEAD = {
    "too_small": N_("closer"),
    "side_on": N_("facing the camera"),
    "too_dark": N_("in better light"),
    "washed_out": N_("in softer light"),
    "blurred": N_("sharper"),
}


def _width(measures: dict[str, float]) -> int:
    return round(measures.get("width", 0))


def _not_named(face: FaceAnswer | TurnedAway, tr: Texts) -> str:
    if face.quality == "too_small":
        return tr.ngettext(
            "not named: only {n} pixel wide, send a closer photo",
            "not named: only {n} pixels wide, send a closer photo",
            _width(face.measures),
        )
    if face.quality in _NOT_NAMED:
        return tr.gettext(_NOT_NAMED[face.quality])
    return tr.gettext("not named: not clear enough, send a clearer photo")


def quality_reason(face: FaceAnswer | TurnedAway, tr: Texts) -> str:
    """Why a face below quality is not named, and what to send instead, in a sentence of its own."""
    if face.quality == "too_small":
        return tr.ngettext(
            "This face is only {n} pixel wide: send a closer photo.",
            "This face is only {n} pixels wide: send a closer photo.",
            _width(face.measures),
        )
    if face.quality in _REASON:
        return tr.gettext(_REASON[face.quality])
    return tr.gettext("This face is not clear enough: send a clearer photo.")


def _how_many(quality: str, n: int, tr: Texts) -> str:
    """ "2 are too small", "1 is blurred": one part of the reasons several faces were all turned away."""
    if quality == "too_small":
        return tr.ngettext("{n} is too small", "{n} are too small", n)
    if quality == "side_on":
        return tr.ngettext("{n} is turned side-on", "{n} are turned side-on", n)
    if quality == "too_dark":
        return tr.ngettext("{n} is too dark", "{n} are too dark", n)
    if quality == "washed_out":
        return tr.ngettext("{n} is washed out", "{n} are washed out", n)
    if quality == "blurred":
        return tr.ngettext("{n} is blurred", "{n} are blurred", n)
    return tr.ngettext("{n} is not clear enough", "{n} are not clear enough", n)


def _reasons(faces: list[TurnedAway], tr: Texts) -> str:
    """ "2 are too small and 1 is blurred: send a photo where they are closer and sharper." """
    qualities = [face.quality for face in faces]
    counts = {q: qualities.count(q) for q in dict.fromkeys(qualities)}
    listed = tr.all_of([_how_many(q, n, tr) for q, n in counts.items()])
    instead = [tr.gettext(_INSTEAD[q]) for q in counts if q in _INSTEAD]
    if not instead:
        return tr.gettext("{listed}.", listed=listed)
    return tr.gettext("{listed}: send a photo where they are {instead}.", listed=listed, instead=tr.all_of(instead))


def _no_face(answer: PhotoAnswer, tr: Texts) -> str:
    """ "No face found", or the faces seen and turned away, and why."""
    away = answer.turned_away
    if len(away) == 1:
        return tr.gettext("I found a face but can't name it. {reason}", reason=quality_reason(away[0], tr))
    if away:
        found = tr.ngettext(
            "I found {n} face but can't name any of them.", "I found {n} faces but can't name any of them.", len(away)
        )
        why = _reasons(away, tr)
        return f"{found} {why[0].upper()}{why[1:]}"
    if answer.too_small:  # an older classifier service, which sends only the count
        return tr.gettext("The faces in this photo are too small for me to recognise; try a closer photo.")
    return tr.gettext("I can't find a face in this photo.")


def _error(answer: PhotoAnswer, tr: Texts) -> str:
    """Why a photo could not be read, from the error's kind and numbers (the model's sentence is English)."""
    kind, d = answer.error_kind, answer.details
    if kind == "NotAnImage":
        if d.get("size") == 0:
            return tr.gettext("That file is empty.")
        return tr.gettext("That file isn't an image I can read (I take JPEG, PNG, GIF, WebP, BMP, TIFF).")
    if kind == "FileTooLarge" and "max_bytes" in d:
        most = tr.integer(round(d["max_bytes"] / 2**20))
        if "size" in d:
            size = tr.integer(round(d["size"] / 2**20))
            return tr.gettext("This file is {size} MB; I can take files up to {most} MB.", size=size, most=most)
        return tr.gettext("This file is over {most} MB; I can take files up to {most} MB.", most=most)
    if kind == "TooManyPixels":
        if "max_pixels" in d:
            return tr.gettext(
                "This image is {width}x{height} pixels; I can take up to {most} megapixels.",
                width=d["width"],
                height=d["height"],
                most=tr.integer(round(d["max_pixels"] / 1e6)),
            )
        return tr.gettext("This image has far too many pixels for me to open.")
    if kind == "TruncatedImage":
        return tr.gettext("This image file is cut short or damaged, so I can't read it.")
    if kind == "ImageTooSmall" and "width" in d:
        return tr.gettext(
            "This image is only {width}x{height} pixels, too small to recognise a face in.",
            width=d["width"],
            height=d["height"],
        )
    if kind == "PhotoTimeout":
        return tr.gettext("This photo took too long to look at, so I gave up on it.")
    if kind == "PhotoCrashed":
        return tr.gettext("This photo made my face finder crash, so I can't answer it.")
    if kind == "ModelNotFound":
        return tr.gettext("I have no model to answer with yet: the owner of this bot has to make one first.")
    return tr.gettext("Something went wrong reading this photo.")


def no_answer_text(answer: PhotoAnswer, tr: Texts | None = None) -> str | None:
    """Why there is no answer, in `tr`'s language: no face (or none to name), or an error; None for an answer."""
    tr = tr or texts_for(ENGLISH)
    if answer.outcome == "no_face":
        return _no_face(answer, tr)
    if answer.outcome == "error":
        return _error(answer, tr)
    return None


def face_line(face: FaceAnswer, tr: Texts | None = None) -> str:
    """`Jessica Chastain, 97% sure`, `not sure (maybe Jessica Chastain, 55%)`, someone else, or why a face is not
    named: `not named: only 38 pixels wide, send a closer photo`."""
    tr = tr or texts_for(ENGLISH)
    if face.quality != "ok":
        return _not_named(face, tr)
    name = display_name(face.label)  # names are never translated
    if not face.known:
        return _neither(face, tr, name)
    confidence = tr.percent(face.confidence)
    if face.sure:
        return tr.gettext("{name}, {confidence} sure", name=name, confidence=confidence)
    return tr.gettext("not sure (maybe {name}, {confidence})", name=name, confidence=confidence)


def describe(
    answer: PhotoAnswer, annotated: bytes | None = None, max_listed: int = MAX_FACES_LISTED, tr: Texts | None = None
) -> Reply:
    """The reply for the model's answer about one photo, in `tr`'s language; a crowd's list stops after
    `max_listed` faces."""
    tr = tr or texts_for(ENGLISH)
    if answer.outcome != "ok":
        return Reply(no_answer_text(answer, tr) or tr.gettext("Something went wrong with this photo."), answer=answer)
    if len(answer.faces) == 1:
        face = answer.faces[0]
        if not face.known and face.quality == "ok":
            closest = display_name(face.label)
            if len(face.probabilities) <= 2:
                text = tr.gettext("This doesn't look like either of them. Closest: {name}.", name=closest)
            else:
                text = tr.gettext("This doesn't look like any of them. Closest: {name}.", name=closest)
            return Reply(text, answer=answer)
        text = face_line(face, tr)
        return Reply(text[0].upper() + text[1:], answer=answer)
    listed = listed_numbers(answer.faces, max_listed)
    lines = [tr.ngettext("I found {n} face:", "I found {n} faces:", len(answer.faces))]
    lines += [f"{number}. {face_line(answer.faces[number - 1], tr)}" for number in listed]
    if more := len(answer.faces) - len(listed):
        # Those left out are the smallest; the boxed photo still numbers them all.
        if annotated:
            lines.append(
                tr.ngettext("and {n} more, numbered on the photo.", "and {n} more, numbered on the photo.", more)
            )
        else:
            lines.append(tr.ngettext("and {n} more.", "and {n} more.", more))
    return Reply("\n".join(lines), annotated, answer=answer)


def listed_numbers(faces: list[FaceAnswer], max_listed: int) -> list[int]:
    """The numbers of the faces a crowd's reply lists: its `max_listed` largest, in the photo's order.

    Faces come left to right and are numbered so on the boxed photo, so each line's number finds its
    face there; the largest are kept because the person a photo is of is seldom the smallest face in it.
    """
    by_size = sorted(range(len(faces)), key=lambda i: -_area(faces[i].box))  # stable: equal sizes left to right
    return sorted(i + 1 for i in by_size[:max_listed])


def _area(box: tuple[int, int, int, int]) -> int:
    left, top, right, bottom = box
    return max(0, right - left) * max(0, bottom - top)


# -- each chat service's message limits ----------------------------------------------------------


@dataclass(frozen=True)
class MessageLimits:
    """How much text one message of a chat service takes, alone and as a photo's caption."""

    text: int
    caption: int


# Counted in UTF-16 code units, as Telegram and Discord count: never fewer than the characters.
TELEGRAM = MessageLimits(text=4096, caption=1024)  # sendMessage's text, sendPhoto's caption
DISCORD = MessageLimits(text=2000, caption=2000)  # a message's content, with a file or without


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut(line: str, limit: int) -> list[str]:
    """A line too long for one message, in pieces that fit (no line of ours is, but a reply must never be refused)."""
    pieces, start, size = [], 0, 0
    for i, char in enumerate(line):
        width = 2 if ord(char) > 0xFFFF else 1
        if size + width > limit:
            pieces.append(line[start:i])
            start, size = i, 0
        size += width
    return [*pieces, line[start:]]


def _split(text: str, limit: int) -> list[str]:
    """`text` in as few messages of at most `limit` as whole lines allow."""
    pieces: list[str] = []
    current = ""
    for line in (piece for whole in text.split("\n") for piece in _cut(whole, limit)):
        if current and _units(current) + 1 + _units(line) > limit:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    return [*pieces, current] if current or not pieces else pieces


def reply_messages(reply: Reply, limits: MessageLimits) -> list[Reply]:
    """`reply` as the messages to send, in order, each within `limits`.

    The boxed photo comes first, with the text as its caption when the text's first message fits under it;
    otherwise the photo comes bare and the text follows in whole lines.
    """
    pieces = _split(reply.text, limits.text)
    if reply.image is None:
        return [Reply(piece) for piece in pieces]
    if _units(pieces[0]) <= limits.caption:
        return [Reply(pieces[0], reply.image), *(Reply(piece) for piece in pieces[1:])]
    return [Reply("", reply.image), *(Reply(piece) for piece in pieces)]
