"""Faces the bot's owner approved from users' feedback (`python -m training review`), brought into a run.

An approved face of a class is written as a chip beside the gathered ones after cleaning, so cleaning
never sets it aside (the owner vouched for it, as for a photo in keep.txt); the seeded split then
puts it in training or validation like any other face, and its accuracy is reported apart. An
approved "neither" face is a known stranger: never a class, but after training the run counts how
many of them the new model turns away. Nothing waiting or rejected is ever read: only
`FeedbackStore.approved()`.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from model.answers import is_known

from .evaluate import REVIEW_PREFIX, ValidationFaces
from .train import TrainingError

if TYPE_CHECKING:
    from feedback.store import ApprovedFace
    from model.serving import FaceClassifier

__all__ = ["REVIEW_PREFIX", "Reviewed", "add_reviewed", "read_approved"]

# A chip is 150x150; anything far larger in the database is not a chip the bot kept.
_MAX_SIDE = 1024


def _shown(url: str) -> str:
    from feedback.store import engine_url

    return engine_url(url).render_as_string(hide_password=True)


def read_approved(settings: Mapping[str, str]) -> tuple[list[ApprovedFace] | None, str]:
    """The approved faces in FEEDBACK_DB (None: there is no database), and where they came from in words.

    A SQLite file that is not there holds no reviewed faces: it is not created (the bot makes it at
    the first press). A database that cannot be read stops the run: training on without the faces the
    owner approved would look like a run that used them.
    """
    from feedback.keys import database_file, feedback_key
    from feedback.store import DEFAULT_FEEDBACK_DB, FeedbackStore, StoreUnavailable

    url = (settings.get("FEEDBACK_DB") or "").strip() or DEFAULT_FEEDBACK_DB
    database = database_file(url)  # a malformed URL: a ValueError that names no password
    if database is not None and not database.is_file():
        return None, f"no feedback database at {database}"
    secret = (settings.get("FEEDBACK_KEY") or "").strip()
    # Approved faces carry no hashes, so reading them needs no key: without FEEDBACK_KEY a throwaway one
    # serves, and no key file is made beside the owner's database.
    key = feedback_key(secret, url) if secret else secrets.token_hex(32).encode()
    store = FeedbackStore(url, key)
    try:
        return store.approved(), _shown(url)
    except StoreUnavailable as e:
        raise TrainingError(f"{e}; train without the reviewed faces with --no-feedback") from e
    finally:
        store.close()


def _decoded(jpeg: bytes | None) -> np.ndarray | None:
    if not jpeg:
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            if max(im.size) > _MAX_SIDE:
                return None
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))


def _share(right: int, n: int) -> str:
    return f"{right} of {n} named right ({right / n:.1%})" if n else "none"


@dataclass
class Reviewed:
    """The reviewed faces of one run: what was added, what was left out and why, and how the model did on them."""

    used: bool
    source: str  # where they came from, in words (never a password)
    per_class: Counter = field(default_factory=Counter)  # class -> faces added to its chips
    skipped: Counter = field(default_factory=Counter)  # a class this run does not train -> faces
    unreadable: int = 0  # chips that do not decode as an image
    duplicates: int = 0  # the same chip approved again (the same photo sent twice): kept once
    conflicting: int = 0  # the same chip approved under two labels: trusted under neither
    strangers: list[np.ndarray] = field(default_factory=list)  # approved "neither" faces' chips
    digests: list[str] = field(default_factory=list)  # of the chips added, for the data fingerprint
    # After training:
    n_train: int = 0
    n_valid: int = 0
    valid_right: int = 0
    gathered_valid: int = 0
    gathered_right: int = 0
    turned_away: int | None = None  # None: not measured (a learner without the face encoder)
    stranger_distance: float | None = None

    def fingerprint(self, gathered: str) -> str:
        """The cleaning's fingerprint, extended by the reviewed chips (unchanged when there are none)."""
        if not self.digests:
            return gathered
        return f"{gathered}:{hashlib.sha256(chr(10).join(sorted(self.digests)).encode()).hexdigest()[:16]}"

    def measure(self, classifier: FaceClassifier, train_items: Iterable, valid: ValidationFaces, right) -> None:
        """Count the reviewed faces on each side of the split, the right ones, and the strangers turned away."""
        self.n_train = sum(Path(p).name.startswith(REVIEW_PREFIX) for p in train_items)
        self.n_valid = int(valid.reviewed.sum())
        self.valid_right = int(right[valid.reviewed].sum())
        self.gathered_valid = int((~valid.reviewed).sum())
        self.gathered_right = int(right[~valid.reviewed].sum())
        if self.strangers and classifier.has_encoder and classifier.gallery is not None:
            _, distances, _ = classifier.identify(self.strangers)
            self.stranger_distance = classifier.stranger_distance
            known = [is_known(float(d) if np.isfinite(d) else None, self.stranger_distance) for d in distances]
            self.turned_away = len(known) - sum(known)

    def added_line(self) -> str:
        """The summary line said after cleaning: what came from review."""
        if not self.used:
            return f"From review: none ({self.source})"
        added = sum(self.per_class.values())
        parts = [f"{added} approved faces added ({_counts(self.per_class) or 'none'})"]
        parts.append(f"{len(self.strangers)} known strangers (approved as neither)")
        if self.skipped:
            skipped = sum(self.skipped.values())
            parts.append(f"skipped {skipped} labelled with a class this run does not train ({_counts(self.skipped)})")
        for n, what in (
            (self.unreadable, "unreadable"),
            (self.duplicates, "approved again (the same chip), kept once"),
            (self.conflicting, "the same face approved under two labels, left out"),
        ):
            if n:
                parts.append(f"{n} {what}")
        return f"From review ({self.source}): " + "; ".join(parts)

    def result_lines(self) -> list[str]:
        """The summary lines said after training: the reviewed faces apart from the gathered, and the strangers."""
        if not self.used or not (self.per_class or self.strangers):
            return []
        valid = f": {_share(self.valid_right, self.n_valid)}" if self.n_valid else ""
        lines = [
            f"Reviewed faces: {self.n_train} trained on, {self.n_valid} validated{valid}; "
            f"gathered validation faces: {_share(self.gathered_right, self.gathered_valid)}"
        ]
        if self.strangers:
            if self.turned_away is None:
                lines.append(f"Known strangers: {len(self.strangers)} not measured (no face encoder in this learner)")
            else:
                lines.append(
                    f"Known strangers: {self.turned_away} of {len(self.strangers)} turned away "
                    f"(beyond distance {self.stranger_distance:.3f})"
                )
        return lines

    def to_json(self) -> dict:
        """export.json's "reviewed" entry."""
        return {
            "used": self.used,
            "per_class": dict(self.per_class),
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "valid_accuracy": round(self.valid_right / self.n_valid, 6) if self.n_valid else None,
            "gathered_valid_accuracy": (
                round(self.gathered_right / self.gathered_valid, 6) if self.gathered_valid else None
            ),
            "skipped": dict(self.skipped),
            "unreadable": self.unreadable,
            "duplicates": self.duplicates,
            "conflicting": self.conflicting,
        }

    def strangers_json(self) -> dict:
        """export.json's "known_strangers" entry: `turned_away` null when not measured."""
        return {"n": len(self.strangers), "turned_away": self.turned_away}


def _remove_stale(chips_dir: Path) -> None:
    """Reviewed chips of an earlier run: a face forgotten or rejected since must not be trained on again."""
    if chips_dir.is_dir():
        for stale in chips_dir.glob(f"*/{REVIEW_PREFIX}*"):
            stale.unlink()


def add_reviewed(
    faces: Iterable[ApprovedFace] | None, source: str, chips_dir: Path, classes: Iterable[str]
) -> Reviewed:
    """Write each approved face of a trained class to `chips_dir/CLASS/review-<id>.jpg`; keep "neither" ones apart.

    `faces`, `source`: as `read_approved` gives them (None: no review used, `source` says why). `classes`:
    the classes this run trains (its photo folders); a face labelled otherwise is skipped and counted.
    """
    _remove_stale(chips_dir)
    reviewed = Reviewed(used=faces is not None, source=source)
    trained = set(classes)
    # The same photo sent twice gives the same chip: one face, counted once (it must not sit on both sides
    # of the split); the same chip under two labels is trusted under neither, as cleaning does.
    same: dict[str, list[tuple[ApprovedFace, np.ndarray]]] = {}
    for face in faces or ():
        if face.label is not None and face.label not in trained:
            reviewed.skipped[face.label] += 1
            continue
        pixels = _decoded(face.chip_jpeg)
        if pixels is None:
            reviewed.unreadable += 1
            continue
        same.setdefault(hashlib.sha256(pixels.tobytes()).hexdigest()[:16], []).append((face, pixels))
    for digest, group in same.items():
        if len({face.label for face, _ in group}) > 1:
            reviewed.conflicting += len(group)
            continue
        reviewed.duplicates += len(group) - 1
        face, pixels = group[0]
        if face.label is None:
            reviewed.strangers.append(pixels)
            continue
        (chips_dir / face.label).mkdir(parents=True, exist_ok=True)
        # The JPEG as the store holds it: the very bytes the owner approved.
        (chips_dir / face.label / f"{REVIEW_PREFIX}{face.id}.jpg").write_bytes(face.chip_jpeg)
        reviewed.per_class[face.label] += 1
        reviewed.digests.append(f"{face.label}/{digest}")
    return reviewed
