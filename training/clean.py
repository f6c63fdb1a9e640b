"""Photos to face chips: drop what does not decode, keep each photo's one clear face, drop near-duplicates,
and set aside faces that are not the person their class was asked for (`identity.py`).

Near-duplicates are found by encoder distance, so the same face (the same photo resized, cropped
or re-compressed) cannot sit in both training and validation and flatter the accuracy.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.decode import DecodeLimits, ImageError, decode_image
from model.encoder import FaceEncoder
from model.faces import Face, FaceFinder

from .identity import ANOTHER_PERSON, IdentityOptions, is_identity_reason, set_aside_faces

__all__ = [
    "IMAGE_SUFFIXES",
    "CleanOptions",
    "CleanReport",
    "KeepList",
    "SetAsideFace",
    "class_folders",
    "clean_photos",
    "descriptors",
    "near_duplicates",
    "read_keep_list",
    "subject_chip",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class CleanOptions:
    """Which faces make good training data."""

    # A photo with several faces is kept only when one face is clearly its subject: the others are
    # under half its area, or the detector is far less sure of them (a poster, a pattern on a shirt).
    largest_ratio: float = 2.0
    score_margin: float = 0.5
    # Re-compressed or resized copies of one photo land within about 0.2 of each other (median
    # 0.11 on the pins crops); two different photos of one person are usually 0.3 or more apart.
    duplicate_distance: float = 0.2
    # Who each class's faces are; None keeps every clear face, whoever it shows (--keep-all-faces).
    identity: IdentityOptions | None = field(default_factory=IdentityOptions)


@dataclass(frozen=True)
class SetAsideFace:
    """A face identity cleaning left out, for the contact sheet."""

    path: Path
    name: str  # its class
    reason: str
    distance: float  # from its class's person
    chip: np.ndarray


def _counted(reason: str, n: int) -> str:
    if reason == ANOTHER_PERSON:
        return f"{n} of another person"
    if is_identity_reason(reason) and reason != ANOTHER_PERSON:
        return f"{n} that {'looks' if n == 1 else 'look'} like {reason.removeprefix('looks like ')}"
    if reason == "near-duplicate":
        return f"{n} near-duplicate{'s' if n != 1 else ''}"
    if reason == "same face in two classes":
        return f"{n} also filed under another class"
    return f"{n} {reason}"


@dataclass
class CleanReport:
    """What cleaning kept per class, and what it dropped or set aside and why."""

    photos: Counter = field(default_factory=Counter)  # class -> photos looked at
    faces: Counter = field(default_factory=Counter)  # class -> clear faces found
    kept: Counter = field(default_factory=Counter)  # class -> face chips kept
    dropped: Counter = field(default_factory=Counter)  # reason -> count, every class
    set_aside: dict[str, Counter] = field(default_factory=dict)  # class -> reason -> faces found but not kept
    set_aside_faces: list[SetAsideFace] = field(default_factory=list)  # those set aside by identity
    identity: bool = True  # whether faces were checked against their class's person
    listed: int = 0  # photos keep.txt lists
    kept_by_hand: int = 0  # faces listed in keep.txt that identity cleaning would have set aside
    fingerprint: str = ""  # identifies the kept data, so models trained on it can be compared

    def summary(self) -> str:
        total, kept = sum(self.photos.values()), sum(self.kept.values())
        per_class = ", ".join(f"{c} {n}" for c, n in sorted(self.kept.items()))
        photo_level = self.dropped - sum(self.set_aside.values(), Counter())  # the rest is told per class
        why = ", ".join(f"{n} {reason}" for reason, n in photo_level.most_common()) or "none"
        lines = [f"{total} photos -> {kept} faces kept ({per_class}); photos without one clear face: {why}"]
        for name in sorted(self.photos):
            aside = self.set_aside.get(name, Counter())
            detail = ", ".join(_counted(reason, n) for reason, n in aside.most_common()) or "nothing"
            lines.append(f"  {name}: {self.faces[name]} faces, kept {self.kept[name]}; set aside {detail}")
        if not self.identity:
            lines.append("  every clear face kept, whoever it shows (--keep-all-faces)")
        if self.listed:
            lines.append(
                f"  keep.txt lists {self.listed} photos: {self.kept_by_hand} of their faces kept that would "
                "otherwise be set aside"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "faces": dict(self.faces),
            "kept": dict(self.kept),
            "dropped": dict(self.dropped),
            "set_aside": {name: dict(reasons) for name, reasons in self.set_aside.items()},
            "identity": self.identity,
            "kept_by_hand": self.kept_by_hand,
        }


@dataclass
class KeepList:
    """What `keep.txt` says: the photos vouched for, and the lines that name none of the photos."""

    photos: set[Path] = field(default_factory=set)  # resolved paths of photos in the class folders
    unmatched: list[tuple[int, str]] = field(default_factory=list)  # (line number, path as written)

    def warning(self, path: Path, shown: int = 10) -> str | None:
        """The lines that match no photo, in words; None when every line matched one."""
        if not self.unmatched:
            return None
        named = ", ".join(f"line {n} {text!r}" for n, text in self.unmatched[:shown])
        more = f" and {len(self.unmatched) - shown} more" if len(self.unmatched) > shown else ""
        return (
            f"{len(self.unmatched)} of the {len(self.unmatched) + len(self.photos)} photos listed in {path} "
            f"match no photo in the class folders, so they are ignored: {named}{more}"
        )


def read_keep_list(path: Path, photos_dir: Path) -> KeepList:
    """The photos a person has vouched for: `keep.txt` holds one path a line, as the set-aside list names them.

    Paths are absolute, relative to the working directory, or relative to `photos_dir`; blank lines,
    lines starting with # and the rest of a line after " #" are skipped. No file: nothing vouched for.
    A line that names no photo of `photos_dir`'s class folders (a typo, a photo since removed, a
    path from another working folder) vouches for nothing, and is listed in `unmatched`: silently
    ignored, the person would believe that face is trained on.
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return KeepList()
    folders = class_folders(photos_dir) if photos_dir.is_dir() else {}
    photos = {p.resolve() for paths in folders.values() for p in paths}
    keep = KeepList()
    for number, line in enumerate(lines, start=1):
        line = line.split(" #", 1)[0].strip()  # the set-aside list's lines carry a comment
        if line and not line.startswith("#"):
            listed = Path(line)
            found = next((p.resolve() for p in (listed, photos_dir / listed) if p.resolve() in photos), None)
            if found is None:
                keep.unmatched.append((number, line))
            else:
                keep.photos.add(found)
    return keep


def class_folders(root: Path) -> dict[str, list[Path]]:
    """One class per sub-folder, with its image files, in a stable order."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[folder.name] = files
    return classes


def _area(face: Face) -> int:
    left, top, right, bottom = face.box
    return (right - left) * (bottom - top)


def _subject(faces: list[Face], options: CleanOptions) -> Face | None:
    """The one face the photo is about, or None when several could be."""
    biggest = max(_area(f) for f in faces)
    contenders = [f for f in faces if _area(f) * options.largest_ratio > biggest]
    best = max(f.score for f in contenders)
    sure = [f for f in contenders if f.score > best - options.score_margin]
    return sure[0] if len(sure) == 1 else None


def subject_chip(
    path: Path, finder: FaceFinder, options: CleanOptions, limits: DecodeLimits | None = None
) -> np.ndarray | str:
    """The aligned chip of the photo's one clear face, or the reason there is none."""
    try:
        found = finder.find(decode_image(path.read_bytes(), limits, finder.options.detect_side)).faces
    except (ImageError, OSError):
        return "unreadable"
    # Too small to name is too small to learn from; blurred or side-on faces of the person stay (the model
    # meets such photos too), and the identity check after this keeps only faces of the person asked for.
    found = [face for face in found if face.quality != "too_small"]
    if not found:
        return "no face"
    subject = _subject(found, options)
    return subject.chip if subject is not None else "several faces, none clearly the subject"


def descriptors(encoder: FaceEncoder, chips: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """128-d descriptors of face chips, batched."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), batch):
            x = torch.from_numpy(np.stack(chips[start : start + batch])).permute(0, 3, 1, 2).float() / 255
            out.append(encoder(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def near_duplicates(desc: np.ndarray, labels: list[str], distance: float) -> dict[int, str]:
    """Index -> reason for each face to drop: a later copy of a face, or a face filed under two classes."""
    drop: dict[int, str] = {}
    kept: list[int] = []
    for i in range(len(desc)):
        if kept:
            near = [j for j, d in zip(kept, np.linalg.norm(desc[kept] - desc[i], axis=1), strict=True) if d < distance]
        else:
            near = []
        if not near:
            kept.append(i)
            continue
        drop[i] = "near-duplicate"
        for j in near:
            if labels[j] != labels[i]:  # one face, two names: trust neither
                drop[i] = drop[j] = "same face in two classes"
    return drop


def clean_photos(
    source: Path,
    chips_dir: Path,
    finder: FaceFinder,
    encoder: FaceEncoder,
    options: CleanOptions | None = None,
    limits: DecodeLimits | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: set[Path] | frozenset[Path] = frozenset(),
) -> CleanReport:
    """Read every class folder under `source`, write one aligned chip per usable photo to `chips_dir/CLASS/`.

    `keep` holds resolved photo paths that identity cleaning must not set aside (`read_keep_list`).
    """
    options = options or CleanOptions()
    report = CleanReport(identity=options.identity is not None, listed=len(keep))
    faces: list[tuple[str, Path, np.ndarray]] = []
    classes = class_folders(source)
    todo = [(name, path) for name, paths in classes.items() for path in paths]
    for done, (name, path) in enumerate(todo, start=1):
        report.photos[name] += 1
        chip = subject_chip(path, finder, options, limits)
        if isinstance(chip, str):
            report.dropped[chip] += 1
        else:
            faces.append((name, path, chip))
            report.faces[name] += 1
        if progress:
            progress(done, len(todo))

    desc = descriptors(encoder, [chip for _, _, chip in faces])
    drop = near_duplicates(desc, [name for name, _, _ in faces], options.duplicate_distance)
    if options.identity is not None:
        drop.update(_identity(faces, desc, drop, options.identity, keep, report))
    for i, reason in drop.items():
        report.dropped[reason] += 1
        report.set_aside.setdefault(faces[i][0], Counter())[reason] += 1

    if chips_dir.exists():
        shutil.rmtree(chips_dir)  # chips of an earlier run must not mix with this one's
    names = []
    for i, (name, _, chip) in enumerate(faces):
        if i in drop:
            continue
        digest = hashlib.sha256(chip.tobytes()).hexdigest()[:16]
        (chips_dir / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(chip).save(chips_dir / name / f"{digest}.png")
        report.kept[name] += 1
        names.append(f"{name}/{digest}")
    for name in classes:
        report.kept.setdefault(name, 0)
        report.faces.setdefault(name, 0)
    report.fingerprint = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
    return report


def _identity(
    faces: list[tuple[str, Path, np.ndarray]],
    desc: np.ndarray,
    dropped: dict[int, str],
    options: IdentityOptions,
    keep: set[Path] | frozenset[Path],
    report: CleanReport,
) -> dict[int, str]:
    """Index -> reason for each face, among those not dropped yet, that is not its class's person."""
    rows = [i for i in range(len(faces)) if i not in dropped]
    if not rows:
        return {}
    vouched = np.array([faces[i][1].resolve() in keep for i in rows], dtype=bool)
    labels = [faces[i][0] for i in rows]
    found = set_aside_faces(desc[rows], labels, options, keep=vouched)
    if vouched.any():  # what the list changed: the faces it holds that would be set aside without it
        unvouched = set_aside_faces(desc[rows], labels, options)
        report.kept_by_hand = sum(bool(vouched[s.index]) for s in unvouched)
    aside = {}
    for s in found:
        name, path, chip = faces[rows[s.index]]
        aside[rows[s.index]] = s.reason
        report.set_aside_faces.append(SetAsideFace(path, name, s.reason, s.distance, chip))
    return aside
