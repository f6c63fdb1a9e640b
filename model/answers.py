"""What the model says about a photo: one answer per face, or why there is none."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

from .quality import reasons

__all__ = [
    "DEFAULT_THRESHOLD",
    "Examined",
    "FaceAnswer",
    "Outcome",
    "PhotoAnswer",
    "TurnedAway",
    "display_name",
    "is_known",
    "went_wrong",
]

# A face whose best class is less probable than this is answered "not sure".
DEFAULT_THRESHOLD = 0.8

Outcome = Literal["ok", "no_face", "error"]


def display_name(label: str) -> str:
    """A class name as people write it: training folders are named `Amber_Heard`, users read "Amber Heard"."""
    return " ".join(label.replace("_", " ").split())


def is_known(distance: float | None, stranger_distance: float | None) -> bool:
    """Whether a face at `distance` from its label's training faces is that person (None: nothing to measure)."""
    return distance is None or stranger_distance is None or distance <= stranger_distance


@dataclass
class FaceAnswer:
    """One face: where it is, who it most looks like, and how sure the model is."""

    box: tuple[int, int, int, int]  # left, top, right, bottom in the photo's pixels
    label: str  # the most probable class
    confidence: float  # that class's probability
    sure: bool  # confidence reached the threshold
    probabilities: dict[str, float]
    known: bool = True  # false: someone else, who only looks most like `label`
    distance: float | None = None  # to the label's training faces; None when the model has no gallery
    quality: str = "ok"  # `model.quality.QUALITIES`: below "ok", the face is not named (and never sure)
    measures: dict[str, float] = field(default_factory=dict)  # width (px), yaw, sharpness, brightness
    reason: str | None = None  # below quality: why, and what to send instead

    @property
    def named(self) -> bool:
        """Whether the answer names this face: good enough to look at, and one of the model's people."""
        return self.quality == "ok" and self.known

    def to_json(self) -> dict:
        return {
            "box": list(self.box),
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "sure": self.sure,
            "known": self.known,
            "distance": None if self.distance is None else round(self.distance, 4),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "quality": self.quality,
            "measures": dict(self.measures),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict) -> FaceAnswer:
        """The face `to_json` wrote (as the classifier service sends it)."""
        return cls(
            box=tuple(int(v) for v in d["box"]),
            label=str(d["label"]),
            confidence=float(d["confidence"]),
            sure=bool(d["sure"]),
            probabilities={str(k): float(v) for k, v in d["probabilities"].items()},
            known=bool(d.get("known", True)),
            distance=None if d.get("distance") is None else float(d["distance"]),
            quality=str(d.get("quality", "ok")),
            measures={str(k): float(v) for k, v in (d.get("measures") or {}).items()},
            reason=d.get("reason"),
        )


@dataclass(frozen=True)
class TurnedAway:
    """A face seen but not good enough to name, in a photo without one that is: where, and why."""

    box: tuple[int, int, int, int]
    quality: str
    measures: dict[str, float]
    reason: str

    @classmethod
    def of(cls, face: FaceAnswer) -> TurnedAway:
        return cls(face.box, face.quality, dict(face.measures), face.reason or "")

    def to_json(self) -> dict:
        return {"box": list(self.box), "quality": self.quality, "measures": self.measures, "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict) -> TurnedAway:
        measures = {str(k): float(v) for k, v in (d.get("measures") or {}).items()}
        return cls(tuple(int(v) for v in d["box"]), str(d["quality"]), measures, str(d.get("reason") or ""))


@dataclass
class PhotoAnswer:
    """The answer for one photo: faces left to right (as the boxed photo numbers them), or "no_face", or an error
    to show the user."""

    outcome: Outcome
    faces: list[FaceAnswer] = field(default_factory=list)
    error: str | None = None  # a sentence fit for a chat user, when outcome is "error"
    error_kind: str | None = None  # the error's class name, for programs
    too_small: int = 0  # faces found but too small to name
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    turned_away: list[TurnedAway] = field(default_factory=list)  # with "no_face": the faces seen, and why not named
    details: dict[str, int] = field(default_factory=dict)  # with "error": its numbers (`ImageError.details`)

    @property
    def note(self) -> str | None:
        """Why there is no answer, in words, when there is none."""
        if self.outcome == "error":
            return self.error
        if self.outcome == "no_face":
            return _no_face_note(self.turned_away, self.too_small)
        return None

    def to_json(self, path: str | None = None) -> dict:
        result = {
            "path": path,
            "outcome": self.outcome,
            "error": self.error if self.outcome == "error" else None,
            "faces": [face.to_json() for face in self.faces],
        }
        if self.outcome == "error":
            result["error_kind"] = self.error_kind
            if self.details:
                result["details"] = dict(self.details)
        if self.outcome != "ok":
            result["message"] = self.note
        if self.too_small:
            result["too_small"] = self.too_small
        if self.outcome == "no_face":
            result["turned_away"] = [face.to_json() for face in self.turned_away]
        return result

    @classmethod
    def from_json(cls, d: dict) -> PhotoAnswer:
        """The answer `to_json` wrote (as the classifier service sends it); timings do not travel."""
        return cls(
            outcome=d["outcome"],
            faces=[FaceAnswer.from_json(f) for f in d.get("faces", [])],
            error=d.get("error"),
            error_kind=d.get("error_kind"),
            too_small=int(d.get("too_small", 0)),
            turned_away=[TurnedAway.from_json(f) for f in d.get("turned_away") or []],
            details={str(k): int(v) for k, v in (d.get("details") or {}).items()},
        )


def _no_face_note(turned_away: list[TurnedAway], too_small: int) -> str:
    """ "No face found", or the faces seen and turned away, and why."""
    if len(turned_away) == 1:
        return f"I found a face but can't name it. {turned_away[0].reason}"
    if turned_away:
        why = reasons([face.quality for face in turned_away])
        return f"I found {len(turned_away)} faces but can't name any of them. {why[0].upper()}{why[1:]}"
    if too_small:  # an older classifier service, which sends only the count
        return "The faces in this photo are too small for me to recognise; try a closer photo."
    return "I can't find a face in this photo."


def went_wrong() -> PhotoAnswer:
    """The answer for a photo that broke something on the way (a library, a process, a replica)."""
    return PhotoAnswer("error", error="Something went wrong reading this photo.", error_kind="Internal")


@dataclass
class Examined:
    """A photo's answer and, for each of its faces, what a user's feedback press keeps: the aligned chip as a
    JPEG and the encoder's descriptor (None for a learner without dlib's encoder). Never the photo itself."""

    answer: PhotoAnswer
    chips: list[bytes] = field(default_factory=list)  # JPEG, one per face of `answer`, in its order
    descriptors: list[list[float]] | None = None  # 128 numbers per face

    def to_json(self) -> dict:
        return {
            **self.answer.to_json(),
            "chips": [base64.b64encode(chip).decode("ascii") for chip in self.chips],
            "descriptors": self.descriptors,
        }

    @classmethod
    def from_json(cls, d: dict) -> Examined:
        """What `to_json` wrote (as the classifier service's `/examine` sends it)."""
        descriptors = d.get("descriptors")
        return cls(
            PhotoAnswer.from_json(d),
            [base64.b64decode(chip) for chip in d.get("chips", [])],
            None if descriptors is None else [[float(v) for v in row] for row in descriptors],
        )
