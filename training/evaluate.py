"""Validation metrics and the two plots people look at: confusion matrix and top losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training runs on servers without a screen

import matplotlib.pyplot as plt
import numpy as np
from fastai.data.transforms import parent_label
from fastai.interpret import ClassificationInterpretation
from fastai.learner import Learner
from PIL import Image

from model.serving import FaceClassifier

__all__ = ["REVIEW_PREFIX", "Evaluation", "ValidationFaces", "evaluate", "named_right"]

# Chips of faces the bot's owner approved are written as `CLASS/review-<id>.jpg` beside the gathered ones.
REVIEW_PREFIX = "review-"
_BATCH = 64


@dataclass
class Evaluation:
    """Validation-set results of one trained learner."""

    accuracy: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, support
    confusion: list[list[int]]  # rows: true class, columns: predicted, in `classes` order
    classes: list[str]
    n_valid: int
    plots: dict[str, str] = field(default_factory=dict)  # name -> file

    def to_json(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 6),
            "per_class": self.per_class,
            "confusion": self.confusion,
            "n_valid": self.n_valid,
        }

    def summary(self) -> str:
        lines = [f"validation accuracy {self.accuracy:.1%} on {self.n_valid} faces"]
        for name, m in self.per_class.items():
            lines.append(f"  {name}: precision {m['precision']:.1%}, recall {m['recall']:.1%} ({m['support']} faces)")
        return "\n".join(lines)


def _per_class(confusion: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    result = {}
    for i, name in enumerate(classes):
        predicted, actual = confusion[:, i].sum(), confusion[i].sum()
        result[name] = {
            "precision": round(float(confusion[i, i] / predicted), 6) if predicted else 0.0,
            "recall": round(float(confusion[i, i] / actual), 6) if actual else 0.0,
            "support": int(actual),
        }
    return result


def evaluate(learn: Learner, plots_dir: Path, top_losses: int = 9) -> Evaluation:
    """Accuracy and per-class precision/recall on the validation set; plots written to `plots_dir`."""
    interp = ClassificationInterpretation.from_learner(learn)
    classes = [str(c) for c in learn.dls.vocab]
    confusion = interp.confusion_matrix()
    evaluation = Evaluation(
        accuracy=float(np.trace(confusion) / confusion.sum()),
        per_class=_per_class(confusion, classes),
        confusion=confusion.tolist(),
        classes=classes,
        n_valid=int(confusion.sum()),
    )
    plots_dir.mkdir(parents=True, exist_ok=True)
    interp.plot_confusion_matrix(figsize=(5, 5))
    path = plots_dir / "confusion_matrix.png"
    plt.gcf().savefig(path, bbox_inches="tight", dpi=100)
    evaluation.plots["confusion matrix"] = str(path)
    plt.close("all")
    k = min(top_losses, evaluation.n_valid)
    interp.plot_top_losses(k, nrows=3, figsize=(5 * 3, 5.5 * -(-k // 3)))  # room for long class names
    path = plots_dir / "top_losses.png"
    plt.gcf().savefig(path, bbox_inches="tight", dpi=100)
    evaluation.plots["top losses"] = str(path)
    plt.close("all")
    return evaluation


@dataclass(frozen=True)
class ValidationFaces:
    """A run's validation chips and their classes: what the new model and the old one are both scored on."""

    chips: list[np.ndarray]
    labels: np.ndarray  # the class of each chip
    reviewed: np.ndarray  # bool: the chip is a face from review

    @classmethod
    def of(cls, learn: Learner) -> ValidationFaces:
        """The validation faces of a trained learner's split."""
        paths = [Path(p) for p in learn.dls.valid_ds.items]
        return cls(
            chips=[np.asarray(Image.open(p).convert("RGB")) for p in paths],
            labels=np.array([parent_label(p) for p in paths], dtype=object),
            reviewed=np.array([p.name.startswith(REVIEW_PREFIX) for p in paths], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.chips)


def named_right(classifier: FaceClassifier, faces: ValidationFaces) -> np.ndarray:
    """Whether `classifier`'s most probable class is each face's own: the count both models are gated on."""
    classes = np.array(classifier.classes, dtype=object)
    named = [
        classes[classifier.probabilities(faces.chips[start : start + _BATCH])[0].argmax(1)]
        for start in range(0, len(faces), _BATCH)
    ]
    return np.concatenate(named) == faces.labels if named else np.zeros(0, dtype=bool)
