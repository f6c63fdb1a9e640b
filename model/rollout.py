"""Which model file the classifier service's replicas load: each version copied aside, and checked before it goes out.

The replicas never load the model file itself. Each version of it (its mtime and size) is copied beside
it, and that copy is loaded once in a process of its own before the replicas are moved to it: a file
overwritten with junk, or caught half-written, is logged and stays out, and the replicas go on with the
model they serve. A replica that Ray starts again later (one died) loads the copy being served, which
no later write can damage. The copies sit beside the model, so a Ray cluster whose nodes share its
folder shares them too; the service removes each one when it is no longer served.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .resources import read_metadata

__all__ = ["NOT_A_LEARNER", "Rollout", "load_problem"]

log = logging.getLogger(__name__)

NOT_A_LEARNER = "not an exported learner: torch.save writes a zip archive, and this file is none"

_CHECK = """
import sys
from model.serving import FaceClassifier
try:
    FaceClassifier.load(sys.argv[1])
except Exception as e:
    reason = (str(e).strip().splitlines() or [""])[0][:200]
    print(f"{type(e).__name__}: {reason}", file=sys.stderr)
    raise SystemExit(1)
"""
_ROOT = Path(__file__).resolve().parent.parent  # where `model` is imported from, for the checking process


def load_problem(path: Path, timeout: float = 600.0) -> str | None:
    """Why the exported learner at `path` does not load, in one line; None when it loads.

    Loaded in a fresh process, so that this one (the service's driver) never imports torch, and the
    memory a learner takes is given back as soon as it is checked.
    """
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: junk is told apart without loading torch
        return NOT_A_LEARNER
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHECK, str(path)], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"it did not load within {timeout:.0f} s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the checking process exited with {done.returncode}"


class Rollout:
    """The model file at `model` as the replicas get it: `take` a version, `served` once it is out."""

    def __init__(self, model: Path) -> None:
        self.model = model.resolve()
        self.stamp: tuple[int, int] | None = None  # the version taken last (served, or refused)
        self.serving: Path | None = None  # the copy the replicas load now
        self._copies: set[Path] = set()  # every copy made and not yet removed

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.model.stat()
        except OSError:  # being replaced: looked at again next time
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def take(self, check: bool = True) -> dict | None:
        """The replicas' configuration for the file as it is now, copied aside; None when it does not load.

        Its version is read before the copy is made: a file replaced meanwhile is a change `changed` sees.
        With `check`, the copy is loaded first (seconds) and a copy that does not load is logged and dropped.
        """
        stamp = self._stamp()
        if stamp is None:
            raise FileNotFoundError(f"no model file at {self.model}")
        self.stamp = stamp  # a file that does not load is not tried again until it changes
        copy = self._copy(stamp)
        if check and (problem := load_problem(copy)) is not None:
            log.error(
                "the model file %s changed but does not load (%s); still serving the one before", self.model, problem
            )
            self._remove(copy)
            return None
        # Read after the model, not before: publishing renames the model file first and its metadata second.
        return {
            "model_path": str(copy),
            "source": str(self.model),
            "version": stamp[0],
            "metadata": read_metadata(self.model) or {},
        }

    def changed(self) -> dict | None:
        """`take` when the file is not the version taken last; None when it is (or it is being replaced)."""
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return None
        return self.take(check=True)

    def served(self, config: dict) -> None:
        """The replicas are on `config`'s copy: every other copy is no longer needed.

        A copy whose rollout failed part way is kept until then: some replicas may have moved to it.
        """
        self.serving = Path(config["model_path"])
        for copy in self._copies - {self.serving}:
            self._remove(copy)

    def close(self) -> None:
        """Remove every copy: the service is stopping, or never started."""
        for copy in set(self._copies):
            self._remove(copy)
        self.serving = None

    def _copy(self, stamp: tuple[int, int]) -> Path:
        copy = self.model.with_name(f".{self.model.name}.{stamp[0]}.serving")
        try:
            shutil.copyfile(self.model, copy)
        except OSError as e:  # a folder the service may not write: the replicas load the file itself, as before
            log.warning("could not copy the model beside itself (%s); the replicas load %s itself", e, self.model)
            with contextlib.suppress(OSError):
                copy.unlink(missing_ok=True)
            return self.model
        self._copies.add(copy)
        return copy

    def _remove(self, copy: Path) -> None:
        self._copies.discard(copy)
        if copy != self.model:
            with contextlib.suppress(OSError):
                copy.unlink(missing_ok=True)
