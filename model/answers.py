"""What the model says about a photo: one answer per face, or why there is none."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_THRESHOLD",
    "Examined",
    "FaceAnswer",
    "Outcome",
    "PhotoAnswer",
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

    def to_json(self) -> dict:
        return {
            "box": list(self.box),
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "sure": self.sure,
            "known": self.known,
            "distance": None if self.distance is None else round(self.distance, 4),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
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
        )


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

    @property
    def note(self) -> str | None:
        """Why there is no answer, in words, when there is none."""
        if self.outcome == "error":
            return self.error
        if self.outcome == "no_face":
            if self.too_small:
                return "The faces in this photo are too small for me to recognise; try a closer photo."
            return "I can't find a face in this photo."
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
        if self.outcome != "ok":
            result["message"] = self.note
        if self.too_small:
            result["too_small"] = self.too_small
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
        )


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
