"""Learning from users, on real look-alike pairs: the model before and after retraining on reviewed corrections.

    python bench/feedback.py [--pairs Selena_Gomez,Barbara_Palvin ...] [--epochs 20]

Uses `../shared/datasets/pins` (exits cleanly, saying so, when it is absent). For each pair, the photos
are cleaned as `bench/accuracy.py` cleans them (one clear face, near-duplicates out), and each person's
faces are dealt at random (seeded) into three thirds:

1. the first third is the training photos: `python -m training --from-folder` (the real command, in
   this process) makes the model, with an empty feedback store;
2. that model answers the second third as the bot would (most probable class, "not sure" under the
   confidence threshold, "someone else" beyond the gallery's distance); every answer that is wrong,
   not sure or someone else is corrected by a "user" (one vote with the face's true name, recorded in a
   temporary `FeedbackStore` with the face's chip, as a press keeps it), and the owner approves what one
   user said and nobody disputes (`approve_agreed(1)`);
3. `python -m training` runs again on the same photos, now with the approved faces, to the same model
   file: its gate decides whether the retrained model replaces the first one;
4. both models answer the last third: test accuracy (most probable class right), the share named right
   AND known (what the bot answers without "not sure"'s help), and the stranger photos (`Megan_Fox`,
   `Alexandra_Daddario`) answered "someone else".

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore")
if not __package__:
    # Run as `python bench/feedback.py`, this file's folder comes first on sys.path, where this very file
    # would be imported as the `feedback` package: the repository's root takes its place.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.accuracy import PAIRS, PINS, STRANGERS, prepare, stranger_chips  # noqa: E402
from feedback.store import FaceSample, FeedbackStore, ModelSaid, Vote  # noqa: E402
from model.answers import is_known  # noqa: E402
from model.encoder import load_face_encoder  # noqa: E402
from model.faces import FaceFinder  # noqa: E402
from model.resources import read_metadata  # noqa: E402
from model.serving import FaceClassifier  # noqa: E402
from training.cli import main as training_main  # noqa: E402
from training.train import TrainOptions  # noqa: E402

KEY = "bench-feedback-key-0123456789abcdef"


@dataclass
class Answers:
    """What a model answered for faces: the label, whether sure, whether known, and the descriptors."""

    labels: np.ndarray
    confidence: np.ndarray
    sure: np.ndarray
    known: np.ndarray
    distances: np.ndarray | None
    descriptors: np.ndarray


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def answer(classifier: FaceClassifier, chips: list[np.ndarray]) -> Answers:
    """The bot's answer for each chip, from the served model (its threshold and its stranger distance)."""
    probs, descriptors = classifier.describe(chips)
    labels = np.array(classifier.classes)[probs.argmax(1)]
    distances = None if classifier.gallery is None else classifier.gallery.distances(descriptors, labels)
    known = np.ones(len(chips), dtype=bool)
    if distances is not None:
        # As the bot: a class without reference faces has nothing to measure against (known).
        known = np.array(
            [is_known(float(d) if np.isfinite(d) else None, classifier.stranger_distance) for d in distances]
        )
    confidence = probs.max(1)
    return Answers(labels, confidence, confidence >= classifier.threshold, known, distances, descriptors)


def thirds(chips: list[Path], seed: int = 0) -> tuple[list[Path], list[Path], list[Path]]:
    """Each person's faces dealt at random into three thirds: training, feedback, test."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[Path], list[Path], list[Path]] = ([], [], [])
    for name in sorted({p.parent.name for p in chips}):
        own = [p for p in chips if p.parent.name == name]
        order = rng.permutation(len(own))
        for k, part in enumerate(np.array_split(order, 3)):
            parts[k].extend(own[i] for i in part)
    return parts


def train(photos: Path, work: Path, out: Path, epochs: int) -> str:
    """`python -m training --from-folder` in this process; its summary's `Model:` line, the rest to stderr."""
    printed = io.StringIO()
    args = ["--from-folder", str(photos), "--work", str(work), "--out", str(out), "--epochs", str(epochs)]
    with contextlib.redirect_stdout(printed):
        code = training_main(args)
    summary = printed.getvalue()
    tail = summary[summary.rfind("\nCleaned:") :] if "\nCleaned:" in summary else summary[-3000:]
    log(tail.strip())
    if code:
        raise RuntimeError(f"python -m training failed ({code})")
    return next(line for line in summary.splitlines() if line.startswith("Model: "))


def jpeg(chip: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(chip).save(out, "JPEG", quality=90)
    return out.getvalue()


def correct(store: FeedbackStore, said: Answers, chips: list[np.ndarray], truth: np.ndarray, model: str | None) -> int:
    """Users press the right name under every wrong, unsure or "someone else" answer; how many they corrected."""
    wrong = (said.labels != truth) | ~said.sure | ~said.known
    for i in np.flatnonzero(wrong):
        distance = None if said.distances is None else float(said.distances[i])
        sample = FaceSample(
            jpeg(chips[i]),
            said.descriptors[i].astype(np.float32).tobytes(),
            ModelSaid(str(said.labels[i]), float(said.confidence[i]), distance, bool(said.known[i]), model),
        )
        store.record(Vote(f"bench:{i}", str(truth[i]), "web", "page", f"user-{i}"), sample)
    return int(wrong.sum())


def scores(classifier: FaceClassifier, chips: list[np.ndarray], truth: np.ndarray, strangers: list[np.ndarray]):
    """Test accuracy, named right and known, strangers answered someone else."""
    said = answer(classifier, chips)
    right = said.labels == truth
    away = ~answer(classifier, strangers).known if strangers else np.zeros(0, bool)
    return float(right.mean()), float((right & said.known).mean()), float(away.mean()) if len(away) else None


def load(paths: list[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def run_pair(pair: tuple[str, str], root: Path, finder, encoder, strangers: list[np.ndarray], epochs: int) -> dict:
    """One pair through the whole loop; the table's cells."""
    started = time.perf_counter()
    _, chips, _ = prepare(pair, root, finder, encoder)
    photo_of = {chip: PINS / chip.parent.name / f"{chip.stem}.jpg" for chip in chips}
    first, second, last = thirds(chips)
    photos = root / "photos"
    for chip in first:
        (photos / chip.parent.name).mkdir(parents=True, exist_ok=True)
        (photos / chip.parent.name / f"{chip.stem}.jpg").symlink_to(photo_of[chip])
    url = f"sqlite:///{root / 'feedback.sqlite3'}"
    os.environ.update(FEEDBACK_DB=url, FEEDBACK_KEY=KEY)  # what `python -m training` reads
    store = FeedbackStore(url, KEY.encode())
    out = root / "model" / "export.pkl"
    log(f"{' vs '.join(pair)}: training on the first third ({len(first)} faces)")
    train(photos, root / "work", out, epochs)
    before = FaceClassifier.load(out)
    feedback_chips, test_chips = load(second), load(last)
    feedback_truth = np.array([p.parent.name for p in second])
    test_truth = np.array([p.parent.name for p in last])
    model_date = (read_metadata(out) or {}).get("trained_at")
    corrected = correct(store, answer(before, feedback_chips), feedback_chips, feedback_truth, model_date)
    approved = len(store.approve_agreed(1))
    store.close()
    log(f"{' vs '.join(pair)}: {corrected} answers corrected on the second third, {approved} approved; retraining")
    gate = train(photos, root / "work", out, epochs)
    after = FaceClassifier.load(out)
    b, a = scores(before, test_chips, test_truth, strangers), scores(after, test_chips, test_truth, strangers)
    return {
        "pair": " vs ".join(pair),
        "thirds": f"{len(first)} / {len(second)} / {len(last)}",
        "corrected": f"{corrected} of {len(second)} ({approved} approved)",
        "accuracy": (b[0], a[0]),
        "known": (b[1], a[1]),
        "strangers": (b[2], a[2]),
        "gate": "replaced the first model" if "Wrote " in gate else "kept the first model",
        "seconds": time.perf_counter() - started,
    }


def _change(pair: tuple[float | None, float | None]) -> str:
    before, after = pair
    if before is None or after is None:
        return "-"
    return f"{before:.1%} → {after:.1%} ({(after - before) * 100:+.1f} pts)"


def table(rows: list[dict], n_strangers: int) -> str:
    lines = [
        "| pair | faces: train / feedback / test thirds | answers corrected by users on the feedback third "
        "| test accuracy, before → after | named right and known, before → after "
        f"| {n_strangers} stranger faces answered someone else, before → after | gate | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {r['thirds']} | {r['corrected']} | {_change(r['accuracy'])} | {_change(r['known'])} "
            f"| {_change(r['strangers'])} | {r['gate']} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="*", help="NAME,NAME pairs (default: both pairs in pins)")
    parser.add_argument("--epochs", type=int, default=TrainOptions().epochs, help="training epochs (default 20)")
    args = parser.parse_args()
    pairs = [tuple(p.split(",")) for p in args.pairs] if args.pairs else list(PAIRS)
    if not all((PINS / name).is_dir() for pair in pairs for name in (*pair, *STRANGERS)):
        print(f"skipped: the pins photos are not under {PINS}")
        return 0
    finder, encoder = FaceFinder(), load_face_encoder().eval()
    strangers = stranger_chips(STRANGERS, finder)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            rows.append(run_pair(pair, Path(tmp) / "_".join(pair), finder, encoder, strangers, args.epochs))
    print(
        "\nLearning from users: a model trained on a third of each person's faces; users correct its wrong, "
        "unsure and 'someone else' answers on another third; the owner approves (`approve_agreed(1)`); "
        f"`python -m training` again with the approved faces ({args.epochs} epochs); both models on the last "
        f"third, and on {' + '.join(STRANGERS)} as strangers.\n"
    )
    print(table(rows, len(strangers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
