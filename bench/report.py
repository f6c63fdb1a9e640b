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
    "NOISE_HEADING",
    "Figures",
    "Series",
    "machine_line",
    "render",
    "summary_json",
    "targets",
    "write_results",
]

ACCURACY_HEADING = "## Accuracy"
NOISE_HEADING = "## Web noise"


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
    notes: list[str] = field(default_factory=list)

    @property
    def e2e_ratio(self) -> float:
        return self.ours_1.median / self.book_1.median

    @property
    def burst_speedup(self) -> float:
        return self.one_by_one_s / self.batched_s

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
        "e2e": Target("≤ 1.0", f.e2e_ratio <= 1.0),
        "burst": Target("≥ 2x", f.burst_speedup >= 2.0),
        "chip": Target("≥ 1.25x", f.chip_speedup >= 1.25),
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


def machine_line(threads: int, versions: dict[str, str]) -> str:
    """Cores, CPU, torch threads, versions, and the load the run started under (shared machines drift)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    libs = ", ".join(f"{name} {version}" for name, version in versions.items())
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{date}; {cores} cores ({_cpu_model()}), torch threads {threads}; {libs}; "
        f"Python {platform.python_version()}; load average at start {load} (1/5/15 min)"
    )


def _rows(f: Figures) -> list[tuple[str, str, str, str, str]]:
    t = targets(f)
    batched_rate, single_rate = f.burst_photos / f.batched_s, f.burst_photos / f.one_by_one_s
    book = "book: `load_learner` + `learn.predict(PILImage)`"
    return [
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
            f"burst of {f.burst_photos} one-face photos submitted at once",
            f"`classify_many`, batches of {f.burst_batch}: {batched_rate:.1f} photos/s",
            f"`classify` one by one: {single_rate:.1f} photos/s",
            f"{f.burst_speedup:.2f}x",
            t["burst"].cell(),
        ),
        (
            "cold start: process start to first answer",
            f"{f.cold[0]:.1f} s",
            f"book: {f.cold[1]:.1f} s",
            f"{f.cold[0] / f.cold[1]:.2f} (ours / book)",
            "-",
        ),
        (
            "steady RSS of the serving process, after 10 photos",
            f"{f.rss_mb[0]:.0f} MiB",
            f"book: {f.rss_mb[1]:.0f} MiB",
            f"{f.rss_mb[0] / f.rss_mb[1]:.2f} (ours / book)",
            t["rss"].cell(),
        ),
    ]


def render(f: Figures, machine: str) -> str:
    """The markdown: the machine, then one table, each figure beside its comparison, then how it was measured."""
    header = ["| measure | doppelbot | compared with | ratio | target |", "|---|---|---|---|---|"]
    lines = [f"Machine: {machine}", "", *header]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(f)]
    lines += ["", *(f"- {note}" for note in f.notes)]
    return "\n".join(lines)


def summary_json(f: Figures) -> str:
    """The one JSON line a script (or a quick check after a change) reads."""
    return json.dumps(
        {
            "e2e_vs_book_predict": round(f.e2e_ratio, 3),
            "burst_speedup": round(f.burst_speedup, 3),
            "serving_vs_predict_speedup": round(f.chip_speedup, 3),
            "rss_mb": round(f.rss_mb[0], 1),
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


def write_results(path: Path, command: str, table: str, accuracy: str | None, skipped_note: str) -> None:
    """Rewrite the results file with this run; earlier accuracy and web-noise tables stay unless this run made one."""
    accuracy_section = accuracy or _kept_section(path, ACCURACY_HEADING) or f"{ACCURACY_HEADING}\n\n{skipped_note}"
    noise_section = _kept_section(path, NOISE_HEADING)  # written by bench/noise.py
    text = (
        "# Benchmarks: doppelbot against the fastai book's serving path\n\n"
        f"Latest run of `{command}` (rewritten by each full run; `--quick` writes nothing).\n\n"
        f"{table}\n\n{accuracy_section}\n" + (f"\n{noise_section}\n" if noise_section else "")
    )
    path.write_text(text)
