"""Accuracy of the training recipes on real look-alike pairs, by stratified k-fold cross-validation.

    python bench/accuracy.py [--folds 5] [--book-folds 3] [--pairs Selena_Gomez,Barbara_Palvin ...]

Uses `../shared/datasets/pins` (exits cleanly, saying so, when it is absent). For each pair, the
photos go through the training script's cleaning (one clear face, near-duplicates out), then every
recipe is trained and validated on the same folds and one table is printed:

- face, frozen encoder: dlib's encoder as the body, the fastai head trained (`python -m training`)
- face, fine-tuned encoder: the same, then a few epochs with the encoder trainable too
- book, ResNet18 from scratch: the fastai book's chapter-2 recipe on the whole photos, without
  ImageNet weights (they cannot be downloaded here), so it shows the recipe, not its best case
- reference: dlib's descriptors with a plain logistic regression (no fastai)

A second table, open set, uses the default recipe's learners of the same folds, each given the
gallery the training script would give it (from the fold's training faces only): the share of the
held-out faces named right AND known, and the share of stranger faces (`Megan_Fox`,
`Alexandra_Daddario`, and the other pair) answered "someone else".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore")

from fastai.data.block import CategoryBlock, DataBlock  # noqa: E402
from fastai.data.transforms import FuncSplitter, parent_label  # noqa: E402
from fastai.vision.all import ImageBlock, Resize, accuracy, aug_transforms, resnet18, vision_learner  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from model.encoder import load_face_encoder  # noqa: E402
from model.faces import FaceFinder  # noqa: E402
from model.serving import FaceClassifier  # noqa: E402
from training.clean import CleanOptions, descriptors, near_duplicates, subject_chip  # noqa: E402
from training.strangers import fit_gallery  # noqa: E402
from training.train import TrainOptions, chip_dataloaders, make_learner, seeded, train  # noqa: E402

PINS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "pins"
PAIRS = (("Selena_Gomez", "Barbara_Palvin"), ("Chris_Evans", "Chris_Hemsworth"))
STRANGERS = ("Megan_Fox", "Alexandra_Daddario")
DEFAULT_RECIPE = "face, frozen encoder (default)"
THRESHOLD = "the 'someone else' distance training chose"


def prepare(
    pair: tuple[str, str], root: Path, finder: FaceFinder, encoder
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Clean the pair's photos as training does; chips to `root/chips`; returns photos, chips, descriptors."""
    options = CleanOptions()
    kept: list[tuple[str, Path, np.ndarray]] = []
    for name in pair:
        for path in sorted((PINS / name).glob("*.jpg")):
            chip = subject_chip(path, finder, options)
            if not isinstance(chip, str):
                kept.append((name, path, chip))
    desc = descriptors(encoder, [chip for _, _, chip in kept])
    drop = near_duplicates(desc, [name for name, _, _ in kept], options.duplicate_distance)
    photos, chips, rows = [], [], []
    for i, (name, path, chip) in enumerate(kept):
        if i in drop:
            continue
        (root / "chips" / name).mkdir(parents=True, exist_ok=True)
        chip_path = root / "chips" / name / f"{path.stem}.png"
        Image.fromarray(chip).save(chip_path)
        photos.append(path)
        chips.append(chip_path)
        rows.append(i)
    return photos, chips, desc[rows]


def _valid(paths: list[Path], valid_idx: np.ndarray) -> FuncSplitter:
    stems = {paths[i].stem for i in valid_idx}
    return FuncSplitter(lambda p: Path(p).stem in stems)


def face_recipe(chips: list[Path], valid_idx: np.ndarray, options: TrainOptions):
    """The validation accuracy, and the trained learner."""
    seeded(options)
    dls = chip_dataloaders(chips[0].parent.parent, options, splitter=_valid(chips, valid_idx))
    learn = make_learner(dls, options)
    with learn.no_bar(), learn.no_logging():
        train(learn, options)
        return float(learn.validate()[1]), learn


def stranger_chips(names: tuple[str, ...], finder: FaceFinder) -> list[np.ndarray]:
    """One chip per photo of people outside every pair, cleaned as the training script cleans."""
    chips = []
    for name in names:
        for path in sorted((PINS / name).glob("*.jpg")):
            chip = subject_chip(path, finder, CleanOptions())
            if not isinstance(chip, str):
                chips.append(chip)
    return chips


def _load(paths: list[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def open_set(
    learn, held_out: list[Path], strangers: dict[str, list[np.ndarray]], precision: str = "fp32"
) -> dict[str, float]:
    """Held-out faces named right and known; each stranger group's share answered "someone else"; the encoder in
    `precision` (the gallery is training's, fp32, whatever the serving format)."""
    if learn.__dict__.get("gallery") is None:
        fit_gallery(learn, with_valid=False)
    classifier = FaceClassifier(learn, precision=precision)
    probs, distances, _ = classifier.identify(_load(held_out))
    named = np.array(classifier.classes)[probs.argmax(1)] == np.array([p.parent.name for p in held_out])
    result = {
        "held-out faces named right and known": float((named & (distances <= classifier.stranger_distance)).mean())
    }
    for group, chips in strangers.items():
        _, far, _ = classifier.identify(chips)
        result[f"{group} answered someone else"] = float((far > classifier.stranger_distance).mean())
    result[THRESHOLD] = classifier.stranger_distance
    return result


def precision_shift(learn, chips: list[np.ndarray], other: str) -> dict[str, float]:
    """How far the encoder in `other` moves each face from fp32: the median relative descriptor change, and the
    share of faces whose decision (the class, or "someone else") flips."""
    fp32, moved = FaceClassifier(learn, precision="fp32"), FaceClassifier(learn, precision=other)
    (p32, d32, desc32), (p16, d16, desc16) = (_decisions(c, chips) for c in (fp32, moved))
    change = np.linalg.norm(desc32 - desc16, axis=1) / np.linalg.norm(desc32, axis=1)
    known32, known16 = d32 <= fp32.stranger_distance, d16 <= moved.stranger_distance
    flipped = (p32 != p16) | (known32 != known16)
    return {
        f"median descriptor change, {other} against fp32 (share of its length)": float(np.median(change)),
        f"decisions flipped by {other} (class or someone else), of held-out and stranger faces": float(flipped.mean()),
    }


def _decisions(classifier: FaceClassifier, chips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs, desc = classifier.describe(chips)
    distances = classifier.gallery.distances(desc, [classifier.classes[i] for i in probs.argmax(1)])
    return probs.argmax(1), distances, desc


def book_recipe(photos: list[Path], valid_idx: np.ndarray, epochs: int = 12) -> float:
    """Chapter 2: whole photos, Resize(192, squish), aug_transforms, ResNet18 (from scratch here)."""
    seeded(TrainOptions())
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=lambda _: photos,
        splitter=_valid(photos, valid_idx),
        get_y=parent_label,
        item_tfms=Resize(192, method="squish"),
        batch_tfms=aug_transforms(),
    )
    dls = block.dataloaders(PINS, bs=32, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 2e-3)
        return float(learn.validate()[1])


def reference(desc: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray) -> float:
    model = LogisticRegression(max_iter=5000).fit(desc[train_idx], labels[train_idx])
    return float(model.score(desc[valid_idx], labels[valid_idx]))


def cell(scores: list[float], share: bool = True) -> str:
    if not scores:
        return "-"
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    if not share:
        return f"{statistics.mean(scores):.3f} ± {spread:.3f} (n={len(scores)})"
    return f"{statistics.mean(scores):.1%} ± {spread:.1%} (n={len(scores)})"


def _table(title: str, rows: dict[str, dict[str, list[float]]]) -> None:
    columns = list(next(iter(rows.values())))
    print(f"\n{title}\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, by_pair in rows.items():
        share = not name.startswith(THRESHOLD)
        print(f"| {name} | " + " | ".join(cell(by_pair.get(c, []), share) for c in columns) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--book-folds", type=int, default=3, help="folds for the slow ResNet18 recipe (0: skip)")
    parser.add_argument("--pairs", nargs="*", help="NAME,NAME pairs (default: both pairs in pins)")
    parser.add_argument("--open-set-only", action="store_true", help="only the default recipe and the open-set table")
    parser.add_argument(
        "--precisions",
        default="fp32",
        help="the encoder's number formats to answer the open set in, comma-separated (fp32,bf16,int8: each on the "
        "same learners, with how far each of the others moves descriptors and decisions from fp32)",
    )
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    pairs = [tuple(p.split(",")) for p in args.pairs] if args.pairs else list(PAIRS)
    if not all((PINS / name).is_dir() for pair in pairs for name in (*pair, *STRANGERS)):
        print(f"skipped: the pins photos are not under {PINS}")
        return 0
    finder, encoder = FaceFinder(), load_face_encoder().eval()
    recipes = {DEFAULT_RECIPE: TrainOptions()}
    if not args.open_set_only:
        recipes["face, fine-tuned encoder"] = TrainOptions(unfrozen_epochs=3)
    book = "book, ResNet18 from scratch (no ImageNet weights here)"
    ref = "reference: dlib descriptors + logistic regression"
    rows: dict[str, dict[str, list[float]]] = {}
    open_rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {pair: prepare(pair, Path(tmp) / "_".join(pair), finder, encoder) for pair in pairs}
        women = stranger_chips(STRANGERS, finder)
        for pair, (photos, chips, desc) in prepared.items():
            start = time.perf_counter()
            strangers = {" + ".join(STRANGERS): women}
            others = [c for other, (_, other_chips, _) in prepared.items() if other != pair for c in other_chips]
            if others:
                strangers["the other pair"] = _load(others)
            labels = np.array([p.parent.name for p in chips])
            folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(desc, labels))
            scores: dict[str, list[float]] = {name: [] for name in recipes}
            if not args.open_set_only:
                scores[book], scores[ref] = [], []
            measured: dict[str, list[float]] = {}
            for k, (train_idx, valid_idx) in enumerate(folds):
                for name, options in recipes.items():
                    accuracy, learn = face_recipe(chips, valid_idx, options)
                    scores[name].append(accuracy)
                    if name == DEFAULT_RECIPE:
                        held_out = [chips[i] for i in valid_idx]
                        for precision in precisions:
                            tag = f" [{precision}]" if len(precisions) > 1 else ""
                            for what, value in open_set(learn, held_out, strangers, precision).items():
                                measured.setdefault(what + tag, []).append(value)
                        faces = _load(held_out) + [c for group in strangers.values() for c in group]
                        for other in (p for p in precisions if p != "fp32"):
                            for what, value in precision_shift(learn, faces, other).items():
                                measured.setdefault(what, []).append(value)
                if not args.open_set_only:
                    if k < args.book_folds:
                        scores[book].append(book_recipe(photos, valid_idx))
                    scores[ref].append(reference(desc, labels, train_idx, valid_idx))
                print(f"{' vs '.join(pair)}: fold {k + 1}/{len(folds)} done", file=sys.stderr)
            label = f"{' vs '.join(pair)} ({len(chips)} faces, {time.perf_counter() - start:.0f} s)"
            for name, values in scores.items():
                rows.setdefault(name, {})[label] = values
            for what, values in measured.items():
                open_rows.setdefault(what, {})[" vs ".join(pair)] = values
    _table(f"mean validation accuracy ± stdev over stratified {args.folds}-fold cross-validation", rows)
    _table(
        "open set, the default recipe on the same folds: held-out faces named right and known, and "
        "faces of other people answered 'someone else'",
        open_rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
