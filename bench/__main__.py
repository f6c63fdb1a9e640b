"""doppelbot against the fastai book's serving path, side by side: latency, burst, cold start, memory.

    python -m bench [--quick] [--model PATH] [--runs N] [--burst N] [--batch N] [--threads N] [--accuracy]

Prints one markdown table, each figure beside the one it is compared with, measured in the same
run (timings alternate between the two sides, so load that drifts falls on both), then one JSON
line. A full run writes the table to `bench/results.md`; `--quick` (fewer latency runs and cold starts,
about a minute on an idle 2-core machine) only prints. The bursts are measured the same way in both: 64
photos, three rounds, so that `--quick` reads the figure the full run writes. Both learners are built in a temporary
folder: ours with `python -m training`'s recipe on generated face chips (or `--model PATH`), and the
book's chapter-2 ResNet18 on generated whole photos, each trained briefly and exported.
`--accuracy` adds `bench/accuracy.py`'s table (tens of minutes; needs ../shared/datasets/pins).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dlib
import fastai
import numpy as np
import torch

from model.decode import decode_image
from model.encoder import load_face_encoder
from model.faces import FaceFinder
from model.precision import PRECISIONS
from model.search import FacePool, default_workers
from model.serving import FaceClassifier

from .bursts import batched_against_single, bot_against_book, encoder_speed
from .cold_start import STEPS_BOOK, STEPS_OURS, breakdown, render_breakdown
from .face_sizes import generated_sizes
from .learners import (
    PILImage,
    book_answer,
    book_learner,
    book_predict,
    face_chip,
    face_learner_file,
    load_quietly,
    photo,
)
from .report import (
    ACCURACY_HEADING,
    RSS_MB_EXPRESSION,
    Figures,
    Series,
    machine_line,
    previous_figures,
    render,
    summary_json,
    targets,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
PINS = ROOT.parent / "shared" / "datasets" / "pins"
RSS_PHOTOS = 10
# The bursts are the same in --quick and in the full run: the quick run's old burst (16 photos, one round) read
# 2.1-2.5x the book's bot where the full run's (64, median of 3) read 3.0-3.2x, so the two runs disagreed.
BURST_PHOTOS = 64
BURST_ROUNDS = 3

# The serving processes measured for cold start and memory: each imports only what its bot would,
# answers one photo (the parent times that), then nine more, and reports its resident memory.
OURS_PROCESS = f"""
import json, sys
from pathlib import Path
from model.serving import FaceClassifier
classifier = FaceClassifier.load(sys.argv[1])
photos = [Path(p).read_bytes() for p in sys.argv[2:]]
assert classifier.classify(photos[0]).faces
print("answered", flush=True)
for data in photos[1:]:
    classifier.classify(data)
print(json.dumps({{"rss_mb": {RSS_MB_EXPRESSION}}}), flush=True)
"""
BOOK_PROCESS = f"""
import contextlib, io, json, sys
from fastai.vision.all import PILImage, load_learner
learn = load_learner(sys.argv[1])
def answer(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return learn.predict(PILImage.create(open(path, "rb").read()))
answer(sys.argv[2])
print("answered", flush=True)
for path in sys.argv[3:]:
    answer(path)
print(json.dumps({{"rss_mb": {RSS_MB_EXPRESSION}}}), flush=True)
"""


def log(message: str) -> None:
    """Progress goes to stderr: stdout holds the table and, last, the JSON line."""
    print(message, file=sys.stderr, flush=True)


def timed_rounds(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, Series]:
    """Time each function once per round, rotating who goes first, so drifting load falls on all alike."""
    for fn in fns.values():
        fn()  # warm-up: first calls build kernels and fill allocator pools
    times: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for r in range(runs):
        for name, fn in items[r % len(items) :] + items[: r % len(items)]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: Series(tuple(values)) for name, values in times.items()}


def stages(classifier: FaceClassifier, runs: int) -> str:
    """Where our one-face latency goes: each stage's median over `runs` answers, in ms."""
    one = photo(1)
    rows = [classifier.classify(one).timings for _ in range(runs)]
    names = [name for name in rows[0] if all(name in r for r in rows)]
    return ", ".join(f"{name} {statistics.median(r[name] for r in rows) * 1000:.1f}" for name in names)


def latencies(classifier: FaceClassifier, book, ours_learn, chip: np.ndarray, runs: int) -> dict[str, Series]:
    """Per-photo and per-chip times, ours and the book's, in alternating rounds."""
    one, four = photo(1), photo(4)
    found = [len(classifier.classify(p).faces) for p in (one, four)]
    if found != [1, 4]:
        raise RuntimeError(f"the face finder found {found} faces in the 1- and 4-face photos")

    def book_no_bar() -> None:
        with book.no_bar():
            book.predict(PILImage.create(one))

    return timed_rounds(
        {
            "ours_1": lambda: classifier.classify(one),
            "book_1": lambda: book_answer(book, one),
            "ours_4": lambda: classifier.classify(four),
            "book_4": lambda: book_answer(book, four),
            "book_1_no_bar": book_no_bar,
            "serving_chip": lambda: classifier.probabilities([chip]),
            "predict_chip": lambda: book_predict(ours_learn, chip),
        },
        runs,
    )


def second_look(frames: int) -> tuple[dict[float, tuple[int, int, int]], Series, Series, Series]:
    """Small faces (the astronaut's, 30 to 80 px wide, four to a 1280x960 photo) found before and after the
    second look: per width (faces, found before, found after); each photo's search before and after; the second
    look alone."""
    sizes = generated_sizes(frames)
    found = {width: (t["after"].faces, t["before"].found, t["after"].found) for width, t in sizes.items()}

    def series(name: str, what: str) -> Series:
        return Series(tuple(v for t in sizes.values() for v in getattr(t[name], what)) or (float("nan"),))

    return found, series("before", "seconds"), series("after", "seconds"), series("after", "second_look")


def second_looks_on_one_face(runs: int) -> int:
    """On how many of `runs` varied one-face photos (those of the latency rows) the second look ran."""
    finder, rng = FaceFinder(), np.random.default_rng(5)
    return sum(bool(finder.find(decode_image(photo(1, rng))).second_look_s) for _ in range(runs))


def child_env(threads: int | None) -> dict[str, str]:
    """The environment of a child process: this checkout importable, the same torch threads."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch sizes its thread pool from it at start
    return env


def serving_process(script: str, model: Path, photos: list[Path], threads: int | None) -> tuple[float, float]:
    """Seconds from starting a serving process to its first answer, and its RSS (MiB) after all photos."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        with subprocess.Popen(
            [sys.executable, "-c", script, str(model), *map(str, photos)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=ROOT,
            env=child_env(threads),
        ) as proc:
            first = proc.stdout.readline()
            cold = time.perf_counter() - start
            rest, _ = proc.communicate(timeout=600)
        if proc.returncode or first.strip() != "answered":
            errors.seek(0)
            raise RuntimeError(f"the serving process failed ({proc.returncode}): {errors.read()[-1500:]}")
    return cold, json.loads(rest.strip().splitlines()[-1])["rss_mb"]


def cold_and_rss(ours: Path, book: Path, folder: Path, threads: int | None, starts: int = 3) -> tuple[tuple, tuple]:
    """(ours, book) seconds to the first answer, and (ours, book) MiB resident after 10 answers.

    Medians of `starts` fresh processes per side, the sides taking turns: one start moves by a tenth of
    a second or more with whatever else the machine does, as much as the two sides differ.
    """
    rng = np.random.default_rng(3)
    photos = []
    for i in range(RSS_PHOTOS):
        photos.append(folder / f"rss_{i}.jpg")
        photos[-1].write_bytes(photo(1, rng))
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "book": []}
    for _ in range(starts):
        runs["ours"].append(serving_process(OURS_PROCESS, ours, photos, threads))
        runs["book"].append(serving_process(BOOK_PROCESS, book, photos, threads))
    cold = tuple(statistics.median(c for c, _ in runs[side]) for side in ("ours", "book"))
    rss = tuple(statistics.median(r for _, r in runs[side]) for side in ("ours", "book"))
    return cold, rss


def accuracy_section() -> tuple[str | None, str]:
    """`bench/accuracy.py`'s table (tens of minutes), or why there is none."""
    if not PINS.is_dir():
        return None, f"Accuracy: skipped, the pins photos are not under {PINS}."
    log("accuracy: running bench/accuracy.py (tens of minutes)")
    started = time.strftime("%Y-%m-%d %H:%M")
    done = subprocess.run(
        [sys.executable, "-m", "bench.accuracy"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env(None)
    )
    if done.returncode:
        return None, f"Accuracy: bench/accuracy.py failed with exit status {done.returncode}."
    table = done.stdout.strip()
    section = f"{ACCURACY_HEADING}\n\nFrom `python -m bench --accuracy` (bench/accuracy.py), run {started}.\n\n{table}"
    return section, section


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer latency runs and cold starts; prints, writes nothing")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="the encoder's number format (ENCODER_PRECISION)"
    )
    p.add_argument("--model", type=Path, help="our exported learner (default: build one from generated chips)")
    p.add_argument("--runs", type=int, help="timed runs per latency figure (default 30; 8 with --quick)")
    p.add_argument("--burst", type=int, help="photos in the burst (default 64)")
    p.add_argument(
        "--batch", type=int, help="photos per classify_many call in the burst (default: the whole burst at once)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, here and in the serving processes (default 1, as the bot)",
    )
    p.add_argument("--accuracy", action="store_true", help="add bench/accuracy.py's table (tens of minutes)")
    args = p.parse_args(argv)
    args.runs = args.runs or (8 if args.quick else 30)
    args.burst = args.burst or BURST_PHOTOS
    args.batch = args.batch or args.burst
    return args


def busy_note() -> list[str]:
    """A warning when other work shares the CPUs: torch's thread pool then waits on the busy cores."""
    load, cores, threads = os.getloadavg()[0], len(os.sched_getaffinity(0)), torch.get_num_threads()
    if threads < 2 or load < 1.0:
        return []
    return [
        f"The machine was busy when this run started (load average {load:.1f} on {cores} cores): with {threads} "
        "torch threads each layer waits for the slowest thread, so torch figures can be many times slower than "
        "on an idle machine; compare a run with `--threads 1`."
    ]


def measure(args: argparse.Namespace, folder: Path) -> Figures:
    """Build both learners in `folder`, then take every figure of the table."""
    notes = busy_note()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    finder = FaceFinder()
    started = time.perf_counter()
    ours_path = args.model or face_learner_file(folder, finder, per_class=8)
    book_path = book_learner(folder, per_class=8)
    log(f"learners built in {time.perf_counter() - started:.0f} s; timing {args.runs} runs")
    # The bot's set-up (`python -m bot`): face-finding processes (FACE_WORKERS, one per core) beside the
    # process that runs the network; with them, every photo's faces are found there, a single one too.
    pool = FacePool(default_workers())
    if not pool.start():
        raise RuntimeError("the face-finding processes could not start")
    classifier = FaceClassifier.load(ours_path, pool=pool, precision=args.precision)
    book, ours_learn = load_quietly(book_path), load_quietly(ours_path)
    chip = face_chip(finder, photo(1))
    s = latencies(classifier, book, ours_learn, chip, args.runs)
    where = stages(classifier, args.runs)
    log("second look: small faces found by width, and its time")
    found_by_size, search_before, search_after, second_look_s = second_look(1 if args.quick else 3)
    one_face_second_looks = second_looks_on_one_face(args.runs)
    log("encoder at batch 1, 2, 16")
    encoder = encoder_speed(load_face_encoder(), np.stack([chip] * 16), args.runs)
    rng = np.random.default_rng(2)
    photos = [photo(1, rng) for _ in range(args.burst)]
    log(f"burst of {args.burst}: our bot against the book's bot")
    bot_s, book_s, bot_faces = bot_against_book(classifier, book, photos, rounds=BURST_ROUNDS)
    log(f"burst of {args.burst}: batched against one by one")
    batched, single, faces = batched_against_single(classifier, photos, args.batch)
    pool.close()
    log("cold start and memory")
    cold, rss = cold_and_rss(ours_path, book_path, folder, args.threads, starts=1 if args.quick else 3)
    cold_breakdown = ""
    if not args.quick:
        log("where the cold start goes")
        first = folder / "cold.jpg"
        first.write_bytes(photo(1))
        env = child_env(args.threads)
        cold_breakdown = "\n\n".join(
            render_breakdown(title, breakdown(script, path, first, env))
            for title, script, path in (("Ours", STEPS_OURS, ours_path), ("Book", STEPS_BOOK, book_path))
        )
    bar_cost = s["book_1"].median / s["book_1_no_bar"].median - 1
    frozen = " / ".join(f"{v:.1f}" for v in encoder.ms_per_chip["frozen"])
    notes += [
        f"Where our 1-face time goes (ms, median of {args.runs}; decode, detect and chips in a face-finding "
        f"process): {where}. The second look ran on {one_face_second_looks} of {args.runs} such photos (the first "
        "look finds their face).",
        "Second look rows: scikit-image's astronaut, four faces to a 1280x960 JPEG (quality 87) on a textured "
        "background, each scaled to a box of the width shown, searched in this process by `FaceFinder` with "
        "`FaceOptions()` and with the search before it (`second_look=False`, a retry at 1024 px only when nothing "
        "is found, `QualityOptions.off(40)`), taking turns; `python -m bench.face_sizes` does the same with the "
        "pins faces, and names them.",
        f"The encoder traced and frozen (`torch.jit.trace` + `freeze`, channels-last) ran {frozen} ms per chip at "
        f"batch {' / '.join(map(str, encoder.batches))}, within a few percent of the served form; it is not served: "
        "tracing and freezing add about 0.8 s to every start, and torch 2.14 deprecates `torch.jit`.",
        "The book's progress bar was redirected to a buffer (stdout), not switched off, since its bot pays for "
        f"it; with `learn.no_bar()` the book's 1-face median is {s['book_1_no_bar'].median * 1000:.0f} ms "
        f"(redirected costs {bar_cost:+.0%}).",
        "Book learner: `vision_learner(dls, resnet18, pretrained=False)`, `Resize(192, method='squish')`, "
        "1 epoch on generated whole photos, exported and read back with `load_learner`.",
        f"Ours: {f'`{args.model}`' if args.model else 'the `python -m training` recipe, 1 epoch on generated chips'}, "
        "served by `FaceClassifier` (decode, dlib's detector and landmarks, one batched forward pass).",
        f"Bursts: {args.burst} varied one-face photos; faces found: {bot_faces} by our bot, {faces[0]} batched, "
        f"{faces[1]} one by one. Our side ran on {cores} cores: the network in this process (1 torch thread), "
        f"faces found by {pool.workers} processes (`FacePool`, the bot's FACE_WORKERS). The book's bot is one "
        "process with one torch thread: one core. Row (a) uses the bot's defaults (30 ms batching window, "
        "batches of up to 64, answered in runs of two photos per face-finding process) with QUEUE_SIZE as "
        "large as the burst, so that every photo is taken; the two "
        f"bots alternate, median of {BURST_ROUNDS} rounds (in `--quick` too).",
        f"Cold start and RSS: a fresh `python -c` process per side loads its learner, answers {RSS_PHOTOS} "
        f"photos from disk, then reads VmRSS from /proc/self/status; median of {1 if args.quick else 3} starts "
        "per side, the sides taking turns.",
    ]
    return Figures(
        bot_burst_s=bot_s,
        book_burst_s=book_s,
        bot_burst_faces=bot_faces,
        cores=cores,
        face_workers=pool.workers,
        encoder=encoder,
        encoder_precision=classifier.precision,
        cold_breakdown=cold_breakdown,
        runs=args.runs,
        **{name: s[name] for name in s},
        burst_photos=args.burst,
        burst_batch=args.batch,
        burst_faces=faces,
        batched_s=batched,
        one_by_one_s=single,
        cold=cold,
        rss_mb=rss,
        found_by_size=found_by_size,
        search_before=search_before,
        search_after=search_after,
        second_look=second_look_s,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the JSON line; a full run also rewrites bench/results.md."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    versions = {"torch": torch.__version__, "fastai": fastai.__version__, "dlib": dlib.__version__}
    machine = machine_line(torch.get_num_threads(), versions)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        figures = measure(args, Path(tmp))  # fastai's training prints; only the results go to stdout
    table = render(figures, machine, previous_figures(RESULTS))
    print(table)
    accuracy, note = (None, "Accuracy: skipped (it trains for tens of minutes); run `python -m bench --accuracy`.")
    if args.accuracy:
        accuracy, note = accuracy_section()
    print(f"\n{note}")
    if not args.quick:
        write_results(RESULTS, command, table, accuracy, note)
        log(f"written to {RESULTS}")
    missed = [name for name, target in targets(figures).items() if not target.met]
    log(f"targets missed: {', '.join(missed)}" if missed else "all targets met")
    print(summary_json(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
