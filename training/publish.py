"""Write the trained model and its metadata atomically, unless a better model on the same data is there."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fastai.learner import Learner

from model.learner import export_learner
from model.resources import metadata_path, read_metadata

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


def publish(learn: Learner, out: Path, metadata: dict, force: bool = False) -> Published:
    """Export `learn` to `out` and its metadata beside it, gated on accuracy over the same data."""
    old = read_metadata(out) if out.exists() else None
    new_accuracy = metadata["accuracy"]
    if (
        not force
        and old is not None
        and old.get("data_fingerprint") == metadata["data_fingerprint"]
        and old.get("accuracy", -1) > new_accuracy
    ):
        return Published(
            False,
            f"Kept the existing model {out}: its validation accuracy {old['accuracy']:.1%} beats this "
            f"run's {new_accuracy:.1%} on the same data. Use --force to replace it.",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(out, lambda p: export_learner(learn, p))
    _write_atomically(metadata_path(out), lambda p: p.write_text(json.dumps(metadata, indent=2) + "\n"))
    replaced = "replaced the previous model" if old is not None else "new"
    return Published(True, f"Wrote {out} and {metadata_path(out).name} ({replaced}).")
