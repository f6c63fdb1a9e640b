"""Where a serving process's cold start goes: imports by package (`-X importtime`), then each step to the first answer.

    python -m bench.cold_start [--model PATH]

Starts one fresh process per side, ours (`FaceClassifier`, as `python -m bot` loads it) and the book's
(`load_learner`, `learn.predict`), each timing its own steps, and prints one table per side, costliest
first. Without `--model`, both learners are built as `python -m bench` builds them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

__all__ = ["STEPS_BOOK", "STEPS_OURS", "breakdown", "render_breakdown"]

ROOT = Path(__file__).resolve().parent.parent

# Each script prints one JSON object: its steps' seconds, in order. The clock starts as the
# interpreter starts running the script; what comes before that (the interpreter itself) is the
# difference from the process's wall time, measured by the parent.
STEPS_OURS = """
import json, sys, time
t = [("start", time.perf_counter())]
from model.serving import FaceClassifier
t.append(("import model.serving (torch, fastai, dlib)", time.perf_counter()))
classifier = FaceClassifier.load(sys.argv[1])
t.append(("FaceClassifier.load: load_learner, the face finder, the fused encoder", time.perf_counter()))
data = open(sys.argv[2], "rb").read()
assert classifier.classify(data).faces
t.append(("first answer", time.perf_counter()))
print(json.dumps([(name, t[i + 1][1] - t[i][1]) for i, (name, _) in enumerate(t[1:])]))
"""
STEPS_BOOK = """
import contextlib, io, json, sys, time
t = [("start", time.perf_counter())]
from fastai.vision.all import PILImage, load_learner
t.append(("import fastai.vision.all (torch, fastai)", time.perf_counter()))
learn = load_learner(sys.argv[1])
t.append(("load_learner", time.perf_counter()))
with contextlib.redirect_stdout(io.StringIO()):
    learn.predict(PILImage.create(open(sys.argv[2], "rb").read()))
t.append(("first answer", time.perf_counter()))
print(json.dumps([(name, t[i + 1][1] - t[i][1]) for i, (name, _) in enumerate(t[1:])]))
"""


def _imports_by_package(stderr: str) -> dict[str, float]:
    """`-X importtime` self times (microseconds), summed by top-level package, in seconds."""
    totals: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        totals[name.split(".")[0]] += int(self_us) / 1e6
    return dict(totals)


def breakdown(script: str, model: Path, photo: Path, env: dict[str, str] | None = None) -> dict:
    """One fresh process: its steps, and its imports by package (with `-X importtime`, which slows them a little)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script, str(model), str(photo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"the cold-start process failed: {done.stderr[-1500:]}")
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    return {"steps": steps, "imports": _imports_by_package(done.stderr)}


def render_breakdown(title: str, result: dict, top: int = 8) -> str:
    """A markdown list: each step's seconds, then the costliest imported packages."""
    lines = [f"{title}:", ""]
    lines += [f"- {name}: {seconds:.2f} s" for name, seconds in result["steps"]]
    imports = sorted(result["imports"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in imports[:top])
    lines.append(f"- imports by package (self time, under `-X importtime`): {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="our exported learner (default: build one)")
    args = parser.parse_args()
    from model.faces import FaceFinder

    from .learners import book_learner, face_learner_file, photo

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = args.model or face_learner_file(folder, FaceFinder(), per_class=8)
        book = book_learner(folder, per_class=8)
        one = folder / "one.jpg"
        one.write_bytes(photo(1))
        print(render_breakdown("ours", breakdown(STEPS_OURS, ours, one)))
        print()
        print(render_breakdown("book", breakdown(STEPS_BOOK, book, one)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
