"""Someone else: how far a face lies from the faces the model was trained on, and where "far" begins.

A classifier over two people names one of them for any face. The face encoder gives a real test: a
face of the predicted person lies close to that person's training faces; a stranger's does not.
The distance used is the mean distance to the `k` nearest training faces of the predicted class
(robust to one odd photo, and to a person who looks different across photos, unlike one centroid).
Descriptors are the mean of the chip's and its mirror image's, which steadies them: on the pins
pairs (dlib's descriptors, logistic regression) it turned away 96.8% of two women strangers against
93.3% without, while keeping as many of the pairs' own held-out faces (98.6 and 98.7% known and right).

The threshold is the `quantile` of the training faces' own leave-one-out distances (each face
against the others of its class), so it rests on every kept face rather than on the validation
fifth alone; near-duplicates were dropped by the cleaning, so a face never meets its own copy.

A gallery also keeps a small JPEG of each training face (`thumbnails`), to show a user the faces theirs
was measured against: never of a face from users' reviewed feedback, and a seeded sample past a bound.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_K",
    "DEFAULT_QUANTILE",
    "FALLBACK_DISTANCE",
    "MAX_DISTANCE",
    "MAX_THUMBNAILS_PER_CLASS",
    "MIN_DISTANCE",
    "THUMB_SIDE",
    "Gallery",
    "leave_one_out",
    "shown_rows",
    "thumbnail",
]

DEFAULT_K = 5
DEFAULT_QUANTILE = 0.99
# dlib's own same-person threshold for its descriptors (from its LFW evaluation), for classes too
# small to measure a leave-one-out distance on.
FALLBACK_DISTANCE = 0.6
# Photos all from one shoot sit close together and would put the line so near that the same person
# in any other photo became a stranger; different photos of one person lie 0.3 to 0.5 apart. The
# pins pairs' measured lines (0.50 to 0.53) are well above this floor.
MIN_DISTANCE = 0.4
# A few wrong faces among the kept ones (a logo the detector took for a face, another person) lie
# far from the rest and would drag the line out; past dlib's own different-person line it stops.
MAX_DISTANCE = FALLBACK_DISTANCE
# Each training face is kept as a small JPEG, to show a user the faces theirs was measured against (a "Why?").
# At 80 px one is about 2.5 KB: 400 per class add about 2 MB to an export; beyond, a spread sample is shown.
THUMB_SIDE = 80
MAX_THUMBNAILS_PER_CLASS = 400
_THUMB_QUALITY = 80
_THUMB_SEED = 0


def thumbnail(chip: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """A face chip as the small square JPEG a gallery keeps of it."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(chip, dtype=np.uint8)).convert("RGB")
    buffer = io.BytesIO()
    image.resize((side, side), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=_THUMB_QUALITY)
    return buffer.getvalue()


def shown_rows(
    labels: Sequence[str], showable: Sequence[bool], bound: int = MAX_THUMBNAILS_PER_CLASS, seed: int = _THUMB_SEED
) -> np.ndarray:
    """Which faces keep a thumbnail: every showable one, or past `bound` in a class a seeded sample across it."""
    labels = np.asarray(labels)
    showable = np.asarray(showable, dtype=bool)
    keep = showable.copy()
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        rows = np.flatnonzero((labels == c) & showable)
        if len(rows) > bound:
            keep[rows] = False
            keep[rng.choice(rows, size=bound, replace=False)] = True
    return keep


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _mean_nearest(distances: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, distances.shape[1]))
    return np.sort(distances, axis=1)[:, :k].mean(1)


def leave_one_out(descriptors: np.ndarray, labels: Sequence[str], k: int = DEFAULT_K) -> np.ndarray:
    """Each face's distance to the others of its class, as `Gallery.distances` measures; NaN when alone."""
    descriptors = np.asarray(descriptors, dtype=np.float32)
    labels = np.asarray(labels)
    own = np.full(len(labels), np.nan)
    for c in np.unique(labels):
        rows = labels == c
        if rows.sum() < 2:
            continue
        d = _pairwise(descriptors[rows], descriptors[rows])
        np.fill_diagonal(d, np.inf)
        own[rows] = _mean_nearest(d, min(k, int(rows.sum()) - 1))
    return own


@dataclass
class Gallery:
    """Reference descriptors per class and the distance beyond which a face is someone else."""

    classes: list[str]
    references: dict[str, np.ndarray]  # class -> (n, 128) float32 mirrored descriptors
    threshold: float
    k: int = DEFAULT_K
    quantile: float = DEFAULT_QUANTILE
    rates: dict[str, float] = field(default_factory=dict)  # measured when fitted, for the summary
    # class -> a JPEG per row of `references[class]`, None where none is kept (users' reviewed faces, and past
    # the bound). Galleries pickled before thumbnails lack the attribute: read it with getattr.
    thumbnails: dict[str, list[bytes | None]] = field(default_factory=dict)
    thumbnail_side: int = THUMB_SIDE

    @classmethod
    def fit(
        cls,
        descriptors: np.ndarray,
        labels: Sequence[str],
        classes: Sequence[str],
        k: int = DEFAULT_K,
        quantile: float = DEFAULT_QUANTILE,
        thumbnails: Sequence[bytes | None] | None = None,
        max_thumbnails: int = MAX_THUMBNAILS_PER_CLASS,
    ) -> Gallery:
        """References from every kept face; the threshold from their leave-one-out distances.

        `thumbnails`: a JPEG (or None) per face, aligned with `descriptors`; at most `max_thumbnails` per class kept.
        """
        descriptors = np.asarray(descriptors, dtype=np.float32)
        labels = np.asarray(labels)
        references = {c: descriptors[labels == c] for c in classes}
        thumbs = list(thumbnails) if thumbnails is not None else [None] * len(labels)
        if len(thumbs) != len(labels):
            raise ValueError(f"{len(thumbs)} thumbnails for {len(labels)} faces")
        kept = shown_rows(labels, [t is not None for t in thumbs], max_thumbnails)
        shown = {c: [thumbs[i] if kept[i] else None for i in np.flatnonzero(labels == c)] for c in classes}
        own = leave_one_out(descriptors, labels, k)
        measured = own[~np.isnan(own)]
        line = float(np.quantile(measured, quantile)) if len(measured) else FALLBACK_DISTANCE
        threshold = min(max(line, MIN_DISTANCE), MAX_DISTANCE)
        gallery = cls(list(classes), references, threshold, k, quantile, thumbnails=shown)
        if len(measured):
            gallery.rates["known"] = float((measured <= threshold).mean())
        lookalike = gallery._nearest_other(descriptors, labels)
        if len(lookalike):
            gallery.rates["lookalikes_rejected"] = float((lookalike > threshold).mean())
        return gallery

    def _nearest_other(self, descriptors: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Each face against the closest other class's faces: how far a look-alike stranger lies."""
        by_class = np.stack([self.distances(descriptors, [c] * len(labels)) for c in self.classes])
        by_class[np.array(self.classes)[:, None] == labels[None, :]] = np.inf  # not its own class
        nearest = by_class.min(axis=0) if len(self.classes) > 1 else np.full(len(labels), np.inf)
        return nearest[np.isfinite(nearest)]

    def distances(self, descriptors: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """Each face's mean distance to the `k` nearest reference faces of its (predicted) class."""
        descriptors = np.asarray(descriptors, dtype=np.float32)
        labels = np.asarray(labels)
        out = np.full(len(descriptors), np.inf, dtype=np.float64)
        for c in np.unique(labels):
            refs = self.references.get(str(c))
            if refs is None or not len(refs):
                continue
            rows = labels == c
            out[rows] = _mean_nearest(_pairwise(descriptors[rows], refs), self.k)
        return out

    def reference_distances(self, descriptors: np.ndarray, label: str) -> np.ndarray:
        """Each face's distance to every reference face of `label`, (n, references), in the references' order."""
        refs = self.references.get(label)
        descriptors = np.atleast_2d(np.asarray(descriptors, dtype=np.float32))
        if refs is None or not len(refs):
            return np.zeros((len(descriptors), 0))
        return _pairwise(descriptors, refs)

    def summary(self) -> str:
        """One line for the training summary."""
        parts = [f"someone else beyond distance {self.threshold:.3f} ({self.quantile:.0%} of own faces within)"]
        if "known" in self.rates:
            parts.append(f"own faces known {self.rates['known']:.1%} (leave-one-out)")
        if "valid_known_right" in self.rates:
            parts.append(f"validation faces named right and known {self.rates['valid_known_right']:.1%}")
        if "lookalikes_rejected" in self.rates:
            parts.append(f"the other class's faces turned away {self.rates['lookalikes_rejected']:.1%}")
        return "; ".join(parts)

    def to_json(self) -> dict:
        kept = [t for rows in (getattr(self, "thumbnails", None) or {}).values() for t in rows if t is not None]
        return {
            "stranger_distance": round(self.threshold, 6),
            "k": self.k,
            "quantile": self.quantile,
            "references": {c: len(r) for c, r in self.references.items()},
            "thumbnails": {"count": len(kept), "bytes": sum(map(len, kept)), "side": self.thumbnail_side},
            **{name: round(rate, 4) for name, rate in self.rates.items()},
        }
