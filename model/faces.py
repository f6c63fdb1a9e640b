"""Find faces with dlib's HOG detector, place its 5 landmarks, and cut aligned 150x150 chips."""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from .decode import DecodedImage
from .quality import OK, QualityOptions, measure, verdict
from .resources import (
    CHIP_SIZE,
    FACE_DETECTORS,
    cache_atomically,
    cnn_detector_dat_path,
    default_cache_dir,
    landmarks_dat_path,
)

__all__ = ["DETECTORS", "Face", "FaceFinder", "FaceOptions", "FaceSearch", "QualityOptions", "frontal_face_detector"]

Box = tuple[int, int, int, int]
DETECTORS = FACE_DETECTORS


@dataclass(frozen=True)
class FaceOptions:
    """How hard to look for faces, and which ones are good enough to name."""

    # The detector looks at the photo resized to this long side first (so its cost is bounded, about
    # 20 ms here, whatever the photo's size); it finds faces from 80 px at that scale, so from 200 px
    # in a 1280 px photo.
    detect_side: int = 512
    # Where that first look finds no face, or several (a group photo, where the small faces are), HOG looks
    # again at the working pixels enlarged to this long side: twice a 1280 px photo's, so faces from about
    # 30 px. Its cost is bounded whatever the photo's size (about 0.4 s here, far within the per-photo
    # deadline); a photo where the first look finds one face pays nothing more. The same threshold as the
    # first look: a stricter one (0.5) lost a sixth of the 80 to 120 px faces, for about one stray box in 60
    # faces saved. Off: the search before it (a retry at twice `detect_side` only when nothing was found).
    second_look: bool = True
    second_look_side: int = 2560
    second_look_threshold: float = 0.0
    # "hog" (dlib's HOG detector, the default: fast on a CPU) or "cnn" (dlib's MMOD detector: finds turned and
    # small faces HOG misses, but takes seconds a photo on a CPU; for a machine with a GPU). The CNN looks once,
    # at the working pixels reduced to `cnn_side` (small photos enlarged twice).
    detector: str = "hog"
    cnn_side: int = 1280
    # Grey levels would make detection about 20% cheaper, but the chips that follow named the harder
    # pins pair less well (5-fold accuracy 97.7% against 98.7 to 99.0% in colour): kept in colour.
    detect_in_grey: bool = False
    # A tight face crop leaves the HOG detector no margin around the face; when nothing is found in
    # a roughly square image, look again with a plain border added and a slightly lower threshold.
    crop_fallback: bool = True
    crop_border: float = 0.3
    crop_side: int = 400
    crop_threshold: float = -0.3
    chip_padding: float = 0.25  # dlib's default, which its face encoder was trained with
    quality: QualityOptions = field(default_factory=QualityOptions)


@dataclass
class Face:
    """One face: its box in the user's photo and its aligned chip."""

    box: Box  # left, top, right, bottom in the original photo's pixels
    chip: np.ndarray  # (150, 150, 3) uint8 RGB
    score: float  # the detector's confidence
    quality: str = OK  # `model.quality.QUALITIES`: "ok", or why the face cannot be named
    measures: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # below quality: why, and what to send instead


@dataclass
class FaceSearch:
    """Every face found in one photo, those below quality included, left to right."""

    faces: list[Face] = field(default_factory=list)
    decode_s: float = 0.0
    detect_s: float = 0.0  # the second look's time included
    second_look_s: float = 0.0  # 0 when the first look settled it
    chips_s: float = 0.0

    @property
    def too_small(self) -> int:
        """Faces found but too small to name."""
        return sum(face.quality == "too_small" for face in self.faces)


# Down to this scale, dlib's resize (bilinear, no smoothing first) samples every pixel; a larger reduction would
# skip pixels and alias, so it goes to Pillow's, which smooths first.
MILD_REDUCTION = 0.5

# dlib's frontal face detector scans five HOG filters (front, turned left or right, tilted either way).
FRONTAL_FILTERS = 5


def frontal_face_detector(cache_dir: str | Path | None = None) -> dlib.fhog_object_detector:
    """dlib's frontal face detector, read from a copy in the cache once one was saved.

    dlib builds it from text compiled into the library, which takes 0.26 s and holds the GIL: a
    quarter of a second of every start. Its saved copy reads in a millisecond.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache_dir / f"frontal_face_detector_dlib_{dlib.__version__}.svm"
    if cached.is_file():
        try:
            detector = dlib.fhog_object_detector(str(cached))
            if detector.num_detectors == FRONTAL_FILTERS:
                return detector
        except RuntimeError:
            pass  # a damaged copy is made again below
    detector = dlib.get_frontal_face_detector()
    # dlib reports a failed save as RuntimeError.
    cache_atomically(cached, lambda partial: detector.save(str(partial)), (OSError, RuntimeError))
    return detector


class FaceFinder:
    """Holds dlib's detector and landmark predictor; `find` turns an image into face chips."""

    def __init__(self, options: FaceOptions | None = None, landmarks_path: str | Path | None = None) -> None:
        self.options = options or FaceOptions()
        if self.options.detector not in DETECTORS:
            raise ValueError(f"no face detector {self.options.detector!r}: one of {', '.join(DETECTORS)}")
        self._detector = frontal_face_detector()
        # dlib's detectors keep the image they scan in the detector itself, and its Python binding lets go of the
        # GIL while they scan: two threads scanning with one detector corrupt each other's memory (seen: the
        # process died of a segfault when a "Why?" and a feedback press read photos at once). One at a time.
        self._scanning = threading.Lock()
        self._cnn = None
        if self.options.detector == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(str(cnn_detector_dat_path()))
        self._landmarks = dlib.shape_predictor(str(landmarks_path or landmarks_dat_path()))

    def _resized(self, pixels: np.ndarray, side: int) -> tuple[np.ndarray, float]:
        """`pixels` resized to a long side of `side`, and the scale that took."""
        h, w = pixels.shape[:2]
        scale = side / max(h, w)
        grey = self.options.detect_in_grey and self._cnn is None
        if abs(scale - 1) <= 1e-3 and not grey:
            return pixels, 1.0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if MILD_REDUCTION <= scale < 1 and not grey:
            # The last step after libjpeg's reduction (640 to 512 px for a 1280 px photo): dlib's bilinear resize
            # takes 1.1 ms where Pillow's takes 2.5, for the same pixels within a quarter of a grey level.
            return dlib.resize_image(pixels, size[1], size[0]), scale
        image = Image.fromarray(pixels)
        if grey:
            image = image.convert("L")
        if abs(scale - 1) <= 1e-3:
            return np.asarray(image), 1.0
        # reducing_gap: shrink by whole factors first (cheap), then resample the last step.
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)), scale

    def _run_on(
        self, pixels: np.ndarray, side: int, to_work: float, upsample: int = 0, threshold: float = 0.0
    ) -> list[tuple[dlib.rectangle, float]]:
        """The detector on `pixels` resized to a long side of `side`; boxes in working pixels.

        `to_work`: working pixels per pixel of `pixels` (1 when they are the working pixels).
        """
        resized, scale = self._resized(pixels, side)
        scale /= to_work  # detector pixels per working pixel
        with self._scanning:
            rects, scores, _ = self._detector.run(resized, upsample, threshold)
        return [(_scaled(r, 1 / scale), s) for r, s in zip(rects, scores, strict=True)]

    def _run_at(self, image: DecodedImage, side: int) -> list[tuple[dlib.rectangle, float]]:
        """The detector on the photo at a long side of `side`, decoded no finer than that; boxes in working pixels."""
        pixels, scale = image.reduced(side)
        return self._run_on(pixels, side, image.scale / scale)

    def _detect(self, image: DecodedImage, search: FaceSearch) -> list[tuple[dlib.rectangle, float]]:
        if self._cnn is not None:
            return self._detect_cnn(image)
        long_side = max(image.work_size)
        side = self.options.detect_side
        # Small photos are enlarged at most twice, as dlib's own upsampling does: more costs time, not faces.
        first = min(side, 2 * long_side)
        found = self._run_at(image, first)
        if not self.options.second_look:
            second = min(2 * long_side, 2 * side)
            if not found and second > first:
                found = self._run_at(image, second)
            return found
        second = min(2 * long_side, self.options.second_look_side)
        if len(found) != 1 and second > first:
            start = time.perf_counter()
            found = _merged(found, self._run_on(image.pixels, second, 1.0, 0, self.options.second_look_threshold))
            search.second_look_s = time.perf_counter() - start
        return found

    def _detect_cnn(self, image: DecodedImage) -> list[tuple[dlib.rectangle, float]]:
        """dlib's MMOD detector, once, on the working pixels at up to `cnn_side` (small photos enlarged twice)."""
        pixels = image.pixels
        side = min(self.options.cnn_side, 2 * max(image.work_size))
        resized, scale = self._resized(pixels, side)
        with self._scanning:
            found = self._cnn(np.ascontiguousarray(resized), 0)
        return [(_scaled(d.rect, 1 / scale), float(d.confidence)) for d in found]

    def _detect_in_crop(self, image: DecodedImage) -> list[tuple[dlib.rectangle, float]]:
        """Detect in a tight crop: add a border, look again a little less strictly, map the boxes back."""
        o = self.options
        pixels, scale = image.reduced(o.crop_side)
        to_work = image.scale / scale
        h, w = pixels.shape[:2]
        if not 0.5 <= w / h <= 2.0:
            return []
        pad = round(max(h, w) * o.crop_border)
        fill = int(pixels.mean())
        padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
        found = []
        work_w, work_h = image.work_size
        for rect, score in self._run_on(padded, o.crop_side, 1.0, 1, o.crop_threshold):
            left, top, right, bottom = (
                round((v - pad) * to_work) for v in (rect.left(), rect.top(), rect.right(), rect.bottom())
            )
            box = dlib.rectangle(max(left, 0), max(top, 0), min(right, work_w - 1), min(bottom, work_h - 1))
            found.append((box, score))
        # A crop holds one face: keep the detector's best.
        return sorted(found, key=lambda f: -f[1])[:1]

    def find(self, image: DecodedImage) -> FaceSearch:
        """All faces in the image, left to right (the order people read), each with its quality verdict.

        That order holds everywhere after: answers, the boxed photo's numbers, a crowd's reply (which
        lists the largest faces under those numbers, `bot.replies.listed_numbers`).

        Faces are looked for on a decode no finer than the detector needs; the working resolution is
        decoded only for the chips of faces found, and the chips are cut from it as dlib's encoder
        expects them. Not from a reduced decode: libjpeg's reduction is sharper than the halving dlib
        samples a chip through, and descriptors moved by up to 0.24 (`bench/decode_check.py`).
        """
        search = FaceSearch()
        start = time.perf_counter()
        if self._cnn is None:
            image.decode_ahead(_decoder())
        detections = self._detect(image, search)
        if not detections and self.options.crop_fallback and self._cnn is None:
            detections = self._detect_in_crop(image)
        search.detect_s = time.perf_counter() - start

        start = time.perf_counter()
        detections.sort(key=lambda d: (d[0].left() + d[0].right(), d[0].top()))
        if detections:
            pixels = image.pixels
            shapes = dlib.full_object_detections([self._landmarks(pixels, rect) for rect, _ in detections])
            chips = dlib.get_face_chips(pixels, shapes, size=CHIP_SIZE, padding=self.options.chip_padding)
            for (rect, score), shape, chip in zip(detections, shapes, chips, strict=True):
                search.faces.append(self._face(image, rect, score, shape, np.asarray(chip)))
        search.chips_s = time.perf_counter() - start
        return search

    def _face(
        self, image: DecodedImage, rect: dlib.rectangle, score: float, shape: dlib.full_object_detection, chip
    ) -> Face:
        box = _original_box(rect, image)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        measures = measure(chip, points, rect.width() / image.scale)
        quality, reason = verdict(measures, self.options.quality, image.scale)
        return Face(box, chip, float(score), quality, measures, reason)


@functools.cache
def _decoder() -> ThreadPoolExecutor:
    """This process's one thread that decodes photos' working pixels while the detector runs."""
    return ThreadPoolExecutor(1, thread_name_prefix="decode-ahead")


def _scaled(rect: dlib.rectangle, by: float) -> dlib.rectangle:
    return dlib.rectangle(*(round(v * by) for v in (rect.left(), rect.top(), rect.right(), rect.bottom())))


def _overlap(a: dlib.rectangle, b: dlib.rectangle) -> float:
    """The share of the smaller box that the two boxes have in common."""
    inter = a.intersect(b)
    common = inter.area() if inter.width() > 0 and inter.height() > 0 else 0
    return common / max(1, min(a.area(), b.area()))


def _merged(first: list, second: list) -> list:
    """The first look's faces, and those the second look adds: a face both found keeps the first look's box,
    found at the scale it fits the detector's window best."""
    added = [(r, s) for r, s in second if all(_overlap(r, kept) < 0.5 for kept, _ in first)]
    return [*first, *added]


def _original_box(rect: dlib.rectangle, image: DecodedImage) -> Box:
    """The detector's box in the user's pixels, clipped to the photo."""
    width, height = image.original_size
    s = image.scale
    left, top = max(0, round(rect.left() / s)), max(0, round(rect.top() / s))
    right, bottom = min(width, round((rect.right() + 1) / s)), min(height, round((rect.bottom() + 1) / s))
    return (left, top, right, bottom)
