"""Where dlib's model files live: the `face-recognition-models` package, found without importing it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "CHIP_SIZE",
    "DEFAULT_MODEL_PATH",
    "DEFAULT_PHOTO_TIMEOUT",
    "FACE_DETECTORS",
    "MissingResourceError",
    "cache_atomically",
    "cnn_detector_dat_path",
    "default_cache_dir",
    "face_encoder_dat_path",
    "landmarks_dat_path",
    "metadata_path",
    "models_dir",
    "read_metadata",
]

# dlib's aligned face chips, the face encoder's input (here so that face finding needs no torch).
CHIP_SIZE = 150

# The exported learner the training script writes and every command serves, unless told otherwise.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "export.pkl"
# Seconds a photo may take in the pool: finding faces takes well under a second even in a 40 MP photo,
# and a fresh worker starts in one or two, so only a photo that hangs a library gets near this.
DEFAULT_PHOTO_TIMEOUT = 20.0
FACE_DETECTORS = ("hog", "cnn")  # dlib's HOG detector (the default) and its MMOD CNN (`FACE_DETECTOR`)


class MissingResourceError(FileNotFoundError):
    """A dlib model file is not installed."""


def metadata_path(model_path: Path) -> Path:
    """Where the training script writes a model's metadata: `model/export.pkl` -> `model/export.json`."""
    return model_path.with_suffix(".json")


def read_metadata(model_path: Path) -> dict | None:
    """The metadata written beside a model (classes, accuracy, when trained...); None when absent or unreadable."""
    try:
        meta = json.loads(metadata_path(model_path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def default_cache_dir() -> Path:
    """Where converted weights are kept: `$DOPPELBOT_CACHE`, else the user's cache folder."""
    if env := os.environ.get("DOPPELBOT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "doppelbot"


def cache_atomically(
    target: Path, save: Callable[[Path], object], errors: tuple[type[BaseException], ...] = (OSError,)
) -> None:
    """`save(partial)` beside `target`, then a rename onto it: a concurrent start never reads half a file.

    `errors` while saving are ignored: a read-only home still works, it just makes the file again next time.
    """
    with contextlib.suppress(*errors):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        save(partial)
        os.replace(partial, target)


def models_dir() -> Path:
    """The `models/` folder of the installed `face_recognition_models` package."""
    # Importing the package runs `import pkg_resources`, which new setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError("the package face-recognition-models is not installed: run pip install -e .")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_file(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise MissingResourceError(f"{path} is missing: reinstall face-recognition-models")
    return path


def face_encoder_dat_path() -> Path:
    """dlib's face recognition ResNet weights."""
    return _model_file("dlib_face_recognition_resnet_model_v1.dat")


def landmarks_dat_path() -> Path:
    """dlib's 5-point face landmark predictor."""
    return _model_file("shape_predictor_5_face_landmarks.dat")


def cnn_detector_dat_path() -> Path:
    """dlib's MMOD face detector (a CNN), for `FACE_DETECTOR=cnn`."""
    return _model_file("mmod_human_face_detector.dat")
