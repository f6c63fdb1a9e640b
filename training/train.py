"""Train a fastai learner on face chips: the face learner by default, or the book's ResNet18."""

from __future__ import annotations

import contextlib
import urllib.error
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fastai's import trips torch.jit deprecations
    import fastai.callback.schedule  # noqa: F401 - adds fit_one_cycle and fine_tune to Learner
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import RandomSplitter, get_image_files, parent_label
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from fastai.vision.augment import Resize, aug_transforms
    from fastai.vision.data import ImageBlock
    from fastai.vision.learner import vision_learner
    from torchvision.models import resnet18

from model.encoder import CHIP_SIZE
from model.learner import face_learner

__all__ = [
    "ARCHS",
    "TrainOptions",
    "TrainingError",
    "chip_dataloaders",
    "epoch_lines",
    "make_learner",
    "seeded",
    "train",
]

ARCHS = ("face", "resnet18")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says what to do."""


@dataclass(frozen=True)
class TrainOptions:
    """The recipe: which body, how long, on which split."""

    arch: str = "face"  # "face": dlib's encoder + a fastai head; "resnet18": the fastai book's recipe
    pretrained: bool = True
    valid_pct: float = 0.2
    seed: int = 42
    epochs: int = 20  # with the body frozen (face), or fine_tune's epochs (resnet18); 20 beat 12 on pins
    unfrozen_epochs: int = 0  # face: further epochs with the encoder trainable too
    lr: float = 1e-2
    batch_size: int = 32

    @property
    def image_size(self) -> int:
        return CHIP_SIZE if self.arch == "face" else 224


def chip_dataloaders(chips_dir: Path, options: TrainOptions, splitter=None):
    """A seeded DataBlock split over `chips_dir/CLASS/*.png`, with augmentations that suit faces.

    `splitter` replaces the seeded random split (benchmarks pass their cross-validation folds).

    Flips, small rotations and lighting changes; no zoom or warp, which would crop or bend the
    aligned face the encoder expects.
    """
    files = get_image_files(chips_dir)
    classes = {parent_label(f) for f in files}
    if len(classes) < 2:
        raise TrainingError(f"Training needs faces of at least two classes; found {sorted(classes) or 'none'}.")
    n_valid = int(len(files) * options.valid_pct)
    if n_valid < 2:
        raise TrainingError(f"Only {len(files)} faces were kept: too few to train and validate on.")
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        splitter=splitter or RandomSplitter(valid_pct=options.valid_pct, seed=options.seed),
        get_y=parent_label,
        item_tfms=Resize(options.image_size),
        batch_tfms=aug_transforms(max_rotate=10.0, max_zoom=1.0, max_warp=0.0, max_lighting=0.3),
    )
    # Small data sets get small batches, so an epoch still takes several optimiser steps.
    batch_size = max(4, min(options.batch_size, (len(files) - n_valid) // 8))
    return block.dataloaders(chips_dir, bs=batch_size, num_workers=0)


def _is_download_failure(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, urllib.error.URLError | ConnectionError | TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


def make_learner(dls, options: TrainOptions) -> Learner:
    """The learner for `options.arch`; ImageNet weights for ResNet18 must be downloadable when pretrained."""
    if options.arch == "face":
        return face_learner(dls, pretrained=options.pretrained)
    if options.arch != "resnet18":
        raise TrainingError(f"Unknown arch {options.arch!r}; choose one of {', '.join(ARCHS)}.")
    try:
        return vision_learner(dls, resnet18, pretrained=options.pretrained, metrics=accuracy)
    except Exception as e:
        if options.pretrained and _is_download_failure(e):
            raise TrainingError(
                "Could not download ImageNet weights for resnet18 (is there internet?). "
                "Train it from scratch with --no-pretrained, or use the default face learner."
            ) from e
        raise


def train(learn: Learner, options: TrainOptions) -> None:
    """Fit: the head on the frozen encoder, then optionally the whole network; or the book's fine_tune."""
    if options.arch == "face":
        learn.fit_one_cycle(options.epochs, options.lr)
        if options.unfrozen_epochs:
            learn.unfreeze()
            learn.fit_one_cycle(options.unfrozen_epochs, slice(options.lr / 1000, options.lr / 10))
    elif options.pretrained:
        learn.fine_tune(options.epochs)
    else:
        learn.fit_one_cycle(options.epochs, 1e-3)


@contextlib.contextmanager
def epoch_lines(learn: Learner) -> Iterator[Learner]:
    """fastai's progress bars off, and one line per epoch printed instead: for a log file, not a terminal.

    `epoch 3/20: train_loss 0.412345, valid_loss 0.301234, accuracy 0.950000, time 00:01`. fastai's
    Recorder hands each epoch's row to `learn.logger`, which its progress callback would draw as a
    table beside the bars; the logger is put back after, so nothing of this reaches the exported model.
    """

    def line(row: list) -> None:
        names = learn.recorder.metric_names
        epoch, *values = row
        shown = ", ".join(
            f"{name} {value:.6f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in zip(names[1:], values, strict=False)
        )
        print(f"epoch {epoch + 1}/{learn.n_epoch}: {shown}", flush=True)

    previous = learn.logger
    with learn.no_bar():
        learn.logger = line
        try:
            yield learn
        finally:
            learn.logger = previous


def seeded(options: TrainOptions) -> None:
    """Same data, same options, same model: seed Python, NumPy and torch."""
    set_seed(options.seed, reproducible=True)
