"""Write the trained model and its metadata atomically, unless the model already there names more of the same faces.

The gate scores the old model and the new one on this run's validation faces (reviewed faces from users
included): the old model file is loaded and asked, so a model trained on other data, or before review, is
compared on the same faces too. An old model that cannot be loaded is compared as before the gate could
load models: by the accuracy its metadata records, and only on the same data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastai.learner import Learner

from model.learner import export_learner
from model.resources import metadata_path, read_metadata
from model.serving import FaceClassifier

from .evaluate import ValidationFaces, named_right

__all__ = ["Published", "metadata_path", "publish", "read_metadata"]


@dataclass
class Published:
    """What happened to the model file."""

    written: bool
    message: str


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)  # readers see the old file or the new one, never half of one
    finally:
        partial.unlink(missing_ok=True)


def _old_right(out: Path, valid: ValidationFaces) -> np.ndarray | str:
    """Which validation faces the model at `out` names right, or why it cannot be asked."""
    try:
        return named_right(FaceClassifier.load(out), valid)
    except Exception as e:  # any file that does not load as a model (junk, another version's pickle) is no rival
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def _faces(n: int, valid: ValidationFaces) -> str:
    reviewed = int(valid.reviewed.sum())
    return f"{n} validation faces right" + (f" ({reviewed} of them faces from review)" if reviewed else "")


def _by_recorded_accuracy(old: dict | None, metadata: dict, out: Path, why: str | None) -> Published | None:
    """The gate when the old model cannot be asked: a better recorded accuracy on the same data keeps it."""
    new_accuracy = metadata["accuracy"]
    if (
        old is not None
        and old.get("data_fingerprint") == metadata["data_fingerprint"]
        and old.get("accuracy", -1) > new_accuracy
    ):
        loaded = f" (it could not be loaded to compare on this run's faces: {why})" if why else ""
        return Published(
            False,
            f"Kept the existing model {out}: its validation accuracy {old['accuracy']:.1%} beats this "
            f"run's {new_accuracy:.1%} on the same data{loaded}. Use --force to replace it.",
        )
    return None


def publish(
    learn: Learner,
    out: Path,
    metadata: dict,
    force: bool = False,
    valid: ValidationFaces | None = None,
    right: np.ndarray | None = None,
) -> Published:
    """Export `learn` to `out` and its metadata beside it, unless the model at `out` names more of `valid` right.

    `right`: which of `valid` the new model names right. Without `valid`, or when the old model does
    not load, the old rule: a better recorded accuracy on the same data (`data_fingerprint`) keeps it.
    """
    exists = out.exists()
    old = read_metadata(out) if exists else None
    note = ""
    if exists and not force:
        old_right = _old_right(out, valid) if valid is not None and right is not None else None
        if isinstance(old_right, np.ndarray):
            n, new, before = len(valid), int(right.sum()), int(old_right.sum())
            metadata = {**metadata, "gate": {"n_valid": n, "right": new, "previous_right": before}}
            if before > new:
                return Published(
                    False,
                    f"Kept the existing model {out}: it names {before} of this run's {_faces(n, valid)}, "
                    f"this run's model {new}. Use --force to replace it.",
                )
            note = f", which named {before} of this run's {_faces(n, valid)}, this one {new}"
        else:
            if kept := _by_recorded_accuracy(old, metadata, out, old_right):
                return kept
            if old_right is not None:
                note = f", which could not be loaded to compare: {old_right.rstrip('.')}"
    elif exists:
        note = " (--force)"
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(out, lambda p: export_learner(learn, p))
    _write_atomically(metadata_path(out), lambda p: p.write_text(json.dumps(metadata, indent=2) + "\n"))
    replaced = f"replaced the previous model{note}" if exists else "new"
    return Published(True, f"Wrote {out} and {metadata_path(out).name} ({replaced}).")
