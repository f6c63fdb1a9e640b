"""`python -m training`: gather photos from the web (or read a folder), clean, train, evaluate, export."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from fastprogress.fastprogress import ConsoleProgressBar

from model.resources import DEFAULT_MODEL_PATH
from model.strangers import DEFAULT_QUANTILE

from .config import load_classes
from .train import ARCHS, TrainOptions

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    d = TrainOptions()
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0].split(": ", 1)[1])
    source = p.add_argument_group("photos")
    source.add_argument("--from-folder", type=Path, metavar="DIR", help="train from DIR/CLASS/*.jpg (no network)")
    source.add_argument("--config", type=Path, help='JSON {"Class": ["query", ...]} (default: the two actresses)')
    source.add_argument("--per-query", type=int, default=50, help="image results per search query (default 50)")
    source.add_argument("--search-url", help="a self-hosted JSON image search instead of ddgs (used by tests)")
    source.add_argument("--work", type=Path, default=Path("data"), help="photos, chips and plots (default data/)")
    source.add_argument(
        "--dedupe-distance", type=float, default=0.2, help="faces nearer than this are one face (default 0.2)"
    )
    source.add_argument(
        "--keep-all-faces",
        action="store_true",
        help="train on every clear face, whoever it shows (default: set aside faces of other people)",
    )
    source.add_argument(
        "--no-feedback",
        action="store_true",
        help="leave out the faces approved from users' feedback (FEEDBACK_DB, `python -m training review`)",
    )
    recipe = p.add_argument_group("recipe")
    recipe.add_argument("--arch", choices=ARCHS, default=d.arch, help="face (default) or resnet18 (the book's)")
    recipe.add_argument("--no-pretrained", action="store_true", help="resnet18 from scratch (offline)")
    recipe.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    recipe.add_argument("--unfrozen-epochs", type=int, default=d.unfrozen_epochs, help="face: encoder epochs")
    recipe.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    recipe.add_argument("--valid-pct", type=float, default=d.valid_pct, help="validation share (default 0.2)")
    recipe.add_argument("--seed", type=int, default=d.seed, help="split and training seed (default 42)")
    recipe.add_argument(
        "--stranger-quantile",
        type=float,
        default=DEFAULT_QUANTILE,
        help=f"share of the kept faces within the 'someone else' distance (default {DEFAULT_QUANTILE})",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH, help="model file (default model/export.pkl)")
    out.add_argument(
        "--force", action="store_true", help="replace a model that names more of this run's validation faces right"
    )
    return p


def _progress(label: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback: fastprogress's console bar in a terminal, as fastai's training draws.

    Written to a file or a pipe (`python -m training > train.log`) every redraw of a bar would stay
    there, carriage returns and all: there it prints one line when the stage is done instead.
    """
    if not sys.stdout.isatty():
        return _stage_line(label)
    bar: _Bar | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if total <= 0:
            return
        if bar is None or bar.total != total:
            bar = _Bar(label, total)
        bar.update(done)

    return update


def _stage_line(label: str) -> Callable[[int, int], None]:
    """`progress(done, total)` that prints `label: 30 of 30 in 12 s` once, when the stage is done."""
    started = time.perf_counter()
    printed = False

    def update(done: int, total: int) -> None:
        nonlocal printed
        if total > 0 and done >= total and not printed:
            printed = True
            print(f"{label}: {done} of {total} in {time.perf_counter() - started:.0f} s", flush=True)

    return update


class _Bar(ConsoleProgressBar):
    """fastprogress's console bar (on stdout, beside fastai's epoch bars), labelled like fastai's epochs."""

    def __init__(self, label: str, total: int) -> None:
        super().__init__(range(total), total=total)
        self.prefix = label
        self.update(0)  # starts fastprogress's clock, for the elapsed and remaining times

    def on_update(self, val: int, text: str) -> None:
        super().on_update(val, text)
        if val >= self.total:
            print(flush=True)  # a finished bar stays; what comes next starts on a line of its own


def _gather(args, photos_dir: Path) -> list[str]:
    from .gather import DdgsSearch, DownloadPolicy, JsonSearch, SearchError, gather_class

    search = JsonSearch(args.search_url) if args.search_url else DdgsSearch()
    # A self-hosted search is a server the user named: the photos it serves may be on a private address
    # (the tests serve both from 127.0.0.1). Every other server, redirects included, must be public.
    policy = DownloadPolicy(trusted=(args.search_url,)) if args.search_url else DownloadPolicy()
    lines = []
    for name, queries in load_classes(args.config).items():
        report = gather_class(
            name,
            queries,
            photos_dir / name,
            search,
            per_query=args.per_query,
            progress=_progress(f"gathering {name}"),
            policy=policy,
        )
        failed = ", ".join(f"{n} {why}" for why, n in report.failed.most_common()) or "none"
        if report.kept() == 0:
            why = report.search_errors[0] if report.search_errors else f"no photo could be downloaded ({failed})"
            raise SearchError(f"No photos of {name}: {why}")
        lines.append(
            f"{name}: {report.kept()} photos ({report.downloaded} new, {report.already_had} from earlier runs, "
            f"{report.duplicates} duplicates; failed: {failed})"
        )
    return lines


def _fingerprint(data: str, options: TrainOptions) -> str:
    """Same kept faces and same split: accuracies are comparable."""
    return hashlib.sha256(f"{data}:{options.valid_pct}:{options.seed}".encode()).hexdigest()[:16]


def run(args) -> int:
    from model.encoder import load_face_encoder
    from model.environment import environment
    from model.faces import FaceFinder
    from model.serving import FaceClassifier

    from .clean import CleanOptions, clean_photos, read_keep_list
    from .evaluate import ValidationFaces, evaluate, named_right
    from .publish import publish
    from .reviewed import add_reviewed, read_approved
    from .sheet import write_set_aside
    from .strangers import fit_gallery
    from .train import chip_dataloaders, epoch_lines, make_learner, seeded, train

    options = TrainOptions(
        arch=args.arch,
        pretrained=not args.no_pretrained,
        valid_pct=args.valid_pct,
        seed=args.seed,
        epochs=args.epochs,
        unfrozen_epochs=args.unfrozen_epochs,
        lr=args.lr,
    )
    started = time.perf_counter()
    summary = []
    if args.from_folder:
        photos_dir = args.from_folder
        if not photos_dir.is_dir():
            print(
                f"No folder {photos_dir}: give a folder with one sub-folder of photos per class.",
                file=sys.stderr,
            )
            return 2
    else:
        photos_dir = args.work / "photos"
        summary += ["Gathered:"] + [f"  {line}" for line in _gather(args, photos_dir)]
    # Read before the long cleaning, so an unreachable database stops the run at once.
    approved = (None, "--no-feedback") if args.no_feedback else read_approved(environment())

    encoder = load_face_encoder().eval()
    keep_list = args.work / "keep.txt"
    clean_options = CleanOptions(duplicate_distance=args.dedupe_distance)
    if args.keep_all_faces:
        clean_options = replace(clean_options, identity=None)
    keep = read_keep_list(keep_list, photos_dir)
    if keep_warning := keep.warning(keep_list):
        # Said now and again in the summary: training goes on (a stale line should not cost the run),
        # but the person must not believe those faces are trained on.
        print(f"Warning: {keep_warning}", file=sys.stderr, flush=True)
    report = clean_photos(
        photos_dir,
        args.work / "chips",
        FaceFinder(),
        encoder,
        clean_options,
        progress=_progress("finding faces"),
        keep=keep.photos,
    )
    summary.append(f"Cleaned: {report.summary()}")
    if keep_warning:
        summary.append(f"Warning: {keep_warning}")
    written = write_set_aside(report.set_aside_faces, args.work / "plots", args.work / "set_aside.txt")
    if written:
        summary.append(
            f"Set aside: {len(report.set_aside_faces)} faces shown in {written[0]} and listed in {written[1]}; "
            f"copy a line into {keep_list} to train on that face after all"
        )
    reviewed = add_reviewed(*approved, args.work / "chips", report.kept)
    summary.append(reviewed.added_line())

    seeded(options)
    dls = chip_dataloaders(args.work / "chips", options)
    learn = make_learner(dls, options)
    # In a terminal, fastai's bars; in a log, one line per epoch (each bar's redraws would stay there).
    with contextlib.nullcontext() if sys.stdout.isatty() else epoch_lines(learn):
        train_start = time.perf_counter()
        train(learn, options)
        train_s = time.perf_counter() - train_start
        evaluation = evaluate(learn, args.work / "plots")
    summary.append(
        f"Trained: {options.arch} learner on {len(dls.train_ds)} faces, validated on {len(dls.valid_ds)}, "
        f"in {train_s:.0f} s"
    )
    summary.append("Evaluated: " + evaluation.summary())
    summary.append("Plots: " + ", ".join(evaluation.plots.values()))
    gallery = fit_gallery(learn, args.stranger_quantile)
    summary.append(
        "Strangers: "
        + (gallery.summary() if gallery else f"not measured by the {options.arch} learner (no face encoder)")
    )
    classifier, valid = FaceClassifier(learn, precision="fp32"), ValidationFaces.of(learn)
    right = named_right(classifier, valid)
    reviewed.measure(classifier, learn.dls.train_ds.items, valid, right)
    summary += reviewed.result_lines()

    metadata = {
        "classes": evaluation.classes,
        "arch": options.arch,
        "pretrained": options.pretrained,
        **evaluation.to_json(),
        "n_train": len(dls.train_ds),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_fingerprint": _fingerprint(reviewed.fingerprint(report.fingerprint), options),
        "recipe": {
            "epochs": options.epochs,
            "unfrozen_epochs": options.unfrozen_epochs,
            "lr": options.lr,
            "seed": options.seed,
            "valid_pct": options.valid_pct,
        },
        "cleaning": report.to_json(),
        "strangers": gallery.to_json() if gallery else None,
        "reviewed": reviewed.to_json(),
        "known_strangers": reviewed.strangers_json(),
    }
    published = publish(learn, args.out, metadata, force=args.force, valid=valid, right=right)
    summary.append(f"Model: {published.message}")
    summary.append(f"Total time: {time.perf_counter() - started:.0f} s")
    print("\n" + "\n".join(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training script; 0 on success (a model written or a better one kept), 2 when it cannot go on."""
    args = _parser().parse_args(argv)
    from .gather import SearchError
    from .train import TrainingError

    try:
        return run(args)
    except (TrainingError, SearchError, ValueError) as e:
        print(f"Training stopped: {e}", file=sys.stderr)
        return 2
