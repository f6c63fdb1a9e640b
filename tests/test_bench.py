"""`python -m bench --quick` runs end to end and ends with its JSON summary (timings are never asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The keys scripts have read since the first benchmark, kept as they were; later ones are added beside them.
KEYS = {"e2e_vs_book_predict", "burst_speedup", "serving_vs_predict_speedup", "rss_mb"}
ADDED = {"bot_burst_vs_book", "cold_vs_book", "encoder_ms_per_chip"}


def test_quick_bench_prints_table_and_json_summary() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Smallest sizes, and one torch thread so a busy shared machine cannot stretch the run.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "3", "--burst", "8", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("| 1280x853 JPEG, 1 face") for line in lines), done.stdout
    assert any(line.startswith("| (a) the product: burst of 8") for line in lines), done.stdout
    assert any("(b) batching alone" in line for line in lines), done.stdout
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS | ADDED
    per_chip = summary.pop("encoder_ms_per_chip")
    assert set(per_chip) == {"1", "2", "16"} and all(v > 0 for v in per_chip.values()), per_chip
    assert all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in summary.values()), summary


def test_a_benchmark_section_replaces_its_earlier_run_and_leaves_the_others(tmp_path: Path) -> None:
    from bench.report import CLUSTER_HEADING, WEBHOOK_HEADING, write_section

    results = tmp_path / "results.md"
    results.write_text(f"# Benchmarks\n\nthe main table\n\n{CLUSTER_HEADING}\n\nold cluster run\n")
    write_section(results, WEBHOOK_HEADING, f"{WEBHOOK_HEADING}\n\nfirst webhook run\n")
    write_section(results, CLUSTER_HEADING, f"{CLUSTER_HEADING}\n\nnew cluster run\n")
    write_section(results, WEBHOOK_HEADING, f"{WEBHOOK_HEADING}\n\nsecond webhook run\n")
    assert results.read_text() == (
        f"# Benchmarks\n\nthe main table\n\n{CLUSTER_HEADING}\n\nnew cluster run\n\n"
        f"{WEBHOOK_HEADING}\n\nsecond webhook run\n"
    )
