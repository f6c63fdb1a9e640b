"""Photo bytes in, one answer per face out: decoding, faces, dlib's encoder in PyTorch, the learner.

Names are imported lazily, so `from model import PhotoAnswer` does not load torch and fastai.
"""

from __future__ import annotations

import importlib

__all__ = [
    "DecodeLimits",
    "FaceAnswer",
    "FaceClassifier",
    "FaceEncoder",
    "FaceFinder",
    "FaceOptions",
    "ImageError",
    "ModelNotFound",
    "PhotoAnswer",
    "annotate",
    "decode_image",
    "export_learner",
    "face_learner",
    "load_face_encoder",
]

_HOMES = {
    "DecodeLimits": "decode",
    "ImageError": "decode",
    "decode_image": "decode",
    "FaceAnswer": "answers",
    "PhotoAnswer": "answers",
    "FaceClassifier": "serving",
    "ModelNotFound": "serving",
    "FaceEncoder": "encoder",
    "load_face_encoder": "encoder",
    "FaceFinder": "faces",
    "FaceOptions": "faces",
    "annotate": "annotate",
    "export_learner": "learner",
    "face_learner": "learner",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
