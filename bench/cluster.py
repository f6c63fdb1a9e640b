"""The classifier service against the one-process bot, on this machine: `python -m bench.cluster [--write]`.

A burst of one-face photos (200 by default) sent at once through a frontend that asks the service
(`bot/remote.py`, no torch) with 1 and with 2 replicas (`python -m model.service`, each replica one
CPU and one torch thread), and through the one-process bot's own serving path (`InferenceWorker`
with its face-finding processes), on the same photos: photos/s, p50/p95 from sending to answer,
the machine's cores busy through the burst (every process, Ray's included: what a second replica could use), one
photo alone (p50 of 20 sent one after another), and the resident memory of the frontend, of
each replica and of the one-process bot. Each side runs in its own fresh process. `--write` puts
the table in bench/results.md (section "Past one machine").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import CLUSTER_HEADING, RSS_MB_EXPRESSION, machine_line, write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
HEADING = CLUSTER_HEADING  # kept by `python -m bench` when it rewrites the file

# Both sides print "ready" once they can take photos, then answer the burst and the single photos.
_COMMON = f"""
import asyncio, json, sys, time
from pathlib import Path
photos = [p.read_bytes() for p in sorted(Path(sys.argv[2]).glob("*.jpg"))]

async def timed(classify, data):
    start = time.perf_counter()
    result = await classify(data)
    return time.perf_counter() - start, len(result.answer.faces)

def busy_and_all():
    # Ticks of this whole machine (every process, Ray's included) since boot: busy (not idle, not waiting), all.
    ticks = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

CORES = sum(1 for line in open("/proc/stat") if line[:3] == "cpu" and line[3].isdigit())

async def measure(classify):
    await classify(photos[0])
    busy0, all0 = busy_and_all()
    start = time.perf_counter()
    burst = await asyncio.gather(*(timed(classify, p) for p in photos))
    wall = time.perf_counter() - start
    busy1, all1 = busy_and_all()
    single = [(await timed(classify, p))[0] for p in photos[:20]]
    return {{"wall": wall, "latencies": [t for t, _ in burst], "faces": sum(n for _, n in burst), "single": single,
            "busy_cores": CORES * (busy1 - busy0) / max(all1 - all0, 1), "cores": CORES}}

def report(figures):
    figures["rss_mb"] = {RSS_MB_EXPRESSION}
    figures["loaded"] = sorted(m for m in ("torch", "fastai", "dlib") if m in sys.modules)
    print(json.dumps(figures), flush=True)
"""
FRONTEND = (
    _COMMON
    + """
from bot.remote import RemoteClassifier

async def main():
    # The whole burst held at once, as the in-process side's queue holds it (queue_size=len(photos)).
    worker = RemoteClassifier(sys.argv[1], max_in_flight=len(photos), queue_size=len(photos))
    print("ready", flush=True)
    figures = await measure(worker.classify)
    await worker.aclose()
    return figures

report(asyncio.run(main()))
"""
)
ONE_PROCESS = (
    _COMMON
    + """
import torch
from bot.worker import InferenceWorker
from model.search import FacePool, default_workers
from model.serving import FaceClassifier

async def main():
    torch.set_num_threads(1)
    pool = FacePool(default_workers())
    pool.start()
    worker = InferenceWorker(FaceClassifier.load(sys.argv[1], pool=pool), queue_size=len(photos), batch_window=0.03)
    print("ready", flush=True)
    figures = await measure(worker.classify)
    worker.close(30)
    pool.close()
    return figures

report(asyncio.run(main()))
"""
)


def _run_side(script: str, target: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", script, target, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    ) as proc:
        first = proc.stdout.readline()
        ready = time.perf_counter() - start
        rest, _ = proc.communicate(timeout=900)
    if proc.returncode or first.strip() != "ready":
        raise RuntimeError(f"a benchmark process failed ({proc.returncode})")
    return {**json.loads(rest.strip().splitlines()[-1]), "ready_s": ready}


def _replica_rss_mb() -> list[float]:
    """Resident memory of each Ray Serve replica of the classifier on this machine, from /proc."""
    from testkit.e2e import memory_kb

    sizes = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        replica = entry.name.isdigit() and "ServeReplica" in command and "Classifier" in command
        if replica and (rss := memory_kb(int(entry.name)).get("VmRSS")):
            sizes.append(rss / 1024)
    return sizes


def _with_service(model: Path, replicas: int, folder: Path, extra: list[str]) -> dict:
    from testkit.service_harness import Service  # as the tests start it: a fresh `python -m model.service`

    service = Service(model, replicas, extra)
    service.start()
    try:
        figures = _run_side(FRONTEND, service.url, folder)
        figures["replica_rss_mb"] = _replica_rss_mb()
    finally:
        service.stop()
    return figures


def _row(name: str, f: dict, photos: int) -> str:
    lat = np.array(f["latencies"]) * 1000
    rss = f"frontend {f['rss_mb']:.0f} MiB" if "replica_rss_mb" in f else f"{f['rss_mb']:.0f} MiB"
    if "replica_rss_mb" in f:
        rss += ", replicas " + " / ".join(f"{r:.0f}" for r in f["replica_rss_mb"]) + " MiB"
    return (
        f"| {name} | {photos / f['wall']:.1f} | {np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} ms "
        f"| {f['busy_cores']:.2f} of {f['cores']} "
        f"| {statistics.median(f['single']) * 1000:.0f} ms | {rss} | {f['ready_s']:.1f} s | "
        f"{', '.join(f['loaded']) or 'none'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--model", type=Path, help="our exported learner (default: build one as python -m bench does)")
    parser.add_argument("--write", action="store_true", help="put the table in bench/results.md")
    parser.add_argument(
        "--service-args", default="", help="more options for `python -m model.service`, as one string (default: none)"
    )
    args = parser.parse_args(argv)
    from model.faces import FaceFinder

    from .learners import face_learner_file, photo

    machine = machine_line(1, {name: importlib.metadata.version(name) for name in ("torch", "ray", "httpx")})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or face_learner_file(folder / "learner", FaceFinder(), per_class=8)
        (folder / "photos").mkdir()
        rng = np.random.default_rng(5)
        for i in range(args.photos):
            (folder / "photos" / f"{i:04d}.jpg").write_bytes(photo(1, rng))
        one = _run_side(ONE_PROCESS, str(model), folder / "photos")
        extra = shlex.split(args.service_args)
        sides = {r: _with_service(model, r, folder / "photos", extra) for r in (1, 2)}
    for name, f in [("one process", one), *((f"service, {r} replica(s)", f) for r, f in sides.items())]:
        if f["faces"] != args.photos:
            raise RuntimeError(f"{name}: {f['faces']} faces found in {args.photos} one-face photos")
    rate = {r: args.photos / f["wall"] for r, f in sides.items()}
    single = {k: statistics.median(f["single"]) for k, f in (("one", one), (1, sides[1]))}
    front = sides[2]
    lines = [
        f"Machine: {machine}",
        "",
        f"Burst of {args.photos} one-face 1280x853 photos sent at once; one photo alone: p50 of 20 sent one "
        "after another.",
        "",
        "| serving | photos/s | burst latency p50 / p95 | machine's cores busy in the burst | one photo alone, p50 "
        "| resident memory | ready after | torch, fastai, dlib loaded |",
        "|---|---|---|---|---|---|---|---|",
        _row("one-process bot (`python -m bot`'s path: worker and 2 face-finding processes)", one, args.photos),
        _row("frontend + service, 1 replica", sides[1], args.photos),
        _row("frontend + service, 2 replicas", sides[2], args.photos),
        "",
        "Targets:",
        "",
        f"- 2 replicas against 1: {rate[2] / rate[1]:.2f}x the photos/s (target ≥ 1.6x): "
        f"{'met' if rate[2] / rate[1] >= 1.6 else 'not met'}",
        f"- one photo alone, 1 replica against the one-process bot: {single[1] / single['one']:.2f}x the p50 "
        f"(target ≤ 1.3x): {'met' if single[1] / single['one'] <= 1.3 else 'not met'}",
        f"- frontend: loads {', '.join(front['loaded']) or 'none of torch, fastai, dlib'}; {front['rss_mb']:.0f} MiB "
        f"(target < 200); ready after {front['ready_s']:.1f} s (target < 2): "
        f"{'met' if not front['loaded'] and front['rss_mb'] < 200 and front['ready_s'] < 2 else 'not met'}",
        *_cores_note(sides[1], rate[2] / rate[1]),
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        _write(table)
    return 0


def _cores_note(one_replica: dict, ratio: float) -> list[str]:
    """How much a second replica could add here at most: the cores one replica left idle in its burst."""
    busy, cores = one_replica["busy_cores"], one_replica["cores"]
    ceiling = cores / busy
    lines = [
        "",
        f"One replica kept {busy:.2f} of this machine's {cores} cores busy through its burst (the replica, its "
        f"face-finding process, Ray's proxy and the frontend). A second replica can only use what is left: at the "
        f"same CPU time a photo, two replicas here answer about {ceiling:.2f}x what one does (measured: {ratio:.2f}x).",
    ]
    if ceiling < 1.6:
        lines[-1] += (
            " Read with care: the replicas' ratio shows how they scale only where each has cores of its own (2 a "
            "replica, for the replica and its face-finding process: a machine of 4 cores, or a replica a machine)."
        )
    return lines


def _write(table: str) -> None:
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_section(RESULTS, HEADING, f"{HEADING}\n\n`python -m bench.cluster --write`, {date}.\n\n{table}\n")


if __name__ == "__main__":
    raise SystemExit(main())
