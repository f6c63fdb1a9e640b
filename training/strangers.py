"""Fit the gallery that tells the model's people from strangers, after training, from the kept faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastai.data.transforms import parent_label
from fastai.learner import Learner
from PIL import Image

from model.serving import FaceClassifier
from model.strangers import DEFAULT_QUANTILE, MAX_THUMBNAILS_PER_CLASS, Gallery, leave_one_out, shown_rows, thumbnail

from .evaluate import REVIEW_PREFIX

__all__ = ["fit_gallery"]

_BATCH = 64


def _chips(paths: list[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def fit_gallery(
    learn: Learner,
    quantile: float = DEFAULT_QUANTILE,
    with_valid: bool = True,
    max_thumbnails: int = MAX_THUMBNAILS_PER_CLASS,
) -> Gallery | None:
    """Attach to a trained face learner the gallery of all its kept faces (train and valid); None for others.

    The rates the threshold gives are measured on the validation faces too: the share named right
    by the head and known by the gallery (each against the other faces, leave-one-out).
    `with_valid=False` leaves the validation faces out (benchmarks hold them out as test faces).
    Each face keeps a thumbnail to show as evidence (at most `max_thumbnails` a class), except the faces
    of users' reviewed feedback (`review-<id>.jpg`): a user's face is never shown to anyone else.
    """
    # The gallery's reference descriptors are fp32's, whatever format the encoder serves in later
    # (model/precision.py: each format is measured against them).
    classifier = FaceClassifier(learn, precision="fp32")
    if not classifier.has_encoder:
        return None
    train_items = list(learn.dls.train_ds.items)
    valid_items = list(learn.dls.valid_ds.items) if with_valid else []
    paths = [Path(p) for p in train_items + valid_items]
    labels = np.array([parent_label(p) for p in paths])
    # Chosen before reading, so that faces past the bound are never encoded as thumbnails at all.
    shown = shown_rows(labels, [not p.name.startswith(REVIEW_PREFIX) for p in paths], max_thumbnails)
    descriptors, probs, thumbnails = [], [], []
    for start in range(0, len(paths), _BATCH):
        chips = _chips(paths[start : start + _BATCH])
        batch_probs, batch_descriptors = classifier.describe(chips)
        probs.append(batch_probs)
        descriptors.append(batch_descriptors)
        thumbnails += [thumbnail(chip) if keep else None for chip, keep in zip(chips, shown[start:], strict=False)]
    desc = np.concatenate(descriptors)
    gallery = Gallery.fit(
        desc, labels, classifier.classes, quantile=quantile, thumbnails=thumbnails, max_thumbnails=max_thumbnails
    )
    valid = np.arange(len(train_items), len(paths))
    if len(valid):
        own = leave_one_out(desc, labels, gallery.k)[valid]
        named = np.array(classifier.classes)[np.concatenate(probs).argmax(1)][valid] == labels[valid]
        known = np.isnan(own) | (own <= gallery.threshold)  # alone in its class: nothing to measure
        gallery.rates["valid_known_right"] = float((named & known).mean())
    learn.gallery = gallery
    return gallery
