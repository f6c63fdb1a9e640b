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
ADDED = {"bot_burst_vs_book", "cold_vs_book", "encoder_ms_per_chip", "encoder_precision"}


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
    assert any(line.startswith("| 1280x960 JPEG, 4 faces of one width") for line in lines), done.stdout
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS | ADDED
    per_chip = summary.pop("encoder_ms_per_chip")
    assert summary.pop("encoder_precision") in ("fp32", "bf16", "int8")
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


def test_face_size_photos_hold_each_face_at_its_width_apart_from_the_others() -> None:
    import io

    import numpy as np
    from PIL import Image

    from bench.face_sizes import FRAME, HeldOut, compose, matched
    from model.faces import Face, FaceSearch

    rng = np.random.default_rng(0)
    crop = Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8))
    faces = [HeldOut("a", crop, (10, 20, 90, 100), 80.0), HeldOut("b", crop, (0, 10, 100, 110), 100.0)] * 2
    jpeg, pasted = compose(faces, 60, rng)
    assert Image.open(io.BytesIO(jpeg)).size == FRAME
    boxes = [p.box for p in pasted]
    assert [round(b[2] - b[0]) for b in boxes] == [60, 60, 60, 60]
    assert all(min(b[:2]) >= 0 and b[2] <= FRAME[0] and b[3] <= FRAME[1] for b in boxes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    # A box on the second face and one on no face: one found, one stray.
    chip = np.zeros((150, 150, 3), np.uint8)
    on_face = tuple(round(v) for v in boxes[1])
    search = FaceSearch(faces=[Face(on_face, chip, 1.0), Face((0, 0, 5, 5), chip, 1.0)])
    assert matched(search, pasted) == ([None, 0, None, None], 1)


def test_quality_lines_are_set_where_accuracy_falls_clearly_under_the_clean_faces() -> None:
    from bench.quality import REFERENCE, Face, ladder

    def faces(condition: str, width: float, right: int, n: int = 30) -> list[Face]:
        return [Face(condition, {"width": width}, 1.0, i < right) for i in range(n)]

    clean = faces(REFERENCE, 125, 30)
    # Named right from 50 px up, one in two below: the line falls between 40 and 50 px.
    falling = [
        f
        for w, right in ((80, 30), (70, 29), (60, 30), (50, 30), (40, 15), (30, 12))
        for f in faces(f"{w} px wide", w + 2, right)
    ]
    line = ladder("min_width", {"faces": clean + falling, "strangers": []})
    assert line.value == 47, line
    # One poor size with sound ones below it is no fall-off.
    bumpy = [
        f
        for w, right in ((80, 30), (70, 15), (60, 30), (50, 30), (40, 30), (30, 29))
        for f in faces(f"{w} px wide", w, right)
    ]
    assert ladder("min_width", {"faces": clean + bumpy, "strangers": []}).value is None


def test_pins_benchmarks_say_skipped_without_the_photos(tmp_path: Path, capsys) -> None:
    from bench import face_sizes, quality

    for bench in (face_sizes, quality):
        assert bench.main(["--pins", str(tmp_path / "absent")]) == 0
        assert capsys.readouterr().out.startswith("skipped: the pins photos are not under")
