"""Photos built in the tests from scikit-image's astronaut: real faces, no files, no network."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# Where dlib finds the astronaut's face (left, top, right, bottom), with a margin around it.
ASTRONAUT_FACE = (150, 50, 290, 195)
CLASSES = ("Eileen", "Twin")


@cache
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def face_crop(twin: bool = False) -> Image.Image:
    """A crop of the astronaut's face with a margin, or of her twin's."""
    crop = astronaut().crop(ASTRONAUT_FACE)
    return make_twin(crop) if twin else crop


def stranger() -> Image.Image:
    """Someone who is neither test person: Grace Hopper's portrait, shipped with matplotlib.

    dlib's encoder puts her about 0.6 from the astronaut and her twin, beyond the 0.4 the test
    model's gallery draws its line at.
    """
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def varied_stranger(rng: np.random.Generator) -> Image.Image:
    """Another photo of the stranger: turned and scaled. dlib puts her 0.69 from the astronaut, 0.62 from the twin."""
    im = stranger().rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    scale = float(rng.uniform(0.7, 1.2))
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)


def make_twin(im: Image.Image) -> Image.Image:
    """The second "person" of the tests: a narrower face in other colours (RGB to BRG).

    dlib's encoder puts her about 0.38 from the astronaut: a different face, though a near one.
    """
    r, g, b = im.resize((round(im.width * 0.75), im.height), Image.Resampling.LANCZOS).split()
    return Image.merge("RGB", (b, r, g))


def scene(n_faces: int, width: int = 1280, height: int = 853, twins: tuple[bool, ...] = ()) -> Image.Image:
    """A whole photo: a plain background with `n_faces` astronaut faces pasted left to right."""
    canvas = Image.new("RGB", (width, height), (196, 204, 188))
    slot = width // max(n_faces, 1)
    for i in range(n_faces):
        face = face_crop(twins[i] if i < len(twins) else False)
        size = min(slot - 40, 300)
        face = face.resize((size, round(size * face.height / face.width)), Image.Resampling.LANCZOS)
        canvas.paste(face, (i * slot + (slot - face.width) // 2, (height - face.height) // 2))
    return canvas


def encode(im: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    return encode(im, "JPEG", quality=quality)


def noise_image(width: int = 400, height: int = 300, seed: int = 0) -> Image.Image:
    """A photo with no face in it."""
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (height // 20, width // 20, 3), dtype=np.uint8)
    return Image.fromarray(smooth).resize((width, height), Image.Resampling.BICUBIC)


def varied_photo(rng: np.random.Generator, twin: bool = False) -> Image.Image:
    """Another "photo" of the astronaut (or her twin): turned, scaled, brightened, re-framed."""
    im = astronaut().rotate(float(rng.uniform(-12, 12)), center=(220, 120), resample=Image.Resampling.BILINEAR)
    side = round(512 * rng.uniform(0.7, 1.3))
    im = im.resize((side, side), Image.Resampling.BILINEAR)
    gain = float(rng.uniform(0.8, 1.2))
    im = Image.eval(im, lambda v: min(255, round(v * gain)))
    return make_twin(im) if twin else im


def photo_folder(root: Path, per_class: int, seed: int) -> Path:
    """`root/CLASS/*.jpg` of varied whole photos of each class, as `python -m training --from-folder` reads."""
    rng = np.random.default_rng(seed)
    for name, twin in zip(CLASSES, (False, True), strict=True):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").write_bytes(jpeg(varied_photo(rng, twin)))
    return root
