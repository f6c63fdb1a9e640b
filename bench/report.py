"""The benchmark's one table, its targets, the machine it ran on, and `bench/results.md`."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = [
    "ACCURACY_HEADING",
    "CLUSTER_HEADING",
    "FACE_SIZES_HEADING",
    "FEEDBACK_HEADING",
    "NOISE_HEADING",
    "PRECISION_HEADING",
    "QUALITY_HEADING",
    "RSS_MB_EXPRESSION",
    "WEBHOOK_HEADING",
    "EncoderSpeed",
    "Figures",
    "Series",
    "machine_line",
    "previous_figures",
    "render",
    "summary_json",
    "targets",
    "write_results",
    "write_section",
]

ACCURACY_HEADING = "## Accuracy"
NOISE_HEADING = "## Web noise"
CLUSTER_HEADING = "## Past one machine"
WEBHOOK_HEADING = "## Webhook replicas"
FACE_SIZES_HEADING = "## Face sizes"
QUALITY_HEADING = "## Face quality"
FEEDBACK_HEADING = "## Learning from users"  # written by hand from bench/feedback.py's table
PRECISION_HEADING = "## Encoder precision"  # written by hand from bench/accuracy.py --precisions fp32,bf16
# What a measured child process prints for its own resident memory, in MiB (its scripts are strings).
RSS_MB_EXPRESSION = "int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024"


@dataclass(frozen=True)
class EncoderSpeed:
    """Milliseconds per chip at each batch size, by form of the encoder, and the largest difference from eager."""

    batches: tuple[int, ...]
    ms_per_chip: dict[str, tuple[float, ...]]  # form -> one figure per batch size
    max_difference: dict[str, float]  # form -> largest absolute difference from the eager encoder's output


@dataclass(frozen=True)
class Series:
    """Repeated timings of one thing, in seconds."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        return float(np.percentile(self.times, 95))

    def cell(self) -> str:
        return f"{self.median * 1000:.0f} ms ({self.p95 * 1000:.0f})"


@dataclass
class Figures:
    """Everything one run measured."""

    runs: int
    ours_1: Series
    book_1: Series
    ours_4: Series
    book_4: Series
    book_1_no_bar: Series
    serving_chip: Series
    predict_chip: Series
    burst_photos: int
    burst_batch: int
    burst_faces: tuple[int, int]  # faces found (batched, one by one)
    batched_s: float
    one_by_one_s: float
    cold: tuple[float, float]  # seconds to the first answer (ours, book)
    rss_mb: tuple[float, float]  # MiB after 10 answers (ours, book)
    bot_burst_s: float = float("nan")  # the whole burst through the bot's serving path
    book_burst_s: float = float("nan")  # the whole burst through the book's bot, one photo after another
    bot_burst_faces: int = 0
    cores: int = 1  # the cores our bot's path ran on (the book's bot uses one: one process, one torch thread)
    face_workers: int = 0  # our bot's face-finding processes
    encoder: EncoderSpeed | None = None
    encoder_precision: str = "fp32"  # the format the bot's encoder ran in (ENCODER_PRECISION=auto's choice)
    cold_breakdown: str = ""  # markdown: each start-up step and the costliest imports, ours and the book's
    # Small faces in 1280x960 photos: per face width, (faces, found by the search before, found with the second look)
    found_by_size: dict[float, tuple[int, int, int]] = field(default_factory=dict)
    search_before: Series | None = None  # each such photo's search before the second look
    search_after: Series | None = None  # and with it
    second_look: Series | None = None  # the second look alone, where it ran
    notes: list[str] = field(default_factory=list)

    @property
    def e2e_ratio(self) -> float:
        return self.ours_1.median / self.book_1.median

    @property
    def burst_speedup(self) -> float:
        return self.one_by_one_s / self.batched_s

    @property
    def bot_vs_book_burst(self) -> float:
        return self.book_burst_s / self.bot_burst_s

    @property
    def cold_ratio(self) -> float:
        return self.cold[0] / self.cold[1]

    @property
    def chip_speedup(self) -> float:
        return self.predict_chip.median / self.serving_chip.median


@dataclass(frozen=True)
class Target:
    text: str
    met: bool

    def cell(self) -> str:
        return f"{self.text}: {'met' if self.met else '**missed**'}"


def targets(f: Figures) -> dict[str, Target]:
    """The issue's targets, each judged on this run's figures."""
    return {
        "e2e": Target("≤ 0.55", f.e2e_ratio <= 0.55),
        "bot_burst": Target("≥ 3.0x", f.bot_vs_book_burst >= 3.0),
        "chip": Target("≥ 1.25x", f.chip_speedup >= 1.25),
        "encoder": Target("equal within 1e-4", f.encoder is None or f.encoder.max_difference["served"] <= 1e-4),
        "cold": Target("≤ 1.0", f.cold_ratio <= 1.0),
        "rss": Target("< 1000 MiB", f.rss_mb[0] < 1000),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# The CPU's vector extensions that decide the encoder's format and speed (model/precision.py).
_VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def _cpu_flags() -> str:
    """Which of `_VECTOR_FLAGS` the CPU lists: machines of one name differ in them, and so do their timings."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "flags unknown"
    return " ".join(f for f in _VECTOR_FLAGS if f in flags) or "none of " + " ".join(_VECTOR_FLAGS)


def machine_line(threads: int, versions: dict[str, str]) -> str:
    """Cores, CPU, torch threads, versions, and the load the run started under (shared machines drift)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    libs = ", ".join(f"{name} {version}" for name, version in versions.items())
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{date}; {cores} cores ({_cpu_model()}: {_cpu_flags()}), torch threads {threads}; {libs}; "
        f"Python {platform.python_version()}; load average at start {load} (1/5/15 min)"
    )


def _encoder_row(f: Figures) -> tuple[str, str, str, str, str]:
    e = f.encoder
    sizes = " / ".join(str(b) for b in e.batches)

    def cells(form: str) -> str:
        return " / ".join(f"{v:.1f}" for v in e.ms_per_chip[form])

    speedups = " / ".join(f"{a / b:.2f}x" for a, b in zip(e.ms_per_chip["eager"], e.ms_per_chip["served"], strict=True))
    return (
        f"face encoder, ms per chip at batch {sizes}",
        f"served (fused, channels-last): {cells('served')}",
        f"eager, as trained: {cells('eager')}",
        f"{speedups} faster",
        f"max difference {e.max_difference['served']:.1e}; "
        + targets(f)["encoder"].cell()
        + (f"; in bf16: {cells('served_bf16')}" if "served_bf16" in e.ms_per_chip else "")
        + (f"; in int8: {cells('served_int8')}" if "served_int8" in e.ms_per_chip else ""),
    )


def _second_look_rows(f: Figures) -> list[tuple[str, str, str, str, str]]:
    sizes = f.found_by_size
    widths = list(sizes)
    per_size = next(iter(sizes.values()))[0]

    def found(k: int) -> str:
        return ", ".join(f"{w:g} px {v[k]}/{v[0]}" for w, v in sizes.items())

    before, after = (sum(v[k] for v in sizes.values()) for k in (1, 2))
    return [
        (
            f"1280x960 JPEG, 4 faces of one width ({widths[0]:g} to {widths[-1]:g} px): faces found, of {per_size} "
            "per width",
            f"with the second look: {found(2)}",
            f"before (retry at 1024 px when none found): {found(1)}",
            f"{after} against {before} found",
            "-",
        ),
        (
            f"1280x960 JPEG, 4 small faces: `FaceFinder.find`, median (p95) of {len(f.search_after.times)}",
            f"with the second look: {f.search_after.cell()}; the second look alone: {f.second_look.cell()}",
            f"before: {f.search_before.cell()}",
            f"{f.search_after.median / f.search_before.median:.2f} (after / before)",
            "-",
        ),
    ]


def _rows(f: Figures) -> list[tuple[str, str, str, str, str]]:
    t = targets(f)
    batched_rate, single_rate = f.burst_photos / f.batched_s, f.burst_photos / f.one_by_one_s
    bot_rate, book_rate = f.burst_photos / f.bot_burst_s, f.burst_photos / f.book_burst_s
    book = "book: `load_learner` + `learn.predict(PILImage)`"
    rows = [
        (
            f"1280x853 JPEG, 1 face: latency, median (p95) of {f.runs}",
            f"`FaceClassifier.classify`: {f.ours_1.cell()}",
            f"{book}: {f.book_1.cell()}",
            f"{f.e2e_ratio:.2f} (ours / book)",
            t["e2e"].cell(),
        ),
        (
            f"1280x853 JPEG, 4 faces: latency, median (p95) of {f.runs}",
            f"`FaceClassifier.classify`: {f.ours_4.cell()}",
            f"{book}: {f.book_4.cell()}",
            f"{f.ours_4.median / f.book_4.median:.2f} (ours / book)",
            "-",
        ),
        (
            f"150x150 face chip, our exported learner: median (p95) of {f.runs}",
            f"`FaceClassifier.probabilities([chip])`: {f.serving_chip.cell()}",
            f"`learn.predict(chip)`: {f.predict_chip.cell()}",
            f"{f.chip_speedup:.2f}x faster",
            t["chip"].cell(),
        ),
        (
            f"(a) the product: burst of {f.burst_photos} one-face photos at once, bot against bot",
            f"`python -m bot`'s serving path (its batching, {f.face_workers} face-finding "
            f"processes): {bot_rate:.1f} photos/s, {bot_rate / f.cores:.1f} per core",
            f"the book's bot, `learn.predict` one photo after another: {book_rate:.1f} photos/s, "
            f"{book_rate:.1f} per core",
            f"{f.bot_vs_book_burst:.2f}x",
            t["bot_burst"].cell(),
        ),
        (
            f"burst of {f.burst_photos} one-face photos submitted at once",
            f"(b) batching alone: `classify_many`, batches of {f.burst_batch}: {batched_rate:.1f} photos/s, "
            f"{batched_rate / f.cores:.1f} per core",
            f"`classify` one by one, same processes: {single_rate:.1f} photos/s, {single_rate / f.cores:.1f} per core",
            f"{f.burst_speedup:.2f}x",
            "-",
        ),
    ]
    if f.found_by_size:
        rows += _second_look_rows(f)
    if f.encoder is not None:
        rows.append(_encoder_row(f))
    rows += [
        (
            "cold start: process start to first answer",
            f"{f.cold[0]:.1f} s",
            f"book: {f.cold[1]:.1f} s",
            f"{f.cold_ratio:.2f} (ours / book)",
            t["cold"].cell(),
        ),
        (
            "steady RSS of the serving process, after 10 photos",
            f"{f.rss_mb[0]:.0f} MiB",
            f"book: {f.rss_mb[1]:.0f} MiB",
            f"{f.rss_mb[0] / f.rss_mb[1]:.2f} (ours / book)",
            t["rss"].cell(),
        ),
    ]
    return rows


def previous_figures(path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """From an earlier results file: the run's date, and each row's doppelbot cell and ratio by measure."""
    if not path.is_file():
        return "", {}
    text = path.read_text()
    date = next(
        (line.split(";")[0].removeprefix("Machine: ") for line in text.splitlines() if line.startswith("Machine: ")), ""
    )
    rows = {}
    for line in text.split(f"\n{ACCURACY_HEADING}")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] not in ("measure", "---"):
            rows[cells[0]] = (cells[1], cells[3])
    return date, rows


def render(f: Figures, machine: str, previous: tuple[str, dict[str, tuple[str, str]]] = ("", {})) -> str:
    """The markdown: the machine, then one table, each figure beside its comparison, then how it was measured.

    `previous` (from `previous_figures`): the last run's figures, shown beside this run's.
    """
    date, before = previous
    header = [
        f"| measure | doppelbot | compared with | ratio | target | previous run{f' ({date})' if date else ''} |",
        "|---|---|---|---|---|---|",
    ]
    lines = [f"Machine: {machine}", "", *header]
    for row in _rows(f):
        old = before.get(row[0])
        lines.append("| " + " | ".join((*row, f"{old[0]}; {old[1]}" if old else "-")) + " |")
    lines += ["", *(f"- {note}" for note in f.notes)]
    if f.cold_breakdown:
        lines += ["", "Where the cold start goes (`python -m bench.cold_start`, each side in a fresh process):", ""]
        lines.append(f.cold_breakdown)
    return "\n".join(lines)


def summary_json(f: Figures) -> str:
    """The one JSON line a script (or a quick check after a change) reads."""
    return json.dumps(
        {
            "e2e_vs_book_predict": round(f.e2e_ratio, 3),
            "burst_speedup": round(f.burst_speedup, 3),
            "serving_vs_predict_speedup": round(f.chip_speedup, 3),
            "rss_mb": round(f.rss_mb[0], 1),
            "bot_burst_vs_book": round(f.bot_vs_book_burst, 3),
            "cold_vs_book": round(f.cold_ratio, 3),
            "encoder_precision": f.encoder_precision,
            "encoder_ms_per_chip": (
                dict(zip(map(str, f.encoder.batches), f.encoder.ms_per_chip["served"], strict=True))
                if f.encoder
                else None
            ),
        }
    )


def _kept_section(path: Path, heading: str) -> str | None:
    """The section under `heading` (to the next top-level section) of an earlier results file, if it has a table."""
    if not path.is_file():
        return None
    text = path.read_text()
    start = text.find(f"{heading}\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(heading))
    section = text[start : end if end >= 0 else len(text)].strip()
    return section if "\n|" in section else None


def write_section(path: Path, heading: str, text: str) -> None:
    """Put `text` (which starts with `heading`) in the results file: in place of the section an earlier run wrote
    under that heading, or at the end; the rest of the file stays as it is."""
    old = path.read_text() if path.is_file() else ""
    start = old.find(f"\n{heading}\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text.strip("\n") + "\n")
        return
    end = old.find("\n## ", start + len(heading) + 2)
    rest = old[end:] if end >= 0 else ""
    path.write_text(old[:start].rstrip("\n") + "\n\n" + text.strip("\n") + ("\n" + rest if rest else "\n"))


def write_results(path: Path, command: str, table: str, accuracy: str | None, skipped_note: str) -> None:
    """Rewrite the results file with this run; earlier accuracy and web-noise tables stay unless this run made one."""
    accuracy_section = accuracy or _kept_section(path, ACCURACY_HEADING) or f"{ACCURACY_HEADING}\n\n{skipped_note}"
    own_scripts = (
        NOISE_HEADING,
        CLUSTER_HEADING,
        WEBHOOK_HEADING,
        FEEDBACK_HEADING,
        FACE_SIZES_HEADING,
        QUALITY_HEADING,
        PRECISION_HEADING,
    )
    kept = [_kept_section(path, h) for h in own_scripts]
    text = (
        "# Benchmarks: doppelbot against the fastai book's serving path\n\n"
        f"Latest run of `{command}` (rewritten by each full run; `--quick` writes nothing).\n\n"
        f"{table}\n\n{accuracy_section}\n" + "".join(f"\n{section}\n" for section in kept if section)
    )
    path.write_text(text)
