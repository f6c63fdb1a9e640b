"""The serving API: load an exported learner once, answer photos' bytes with one answer per face.

All faces of all photos in a call go through the network in one batched forward pass, with the
learner's own validation transforms, and without fastai's `predict` (which builds a DataLoader and
prints a progress bar for every item).
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .deferred import deferred_imports

# TorchDynamo (a second of the start) waits until something compiles: model/deferred.py.
with warnings.catch_warnings(), deferred_imports():
    warnings.simplefilter("ignore", FutureWarning)  # fastai's import trips torch.jit deprecations
    from fastai.learner import Learner, load_learner
    from fastai.vision.augment import Resize
    from fastai.vision.core import PILImage, TensorImage

from .answers import DEFAULT_THRESHOLD, Examined, FaceAnswer, PhotoAnswer, TurnedAway, is_known
from .decode import DecodedImage, DecodeLimits
from .encoder import FaceEncoder
from .faces import Face, FaceFinder, FaceOptions, FaceSearch
from .precision import encoding, float_precision, resolve
from .quality import OK
from .resources import DEFAULT_MODEL_PATH
from .search import FacePool, Searched, search_photo
from .strangers import Gallery

__all__ = ["DEFAULT_MODEL_PATH", "DEFAULT_THRESHOLD", "FaceClassifier", "ModelNotFound"]

log = logging.getLogger(__name__)


# Without a pool, photos are searched and answered this many at a time: the network still batches,
# and the first photos of a burst are answered without waiting for the last ones' faces.
IN_PROCESS_RUN = 4

# A photo of one face, alone, has its chip and its mirror image encoded on two cores at once, the mirror on a
# thread of its own: while the network runs on it, the face-finding processes are idle, and one torch thread
# leaves the other core unused (measured here, int8: 11.6 ms for chip and mirror in one batch, 7.9 ms apart).
# Not more: a run of two photos is what a replica's one face-finding process hands over in a burst, while it
# finds the next run's faces, and a second thread there would take that process's core.
MIRRORS_APART_UP_TO = 1


@functools.cache
def _mirror_thread() -> ThreadPoolExecutor:
    """This process's one thread that encodes a lone photo's mirror images beside its chips."""
    return ThreadPoolExecutor(1, thread_name_prefix="mirrors")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _encoded(encoder: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> torch.Tensor:
    # Inference mode and autocast are per thread: each thread that encodes sets its own.
    with torch.inference_mode(), encoding(precision, device):
        return encoder(x).float()


def _photo_answer(faces: list[FaceAnswer], too_small: int, timings: dict[str, float]) -> PhotoAnswer:
    """A photo's answer from its faces: every face when one is good enough to name, else the faces turned away."""
    if any(face.quality == OK for face in faces):
        return PhotoAnswer("ok", faces=faces, too_small=too_small, timings=timings)
    turned_away = [TurnedAway.of(face) for face in faces]
    return PhotoAnswer("no_face", too_small=too_small, timings=timings, turned_away=turned_away)


class ModelNotFound(FileNotFoundError):
    """There is no exported learner where one was expected."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"No model at {path}. Make one with `python -m training` (gathers photos from the web), "
            f"or `python -m training --from-folder DIR` from your own photos."
        )
        self.path = path


def _as_floats(chips: Sequence[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


class FaceClassifier:
    """An exported fastai learner plus the face finder, ready to answer photos."""

    def __init__(
        self,
        learn: Learner,
        threshold: float = DEFAULT_THRESHOLD,
        limits: DecodeLimits | None = None,
        face_options: FaceOptions | None = None,
        stranger_distance: float | None = None,
        pool: FacePool | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> None:
        self.device = torch.device(device)  # "cuda" runs the network on the GPU; faces are found on the CPU
        # The encoder's number format (model/precision.py): bf16 where the CPU has it, int8 on another x86 CPU.
        self.precision = resolve(precision, self.device)
        self.classes: list[str] = [str(c) for c in learn.dls.vocab]
        self.threshold = threshold
        # Face learners exported by the training script carry a gallery; others (the book's ResNet,
        # older exports) name the closest class for every face, as before.
        self.gallery: Gallery | None = learn.__dict__.get("gallery")
        if stranger_distance is None and self.gallery is not None:
            stranger_distance = self.gallery.threshold
        self.stranger_distance = stranger_distance
        self.limits = limits or DecodeLimits()
        self.finder = FaceFinder(face_options)
        # Several photos at once have their faces found by the pool's processes, if there is one; it
        # outlives the classifier (a replaced model is served with the same pool), so its owner closes it.
        self.pool = pool
        self._after_item = learn.dls.valid.after_item
        self._after_batch = learn.dls.valid.after_batch
        for pipeline in (self._after_item, self._after_batch):
            pipeline.split_idx = 1  # validation transforms: no augmentation
        self._activation = getattr(learn.loss_func, "activation", lambda x: torch.softmax(x, dim=-1))
        model = learn.model.eval().to(self.device)
        model.to(memory_format=torch.channels_last)
        # Learners are Sequential(body, head); timing the two apart shows where time goes. A face
        # encoder body is served folded (`FaceEncoder.fused`), which leaves the learner untouched.
        body = model[0] if isinstance(model, nn.Sequential) and len(model) == 2 else None
        self._face_encoder = isinstance(body, FaceEncoder)
        if self._face_encoder:
            body = body.fused().to(memory_format=torch.channels_last)
            if self.precision == "int8":
                body = self._int8(body)
        elif self.precision == "int8":  # quantized here is dlib's encoder alone: another network runs in float
            self.precision = float_precision(self.device)
        self._stages: list[tuple[str, nn.Module]] = (
            [("encoder", body), ("head", model[1])] if body is not None else [("encoder", model)]
        )
        self._plain_size = self._plain_chip_size()

    def _int8(self, fused: nn.Module) -> nn.Module:
        """The encoder in int8, calibrated on the gallery's faces; without any, bf16 or fp32 (logged)."""
        from .int8 import calibration_chips, quantized_encoder

        chips = calibration_chips(self.gallery)
        if chips:
            return quantized_encoder(fused, chips)
        self.precision = float_precision(self.device)
        log.warning(
            "this learner's gallery keeps no faces to calibrate int8 on (an older export): the encoder serves %s",
            self.precision,
        )
        return fused

    @property
    def has_encoder(self) -> bool:
        """A face learner (dlib's encoder as its body), whose descriptors can be measured against a gallery."""
        return self._face_encoder

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL_PATH, **kwargs) -> FaceClassifier:
        """Load an exported learner (`model/export.pkl` by default)."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load_learner warns that pickles can run code: ours are ours
            learn = load_learner(path, cpu=kwargs.get("device", "cpu") == "cpu")
        return cls(learn, **kwargs)

    def _plain_chip_size(self) -> int | None:
        """The chip size, when the learner's validation transforms only turn such chips into floats in [0, 1].

        As for the training script's learners (Resize to the chip size, ToTensor, IntToFloatTensor, and
        augmentations for training only); checked on probe chips, so any other learner keeps its transforms.
        """
        resizes = [t for t in self._after_item.fs if isinstance(t, Resize)]
        if len(resizes) != 1 or len(set(resizes[0].size)) != 1:
            return None
        size = resizes[0].size[0]
        rng = np.random.default_rng(0)
        for _ in range(4):  # a random augmentation would show in one of them
            probe = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8)]
            expected = self._transformed(probe)
            # 1e-4 allows the rounding of an identity resampling (fastai's flip at validation time does
            # one), far below one grey level (1/255 = 0.004).
            if expected.shape != (1, 3, size, size) or not torch.allclose(_as_floats(probe), expected, atol=1e-4):
                return None
        return size

    def _batch(self, chips: Sequence[np.ndarray]) -> torch.Tensor:
        size = self._plain_size
        if size and all(chip.shape == (size, size, 3) and chip.dtype == np.uint8 for chip in chips):
            return _as_floats(chips)  # what the transforms would give, without their per-chip cost
        return self._transformed(chips)

    def _transformed(self, chips: Sequence[np.ndarray]) -> torch.Tensor:
        items = [self._after_item(PILImage.create(chip)) for chip in chips]
        batch = self._after_batch(TensorImage(torch.stack(items)))
        return batch.as_subclass(torch.Tensor).contiguous(memory_format=torch.channels_last)

    def _forward(
        self, chips: Sequence[np.ndarray], mirrored: bool
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        """Probabilities, and with `mirrored` each chip's descriptor averaged with its mirror image's.

        The mirror images ride in the same batch as the chips: one forward pass through the encoder.
        """
        timings: dict[str, float] = {}
        n = len(chips)
        if not n:
            return np.zeros((0, len(self.classes)), dtype=np.float32), None, timings
        mirrored = mirrored and self.has_encoder
        descriptors = None
        with torch.inference_mode():
            start = time.perf_counter()
            x = self._batch(chips).to(self.device)
            if mirrored:
                x = torch.cat([x, x.flip(-1)])
            timings["transforms"] = time.perf_counter() - start
            for i, (name, stage) in enumerate(self._stages):
                start = time.perf_counter()
                encoder = i == 0 and self._face_encoder
                x = self._encode(stage, x, n if mirrored else None) if encoder else stage(x)
                if mirrored and i == 0:
                    descriptors = ((x[:n] + x[n:]) / 2).float().cpu().numpy()
                    x = x[:n]
                timings[name] = time.perf_counter() - start
            probs = self._activation(x).float().cpu().numpy()
        return probs, descriptors, timings

    def _mirrors_apart(self, n: int) -> bool:
        """Whether `n` chips' mirror images are encoded on a second core beside them (see MIRRORS_APART_UP_TO)."""
        return self.device.type == "cpu" and n <= MIRRORS_APART_UP_TO and torch.get_num_threads() == 1 and _cores() > 1

    def _encode(self, encoder: nn.Module, x: torch.Tensor, mirrored_from: int | None) -> torch.Tensor:
        """The encoder on `x`; when its images from `mirrored_from` on are the mirrors of a lone photo's, those on
        the mirror thread at the same time."""
        n = mirrored_from
        if n is None or not self._mirrors_apart(n):
            return _encoded(encoder, x, self.precision, self.device)
        mirrors = _mirror_thread().submit(_encoded, encoder, x[n:], self.precision, self.device)
        return torch.cat([_encoded(encoder, x[:n], self.precision, self.device), mirrors.result()])

    def probabilities(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """Class probabilities for aligned face chips, (N, classes), in one forward pass."""
        probs, _, timings = self._forward(chips, mirrored=False)
        return probs, timings

    def describe(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities, and the encoder's descriptors each averaged with its mirror image's (N, 128)."""
        if not self.has_encoder:
            raise TypeError("Only face learners (dlib's encoder as the body) give face descriptors.")
        if not len(chips):
            return np.zeros((0, len(self.classes)), dtype=np.float32), np.zeros((0, 128), dtype=np.float32)
        probs, descriptors, _ = self._forward(chips, mirrored=True)
        return probs, descriptors

    def identify(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        """Probabilities and, where the model has a gallery, each face's distance to its closest class."""
        probs, descriptors, timings = self._forward(chips, mirrored=self.gallery is not None)
        if descriptors is None or self.gallery is None:
            return probs, None, timings
        start = time.perf_counter()
        labels = [self.classes[i] for i in probs.argmax(1)]
        distances = self.gallery.distances(descriptors, labels)
        timings["gallery"] = time.perf_counter() - start
        return probs, distances, timings

    def _face_answer(self, face: Face, probs: np.ndarray, distance: float | None) -> FaceAnswer:
        best = int(probs.argmax())
        confidence = float(probs[best])
        if distance is not None and not np.isfinite(distance):
            distance = None  # the class has no reference faces: nothing to measure against
        known = is_known(distance, self.stranger_distance)
        return FaceAnswer(
            box=face.box,
            label=self.classes[best],
            confidence=confidence,
            sure=confidence >= self.threshold and face.quality == OK,
            probabilities={c: float(p) for c, p in zip(self.classes, probs, strict=True)},
            known=known,
            distance=distance,
            quality=face.quality,
            measures=dict(face.measures),
            reason=face.reason,
        )

    def classify_many(self, photos: Sequence[bytes]) -> list[PhotoAnswer]:
        """Answer several photos; every face of every photo shares one forward pass.

        With a pool, the faces of the first photos go through the network while the pool's processes
        still look for the next ones' (`classify_in_parts`), so that no core waits.
        """
        return [answer for answer, _ in self.classify_keeping_images(photos)]

    def classify_keeping_images(
        self, photos: Sequence[bytes], images_from: int | None = None
    ) -> list[tuple[PhotoAnswer, DecodedImage | None]]:
        """As `classify_many`, with the decoded image of each photo that has at least `images_from` faces.

        For drawing a photo's boxes without decoding it a second time (None: no images kept). With a
        pool, every photo is searched in the pool's processes, a single one too: there a photo that
        hangs or crashes a library costs only its own answer, never this process.
        """
        return [pair for part in self.classify_in_parts(photos, images_from) for pair in part]

    def classify_in_parts(
        self, photos: Sequence[bytes], images_from: int | None = None
    ) -> Iterator[list[tuple[PhotoAnswer, DecodedImage | None]]]:
        """As `classify_keeping_images`, a run of photos at a time, in order, each run as soon as it is answered.

        With a pool, a run is a few photos per process: the network answers one run while the
        processes find the faces of the next, and the first photos of a burst need not wait for the last.
        """
        if self.pool is not None and photos:
            parts = self.pool.search_in_parts(photos, self.finder, self.limits, images_from=images_from)
        else:
            parts = (
                [search_photo(data, self.finder, self.limits, images_from) for data in photos[i : i + IN_PROCESS_RUN]]
                for i in range(0, len(photos), IN_PROCESS_RUN)
            )
        for part in parts:
            yield self._answer_keeping_images(part)

    def _answer_keeping_images(self, part: Sequence[Searched]) -> list[tuple[PhotoAnswer, DecodedImage | None]]:
        answers = self._answer([searched.found for searched in part])
        return [(answer, searched.image) for answer, searched in zip(answers, part, strict=True)]

    def _answer(self, searches: Sequence[FaceSearch | PhotoAnswer]) -> list[PhotoAnswer]:
        """Each photo's answer from its faces, all faces in one forward pass."""
        chips = [f.chip for s in searches if isinstance(s, FaceSearch) for f in s.faces]
        probs, distances, batch_timings = self.identify(chips)
        answers, row = [], 0
        for search in searches:
            if isinstance(search, PhotoAnswer):
                answers.append(search)
                continue
            faces = [
                self._face_answer(f, probs[row + i], None if distances is None else float(distances[row + i]))
                for i, f in enumerate(search.faces)
            ]
            share = len(faces) / max(len(chips), 1)
            timings = {"decode": search.decode_s, "detect": search.detect_s, "chips": search.chips_s}
            timings.update({k: v * share for k, v in batch_timings.items()})
            if search.second_look_s:
                timings["second_look"] = search.second_look_s
            row += len(faces)
            answers.append(_photo_answer(faces, search.too_small, timings))
        return answers

    def classify(self, data: bytes) -> PhotoAnswer:
        """Answer one photo."""
        return self.classify_many([data])[0]

    def examine(self, data: bytes) -> Examined:
        """One photo's answer with each face's chip and descriptor, for a feedback press (rare: no pool, no batch)."""
        import simplejpeg

        searched = search_photo(data, self.finder, self.limits)
        if isinstance(searched.found, PhotoAnswer):
            return Examined(searched.found)
        answer = self._answer([searched.found])[0]
        chips = [face.chip for face in searched.found.faces]
        descriptors = self.describe(chips)[1].tolist() if self.has_encoder and chips else None
        jpegs = [simplejpeg.encode_jpeg(np.ascontiguousarray(chip), quality=90, colorspace="RGB") for chip in chips]
        return Examined(answer, jpegs, descriptors)
