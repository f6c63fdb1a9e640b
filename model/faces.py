"""Find faces with dlib's HOG detector, place its 5 landmarks, and cut aligned 150x150 chips."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from .decode import DecodedImage
from .resources import CHIP_SIZE, cache_atomically, default_cache_dir, landmarks_dat_path

__all__ = ["Face", "FaceFinder", "FaceOptions", "FaceSearch", "frontal_face_detector"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceOptions:
    """How hard to look for faces, and which ones to keep."""

    min_face: int = 40  # faces narrower than this, in the user's pixels, are too small to name
    # The detector looks at the photo resized to this long side first (so its cost is bounded, about
    # 20 ms here, whatever the photo's size); it finds faces from 80 px at that scale, so from 200 px
    # in a 1280 px photo. Only when that finds nothing does it look again at up to twice that size
    # (and small photos at twice their own), for photos whose faces are all small.
    detect_side: int = 512
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


@dataclass
class Face:
    """One face: its box in the user's photo and its aligned chip."""

    box: Box  # left, top, right, bottom in the original photo's pixels
    chip: np.ndarray  # (150, 150, 3) uint8 RGB
    score: float  # the detector's confidence


@dataclass
class FaceSearch:
    """Every face kept in one photo, with how many were ignored as too small."""

    faces: list[Face] = field(default_factory=list)
    too_small: int = 0
    decode_s: float = 0.0
    detect_s: float = 0.0
    chips_s: float = 0.0


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
        self._detector = frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(landmarks_path or landmarks_dat_path()))

    def _run_on(
        self, pixels: np.ndarray, side: int, to_work: float, upsample: int = 0, threshold: float = 0.0
    ) -> list[tuple[dlib.rectangle, float]]:
        """The detector on `pixels` resized to a long side of `side`; boxes in working pixels.

        `to_work`: working pixels per pixel of `pixels` (1 when they are the working pixels).
        """
        h, w = pixels.shape[:2]
        scale = side / max(h, w)
        image = Image.fromarray(pixels)
        if self.options.detect_in_grey:
            image = image.convert("L")
        if abs(scale - 1) > 1e-3:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            # reducing_gap: shrink by whole factors first (cheap), then resample the last step.
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        else:
            scale = 1.0
        scale /= to_work  # detector pixels per working pixel
        rects, scores, _ = self._detector.run(np.asarray(image), upsample, threshold)
        return [
            (dlib.rectangle(*(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom()))), s)
            for r, s in zip(rects, scores, strict=True)
        ]

    def _run_at(self, image: DecodedImage, side: int) -> list[tuple[dlib.rectangle, float]]:
        """The detector on the photo at a long side of `side`, decoded no finer than that; boxes in working pixels."""
        pixels, scale = image.reduced(side)
        return self._run_on(pixels, side, image.scale / scale)

    def _detect(self, image: DecodedImage) -> list[tuple[dlib.rectangle, float]]:
        long_side = max(image.work_size)
        side = self.options.detect_side
        # Small photos are enlarged at most twice, as dlib's own upsampling does: more costs time, not faces.
        first = min(side, 2 * long_side)
        found = self._run_at(image, first)
        second = min(2 * long_side, 2 * side)
        if not found and second > first:
            found = self._run_at(image, second)
        return found

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
        """All faces in the image large enough to name, left to right (the order people read).

        That order holds everywhere after: answers, the boxed photo's numbers, a crowd's reply (which
        lists the largest faces under those numbers, `bot.replies.listed_numbers`).

        Faces are looked for on a decode no finer than the detector needs; the working resolution is
        decoded only for the chips of faces found, and the chips are cut from it as dlib's encoder
        expects them. Not from a reduced decode: libjpeg's reduction is sharper than the halving dlib
        samples a chip through, and descriptors moved by up to 0.24 (`bench/decode_check.py`).
        """
        start = time.perf_counter()
        detections = self._detect(image)
        if not detections and self.options.crop_fallback:
            detections = self._detect_in_crop(image)
        search = FaceSearch(detect_s=time.perf_counter() - start)

        start = time.perf_counter()
        kept = []
        for rect, score in detections:
            if rect.width() / image.scale < self.options.min_face:
                search.too_small += 1
            else:
                kept.append((rect, score))
        kept.sort(key=lambda d: (d[0].left() + d[0].right(), d[0].top()))
        if kept:
            pixels = image.pixels
            shapes = dlib.full_object_detections([self._landmarks(pixels, rect) for rect, _ in kept])
            chips = dlib.get_face_chips(pixels, shapes, size=CHIP_SIZE, padding=self.options.chip_padding)
            for (rect, score), chip in zip(kept, chips, strict=True):
                search.faces.append(Face(_original_box(rect, image), np.asarray(chip), float(score)))
        search.chips_s = time.perf_counter() - start
        return search


def _original_box(rect: dlib.rectangle, image: DecodedImage) -> Box:
    """The detector's box in the user's pixels, clipped to the photo."""
    width, height = image.original_size
    s = image.scale
    left, top = max(0, round(rect.left() / s)), max(0, round(rect.top() / s))
    right, bottom = min(width, round((rect.right() + 1) / s)), min(height, round((rect.bottom() + 1) / s))
    return (left, top, right, bottom)
