"""The serving API: load an exported learner once, answer photos' bytes with one answer per face.

All faces of all photos in a call go through the network in one batched forward pass, with the
learner's own validation transforms, and without fastai's `predict` (which builds a DataLoader and
prints a progress bar for every item).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fastai's import trips torch.jit deprecations
    from fastai.learner import Learner, load_learner
    from fastai.vision.core import PILImage, TensorImage

from .answers import DEFAULT_THRESHOLD, FaceAnswer, PhotoAnswer
from .decode import DecodeLimits, ImageError, decode_image
from .faces import Face, FaceFinder, FaceOptions, FaceSearch
from .resources import DEFAULT_MODEL_PATH

__all__ = ["DEFAULT_MODEL_PATH", "DEFAULT_THRESHOLD", "FaceClassifier", "ModelNotFound"]

log = logging.getLogger(__name__)


class ModelNotFound(FileNotFoundError):
    """There is no exported learner where one was expected."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"No model at {path}. Make one with `python -m training` (gathers photos from the web), "
            f"or `python -m training --from-folder DIR` from your own photos."
        )
        self.path = path


class FaceClassifier:
    """An exported fastai learner plus the face finder, ready to answer photos."""

    def __init__(
        self,
        learn: Learner,
        threshold: float = DEFAULT_THRESHOLD,
        limits: DecodeLimits | None = None,
        face_options: FaceOptions | None = None,
    ) -> None:
        self.classes: list[str] = [str(c) for c in learn.dls.vocab]
        self.threshold = threshold
        self.limits = limits or DecodeLimits()
        self.finder = FaceFinder(face_options)
        self._after_item = learn.dls.valid.after_item
        self._after_batch = learn.dls.valid.after_batch
        for pipeline in (self._after_item, self._after_batch):
            pipeline.split_idx = 1  # validation transforms: no augmentation
        self._activation = getattr(learn.loss_func, "activation", lambda x: torch.softmax(x, dim=-1))
        model = learn.model.eval()
        # Face learners are Sequential(body, head); timing the two apart shows where time goes.
        self._stages: list[tuple[str, nn.Module]] = (
            [("encoder", model[0]), ("head", model[1])]
            if isinstance(model, nn.Sequential) and len(model) == 2
            else [("encoder", model)]
        )
        model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL_PATH, **kwargs) -> FaceClassifier:
        """Load an exported learner (`model/export.pkl` by default)."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load_learner warns that pickles can run code: ours are ours
            learn = load_learner(path)
        return cls(learn, **kwargs)

    def _batch(self, chips: Sequence[np.ndarray]) -> torch.Tensor:
        items = [self._after_item(PILImage.create(chip)) for chip in chips]
        batch = self._after_batch(TensorImage(torch.stack(items)))
        return batch.as_subclass(torch.Tensor).contiguous(memory_format=torch.channels_last)

    def probabilities(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """Class probabilities for aligned face chips, (N, classes), in one forward pass."""
        timings: dict[str, float] = {}
        if not chips:
            return np.zeros((0, len(self.classes)), dtype=np.float32), timings
        with torch.inference_mode():
            start = time.perf_counter()
            x = self._batch(chips)
            timings["transforms"] = time.perf_counter() - start
            for name, stage in self._stages:
                start = time.perf_counter()
                x = stage(x)
                timings[name] = time.perf_counter() - start
            probs = self._activation(x).float().numpy()
        return probs, timings

    def _find_faces(self, data: bytes) -> FaceSearch | PhotoAnswer:
        start = time.perf_counter()
        try:
            image = decode_image(data, self.limits)
        except ImageError as e:
            return PhotoAnswer("error", error=str(e), error_kind=type(e).__name__)
        decode_s = time.perf_counter() - start
        search = self.finder.find(image)
        search.decode_s = decode_s
        return search

    def _face_answer(self, face: Face, probs: np.ndarray) -> FaceAnswer:
        best = int(probs.argmax())
        confidence = float(probs[best])
        return FaceAnswer(
            box=face.box,
            label=self.classes[best],
            confidence=confidence,
            sure=confidence >= self.threshold,
            probabilities={c: float(p) for c, p in zip(self.classes, probs, strict=True)},
        )

    def classify_many(self, photos: Sequence[bytes]) -> list[PhotoAnswer]:
        """Answer several photos; every face of every photo shares one forward pass."""
        searches: list[FaceSearch | PhotoAnswer] = []
        for data in photos:
            try:
                searches.append(self._find_faces(data))
            except Exception:  # a photo that breaks a library must not take the others down
                log.exception("unexpected failure reading a photo")
                searches.append(
                    PhotoAnswer("error", error="Something went wrong reading this photo.", error_kind="Internal")
                )
        chips = [f.chip for s in searches if isinstance(s, FaceSearch) for f in s.faces]
        probs, batch_timings = self.probabilities(chips)
        answers, row = [], 0
        for search in searches:
            if isinstance(search, PhotoAnswer):
                answers.append(search)
                continue
            faces = [self._face_answer(f, probs[row + i]) for i, f in enumerate(search.faces)]
            share = len(faces) / max(len(chips), 1)
            timings = {"decode": search.decode_s, "detect": search.detect_s, "chips": search.chips_s}
            timings.update({k: v * share for k, v in batch_timings.items()})
            row += len(faces)
            outcome = "ok" if faces else "no_face"
            answers.append(PhotoAnswer(outcome, faces=faces, too_small=search.too_small, timings=timings))
        return answers

    def classify(self, data: bytes) -> PhotoAnswer:
        """Answer one photo."""
        return self.classify_many([data])[0]
