"""What the benchmark measures with: generated photos, our face learner, and the fastai book's ResNet18 learner.

Everything is made from scikit-image's astronaut, so the benchmark needs no files and no network.
Both learners are trained briefly and exported: their accuracy does not matter here, what serving
them costs does.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fastai's import trips torch.jit deprecations
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import RandomSplitter, get_image_files, parent_label
    from fastai.learner import Learner, load_learner
    from fastai.vision.augment import Resize, aug_transforms
    from fastai.vision.core import PILImage
    from fastai.vision.data import ImageBlock

from model.decode import decode_image
from model.faces import FaceFinder
from model.learner import export_learner
from training.strangers import fit_gallery
from training.train import TrainOptions, chip_dataloaders, make_learner, seeded, train

__all__ = [
    "CLASSES",
    "PILImage",
    "book_answer",
    "book_learner",
    "book_predict",
    "face_chip",
    "face_learner_file",
    "load_quietly",
    "photo",
    "write_photos",
]

ASTRONAUT_FACE = (150, 50, 290, 195)  # where dlib finds the astronaut's face, with a margin
CLASSES = ("Eileen", "Twin")
BACKGROUND = (196, 204, 188)


@cache
def _astronaut_face() -> Image.Image:
    return Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE)


def _twin(im: Image.Image) -> Image.Image:
    """The second "person": a narrower face in other colours (RGB to BRG), as the tests make her."""
    r, g, b = im.resize((round(im.width * 0.75), im.height), Image.Resampling.LANCZOS).split()
    return Image.merge("RGB", (b, r, g))


def photo(
    n_faces: int = 1,
    rng: np.random.Generator | None = None,
    twin: bool = False,
    width: int = 1280,
    height: int = 853,
) -> bytes:
    """A 1280x853 JPEG with `n_faces` faces, as Telegram sends photos; `rng` varies it slightly.

    Varied photos differ in face size, position, brightness and JPEG quality, so no cache (ours,
    libjpeg's or the allocator's) can answer a repeat.
    """
    face = _twin(_astronaut_face()) if twin else _astronaut_face()
    slot = width // n_faces
    size, dx, dy, gain, quality = min(slot - 40, 300), 0, 0, 1.0, 90
    if rng is not None:
        size = round(size * rng.uniform(0.85, 1.0))
        dx, dy = (int(v) for v in rng.integers(-30, 31, 2))
        gain, quality = float(rng.uniform(0.9, 1.1)), int(rng.integers(85, 95))
    face = face.resize((size, round(size * face.height / face.width)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    for i in range(n_faces):
        canvas.paste(face, (i * slot + (slot - face.width) // 2 + dx, (height - face.height) // 2 + dy))
    if gain != 1.0:
        canvas = Image.eval(canvas, lambda v: min(255, round(v * gain)))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_photos(folder: Path, per_class: int, seed: int = 0) -> Path:
    """`folder/CLASS/NNN.jpg`: varied one-face photos of each class, as a training run reads them."""
    rng = np.random.default_rng(seed)
    for cls, twin in zip(CLASSES, (False, True), strict=True):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / cls / f"{i:03d}.jpg").write_bytes(photo(1, rng, twin))
    return folder


def face_chip(finder: FaceFinder, jpeg: bytes) -> np.ndarray:
    """The aligned 150x150 chip of the largest face in a photo."""
    faces = finder.find(decode_image(jpeg)).faces
    if not faces:
        raise RuntimeError("the face finder found no face in a generated photo")
    return max(faces, key=lambda f: f.box[2] - f.box[0]).chip


def face_learner_file(folder: Path, finder: FaceFinder, per_class: int, epochs: int = 1) -> Path:
    """Our recipe (`python -m training`'s DataBlock and learner) on generated chips, exported."""
    photos = write_photos(folder / "photos", per_class)
    chips = folder / "chips"
    for path in sorted(photos.glob("*/*.jpg")):
        (chips / path.parent.name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(face_chip(finder, path.read_bytes())).save(chips / path.parent.name / f"{path.stem}.png")
    options = TrainOptions(epochs=epochs)
    seeded(options)
    learn = make_learner(chip_dataloaders(chips, options), options)
    with learn.no_bar(), learn.no_logging():
        train(learn, options)
    fit_gallery(learn)  # as the training script does: serving then measures strangers too
    return export_learner(learn, folder / "face.pkl")


def book_learner(folder: Path, per_class: int, epochs: int = 1) -> Path:
    """The fastai book's chapter-2 recipe on whole photos: Resize(192, squish), ResNet18, exported.

    Without ImageNet weights (they cannot be downloaded here): from scratch, which costs the same
    to serve.
    """
    photos = write_photos(folder / "book_photos", per_class, seed=1)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        splitter=RandomSplitter(valid_pct=0.2, seed=42),
        get_y=parent_label,
        item_tfms=Resize(192, method="squish"),
        batch_tfms=aug_transforms(),
    )
    options = TrainOptions(arch="resnet18", pretrained=False, epochs=epochs)
    seeded(options)
    learn = make_learner(block.dataloaders(photos, bs=4, num_workers=0), options)
    with learn.no_bar(), learn.no_logging():
        train(learn, options)
    return export_learner(learn, folder / "book.pkl")


def load_quietly(path: Path) -> Learner:
    """`load_learner`, without its warning that pickles can run code (these are the benchmark's own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_learner(path)


def book_predict(learn: Learner, item) -> tuple:
    """`learn.predict(item)` as the book's bot calls it; the progress bar it prints goes to a buffer.

    Redirecting stdout, rather than `learn.no_bar()`, keeps the bar's cost in: the book's bot pays
    for it too.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return learn.predict(item)


def book_answer(learn: Learner, jpeg: bytes) -> tuple:
    """The book's serving path for a photo's bytes: a PILImage of the whole photo, then `predict`."""
    return book_predict(learn, PILImage.create(jpeg))
