"""Why the model named a face: how far it lies from each person's training faces, in words and in a picture.

The numbers are the ones the answer was decided on: a face's mean distance to the `k` nearest training
faces of each class (as `Gallery.distances` measures), against the line beyond which it is someone else.
The picture puts the user's face beside the nearest training faces of each class that may be shown:
faces from users' reviewed feedback keep no thumbnail, so a user's face is never shown to anyone else.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .answers import PhotoAnswer, display_name, is_known
from .resources import CHIP_SIZE

__all__ = [
    "NO_GALLERY",
    "SHOWN",
    "Explained",
    "FaceEvidence",
    "explain_chip_jpeg",
    "explain_chips",
    "explain_photo",
]

NO_GALLERY = "This model keeps no training faces to compare with."
SHOWN = 3  # training faces shown per class

_THUMB = 80  # px each training face is drawn at
_PAD = 10
_FONT = 13
_INK, _FAINT, _PAPER = (20, 20, 20), (110, 110, 110), (255, 255, 255)


@dataclass
class FaceEvidence:
    """One face's evidence: its distances to each class's training faces, a sentence, and a picture."""

    face: int  # 1-based, as the boxed photo numbers faces
    label: str
    known: bool
    text: str  # one line, for a user
    distances: dict[str, float] = field(default_factory=dict)  # class -> mean distance to its k nearest faces
    threshold: float | None = None  # beyond it a face is someone else; None without a gallery
    nearest: dict[str, list[float]] = field(default_factory=dict)  # class -> the shown faces' distances
    picture: bytes | None = None  # JPEG

    def to_json(self) -> dict:
        return {
            "face": self.face,
            "label": self.label,
            "known": self.known,
            "text": self.text,
            "distances": {c: round(d, 4) for c, d in self.distances.items()},
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "nearest": {c: [round(d, 4) for d in ds] for c, ds in self.nearest.items()},
            "picture": None if self.picture is None else base64.b64encode(self.picture).decode("ascii"),
        }

    @classmethod
    def from_json(cls, d: dict) -> FaceEvidence:
        """What `to_json` wrote (as the classifier service's `/why` sends it)."""
        picture, threshold = d.get("picture"), d.get("threshold")
        return cls(
            face=int(d["face"]),
            label=str(d["label"]),
            known=bool(d["known"]),
            text=str(d["text"]),
            distances={str(c): float(v) for c, v in (d.get("distances") or {}).items()},
            threshold=None if threshold is None else float(threshold),
            nearest={str(c): [float(v) for v in vs] for c, vs in (d.get("nearest") or {}).items()},
            picture=None if picture is None else base64.b64decode(picture),
        )


@dataclass
class Explained:
    """A photo's answer and the evidence for each of its faces, in the answer's order ([] without faces)."""

    answer: PhotoAnswer
    evidence: list[FaceEvidence] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**self.answer.to_json(), "evidence": [e.to_json() for e in self.evidence]}

    @classmethod
    def from_json(cls, d: dict) -> Explained:
        """What `to_json` wrote; an answer without evidence (a refusal) reads as one with none."""
        return cls(PhotoAnswer.from_json(d), [FaceEvidence.from_json(e) for e in d.get("evidence") or []])


def explain_photo(classifier, data: bytes, stranger_distance: float | None = None) -> Explained:
    """A photo's answer with each face's evidence; faces found as `FaceClassifier.examine` finds them.

    `stranger_distance` overrides the classifier's line (as a frontend's STRANGER_DISTANCE does).
    """
    from .search import search_photo  # dlib: only where a photo is searched

    searched = search_photo(data, classifier.finder, classifier.limits)
    if isinstance(searched.found, PhotoAnswer):
        return Explained(searched.found)
    answer = classifier._answer([searched.found])[0]
    # The answer holds every face found, in the search's order, or none (all turned away: nothing to explain).
    chips = [face.chip for face in searched.found.faces] if answer.faces else []
    evidence = explain_chips(classifier, chips, stranger_distance)
    for face, said in zip(answer.faces, evidence, strict=True):
        said.label = face.label
        if face.quality != "ok" and face.reason:  # a face too small or blurred to name says so first
            said.text = f"{face.reason} {said.text}"
    return Explained(answer, evidence)


def explain_chip_jpeg(classifier, jpeg: bytes, stranger_distance: float | None = None) -> FaceEvidence:
    """The evidence for one stored face chip (a JPEG, as a feedback press keeps it); ValueError if unreadable."""
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            if im.width * im.height > 16 * CHIP_SIZE * CHIP_SIZE:
                raise ValueError(f"a face chip is {CHIP_SIZE} px square, not {im.width}x{im.height}")
            chip = np.asarray(im.convert("RGB").resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.LANCZOS))
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a face chip: {e}") from None
    return explain_chips(classifier, [chip], stranger_distance)[0]


def explain_chips(
    classifier, chips: Sequence[np.ndarray], stranger_distance: float | None = None
) -> list[FaceEvidence]:
    """Each aligned face chip's evidence against the classifier's gallery, numbered from 1."""
    if not len(chips):
        return []
    classes = list(classifier.classes)
    gallery = classifier.gallery if classifier.has_encoder else None
    if gallery is None:  # the book's learner, or an export from before galleries
        probs, _ = classifier.probabilities(chips)
        return [FaceEvidence(n, classes[int(p.argmax())], True, NO_GALLERY) for n, p in enumerate(probs, start=1)]
    line = classifier.stranger_distance if stranger_distance is None else stranger_distance
    probs, descriptors = classifier.describe(chips)
    by_class = {c: gallery.distances(descriptors, [c] * len(chips)) for c in classes}
    thumbnails = getattr(gallery, "thumbnails", None) or {}
    said = []
    for n, (chip, p, descriptor) in enumerate(zip(chips, probs, descriptors, strict=True), start=1):
        label = classes[int(p.argmax())]
        distances = {c: float(by_class[c][n - 1]) for c in classes if np.isfinite(by_class[c][n - 1])}
        known = is_known(distances.get(label), line)
        shown = {c: _nearest_shown(gallery, descriptor, c, thumbnails.get(c)) for c in classes}
        evidence = FaceEvidence(n, label, known, _sentence(label, known, distances, line), distances, line)
        evidence.nearest = {c: [d for d, _ in faces] for c, faces in shown.items()}
        evidence.picture = _picture(chip, evidence, classes, shown)
        said.append(evidence)
    return said


def _nearest_shown(gallery, descriptor: np.ndarray, label: str, thumbs: list | None) -> list[tuple[float, bytes]]:
    """The `SHOWN` nearest training faces of `label` that keep a thumbnail, nearest first, with their distances."""
    if not thumbs:
        return []
    distances = gallery.reference_distances(descriptor[None, :], label)[0]
    order = np.argsort(distances, kind="stable")
    return [(float(distances[i]), thumbs[i]) for i in order if i < len(thumbs) and thumbs[i] is not None][:SHOWN]


def _photos(label: str) -> str:
    return f"{display_name(label)}'s photos"


def _sentence(label: str, known: bool, distances: dict[str, float], line: float | None) -> str:
    """The evidence in one line: nearer one person than the other, or far from all of them."""
    if label not in distances:
        return f"There are no training faces of {display_name(label)} to compare with."
    others = sorted((d, c) for c, d in distances.items() if c != label)
    if known:
        if not others:
            return f"Close to {_photos(label)} ({distances[label]:.2f})."
        other_d, other = others[0]
        if other_d < distances[label]:  # the head and the distances disagree: say so rather than hide it
            return (
                f"Named {display_name(label)}, though nearer {_photos(other)} ({other_d:.2f}) "
                f"than to {display_name(label)}'s ({distances[label]:.2f})."
            )
        return f"Closer to {_photos(label)} ({distances[label]:.2f}) than to {display_name(other)}'s ({other_d:.2f})."
    ranked = sorted((d, c) for c, d in distances.items())
    parts = [f"{d:.2f} from {display_name(c)}'s" for d, c in ranked]
    parts[0] += " photos"
    far = "Far from both" if len(ranked) == 2 else "Far from all of them" if len(ranked) > 2 else "Far"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{far}: {listed}; beyond {line:.2f} I call a face someone else."


def _font(size: int = _FONT) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _picture(
    chip: np.ndarray, evidence: FaceEvidence, classes: list[str], shown: dict[str, list[tuple[float, bytes]]]
) -> bytes:
    """The user's face on the left; a row per class (the face's label first): its distance and nearest faces.

    No words but the people's names: the line sent with the picture says what it shows in the user's language (the
    default font has no Cyrillic, and the picture is drawn far from the chat's language).
    """
    rows = [evidence.label, *(c for c in classes if c != evidence.label)]
    font, small = _font(), _font(_FONT - 1)
    row_h = _FONT + 6 + _THUMB + _FONT + 10
    left_w = CHIP_SIZE + 2 * _PAD
    width = left_w + SHOWN * (_THUMB + _PAD) + _PAD + 40
    height = max(CHIP_SIZE + 2 * _PAD + _FONT + 6, _PAD + len(rows) * row_h) + _FONT + 2 * _PAD
    im = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(im)
    face = Image.fromarray(np.ascontiguousarray(chip, dtype=np.uint8)).convert("RGB")
    im.paste(face.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.LANCZOS), (_PAD, _PAD))
    for r, c in enumerate(rows):
        x, y = left_w, _PAD + r * row_h
        mean = evidence.distances.get(c)
        heading = display_name(c) + ("" if mean is None else f"  {mean:.2f}")
        draw.text((x, y), heading, fill=_INK, font=font)
        y += _FONT + 6
        if not shown.get(c):  # an empty frame where the training faces would be
            draw.rectangle((x, y, x + _THUMB - 1, y + _THUMB - 1), outline=_FAINT)
        for i, (distance, thumb) in enumerate(shown.get(c, [])):
            tx = x + i * (_THUMB + _PAD)
            with Image.open(io.BytesIO(thumb)) as t:
                im.paste(t.convert("RGB").resize((_THUMB, _THUMB)), (tx, y))
            draw.text((tx, y + _THUMB + 2), f"{distance:.2f}", fill=_FAINT, font=small)
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
