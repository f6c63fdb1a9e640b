"""Replies: the words for the model's answer about a photo, and each chat service's message limits.

`describe` turns an answer into one reply; `reply_messages` cuts it into the messages a chat service
accepts, the boxed photo first.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.answers import FaceAnswer, PhotoAnswer, display_name
from model.quality import brief

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


def _percent(p: float) -> str:
    return f"{p:.0%}"


def _neither(face: FaceAnswer) -> str:
    return "either of them" if len(face.probabilities) <= 2 else "any of them"


def face_line(face: FaceAnswer) -> str:
    """`Jessica Chastain, 97% sure`, `not sure (maybe Jessica Chastain, 55%)`, someone else, or why a face is not
    named: `not named: only 38 pixels wide, send a closer photo`."""
    if face.quality != "ok":
        return f"not named: {brief(face.quality, face.measures)}"
    name = display_name(face.label)
    if not face.known:
        return f"someone who doesn't look like {_neither(face)} (closest: {name})"
    if face.sure:
        return f"{name}, {_percent(face.confidence)} sure"
    return f"not sure (maybe {name}, {_percent(face.confidence)})"


def describe(answer: PhotoAnswer, annotated: bytes | None = None, max_listed: int = MAX_FACES_LISTED) -> Reply:
    """The reply for the model's answer about one photo; a crowd's list stops after `max_listed` faces."""
    if answer.outcome != "ok":
        return Reply(answer.note or "Something went wrong with this photo.", answer=answer)
    if len(answer.faces) == 1:
        face = answer.faces[0]
        if not face.known:
            closest = display_name(face.label)
            return Reply(f"This doesn't look like {_neither(face)}. Closest: {closest}.", answer=answer)
        text = face_line(face)
        return Reply(text[0].upper() + text[1:], answer=answer)
    listed = listed_numbers(answer.faces, max_listed)
    lines = [f"I found {len(answer.faces)} faces:"]
    lines += [f"{number}. {face_line(answer.faces[number - 1])}" for number in listed]
    if more := len(answer.faces) - len(listed):
        # Those left out are the smallest; the boxed photo still numbers them all.
        lines.append(f"and {more} more" + (", numbered on the photo." if annotated else "."))
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
