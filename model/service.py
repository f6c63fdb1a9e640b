"""The classifier as a Ray Serve service: `python -m model.service --model model/export.pkl --port 8000`.

Each replica (`model/replica.py`) holds one `FaceClassifier` and answers as the one-process bot does:
faces found in a pool of processes, one batched forward pass, the batching done by `@serve.batch`
instead of `bot/worker.py`. `POST /classify` answers a photo, `GET /about` describes the model.

Replacing the model file moves every replica to the new model: requests in progress finish on the old
one, none is dropped. (Not in place: Ray Serve gives every `serve.run` of a Python application a new code
version, so it starts replicas on the new model and stops the old ones once those answer, as its
controller's log shows; `reconfigure` keeps the old model where Ray does call it in place.)

Each version of the file is copied aside and loaded once in a process of its own before it goes out
(`model/rollout.py`): a file that does not load is logged and never reaches the replicas, which go on
with the model they serve, as the in-process bot's `ModelWatcher` does; and a replica that Ray restarts
meanwhile loads the copy, not whatever the file holds now.

Needs the `cluster` extra (`pip install -e ".[cluster]"`, Ray Serve); nothing else imports this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ray import serve

from .decode import DecodeLimits
from .environment import SERVICE_RANGES
from .precision import PRECISIONS
from .replica import DEPLOYMENT, Classifier, status_of
from .resources import DEFAULT_MODEL_PATH, DEFAULT_PHOTO_TIMEOUT, FACE_DETECTORS
from .rollout import NOT_A_LEARNER, Rollout, load_problem

__all__ = ["APP_NAME", "DEPLOYMENT", "Classifier", "build_app", "main", "scaling", "status_of"]

log = logging.getLogger(__name__)

APP_NAME = "doppelbot"


def build_app(
    config: dict,
    replicas: int | str = 1,
    max_bytes: int = DecodeLimits.max_bytes,
    num_gpus: float = 0,
    face_workers: int = 1,
    photo_timeout: float = DEFAULT_PHOTO_TIMEOUT,
    face_detector: str = "hog",
    encoder_precision: str = "auto",
):
    """The application: `replicas` replicas of `Classifier` on the model `config` names (`Rollout.take`),
    or autoscaling from 1 to N with `auto:N`."""
    options: dict = {"user_config": config, "ray_actor_options": {"num_cpus": 1, "num_gpus": num_gpus}}
    options.update(scaling(str(replicas)))
    device = "cuda" if num_gpus else "cpu"
    return Classifier.options(**options).bind(
        max_bytes=max_bytes,
        device=device,
        face_workers=face_workers,
        photo_timeout=photo_timeout,
        face_detector=face_detector,
        encoder_precision=encoder_precision,
    )


def scaling(replicas: str) -> dict:
    """Ray Serve's options for `--replicas`: N fixed replicas, `auto` (1 to the CPUs) or `auto:N` (1 to N)."""
    word, colon, top = replicas.partition(":")
    if replicas.isdigit() and int(replicas) >= 1:
        return {"num_replicas": int(replicas)}
    if word == "auto" and (not colon or (top.isdigit() and int(top) >= 1)):
        most = int(top) if colon else os.cpu_count() or 1
        # Four requests in hand per replica before another is added: @serve.batch answers up to 16 at once.
        return {"autoscaling_config": {"min_replicas": 1, "max_replicas": most, "target_ongoing_requests": 4}}
    raise ValueError(f"{replicas!r}: give a number of replicas (1 or more), auto, or auto:N")


def _replicas(text: str) -> str:
    try:
        scaling(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _within(name: str) -> Callable[[str], float]:
    """An argparse type: a number in the range the bot's setting `name` keeps to (`SERVICE_RANGES`)."""
    allowed = SERVICE_RANGES[name]

    def parse(raw: str) -> float:
        try:
            value = int(raw) if allowed.whole else float(raw)
        except ValueError:
            value = float("nan")
        if not allowed.holds(value):
            raise argparse.ArgumentTypeError(f"{raw!r} is not allowed: it must be {allowed} (as {name})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.service", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="the exported learner")
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP ingress listens on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--replicas", type=_replicas, default="1", help="a number, or auto (autoscaling from 1 to the CPUs), or auto:N"
    )
    p.add_argument("--address", help="join this Ray cluster (auto, or ray://HOST:PORT); default: start one here")
    p.add_argument("--num-cpus", type=int, help="CPUs of the Ray instance started here (default: all)")
    p.add_argument("--num-gpus", type=float, default=0, help="GPUs per replica (the encoder runs on CUDA then)")
    p.add_argument(
        "--max-mb", type=_within("MAX_PHOTO_MB"), default=DecodeLimits.max_bytes / 2**20, help="largest photo, in MB"
    )
    p.add_argument(
        "--reload-seconds", type=_within("MODEL_RELOAD_SECONDS"), default=5.0, help="seconds between looks at the model"
    )
    p.add_argument(
        "--face-workers",
        type=_within("FACE_WORKERS"),
        default=1,
        help="processes per replica that find faces, so that a photo crashing dlib costs only itself (0: none)",
    )
    p.add_argument(
        "--photo-timeout",
        type=_within("PHOTO_TIMEOUT_SECONDS"),
        default=DEFAULT_PHOTO_TIMEOUT,
        help="seconds a photo may take in a face-finding process before it is answered 'took too long'",
    )
    p.add_argument(
        "--face-detector",
        choices=FACE_DETECTORS,
        default="hog",
        help="hog (fast on a CPU) or cnn (dlib's CNN detector: finds more faces, for replicas with --num-gpus)",
    )
    p.add_argument(
        "--encoder-precision",
        choices=PRECISIONS,
        default="auto",
        help="the face encoder's number format: auto (bf16 where the CPU computes it natively), fp32, bf16 or int8",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Start (or join) Ray, deploy, print the URL, and serve until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.model.is_file():
        print(f"No model at {args.model}: train one with `python -m training`.", file=sys.stderr)
        return 2
    if not zipfile.is_zipfile(args.model):  # torch.save writes a zip: anything else is refused before Ray starts
        print(f"Could not serve the model at {args.model} ({NOT_A_LEARNER}).", file=sys.stderr)
        return 2
    import ray

    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    max_bytes = int(args.max_mb * 2**20)
    rollout = Rollout(args.model)

    def deploy(config: dict) -> None:
        """Deploy, or move the running replicas in place to the model `config` names."""
        app = build_app(
            config,
            args.replicas,
            max_bytes,
            args.num_gpus,
            args.face_workers,
            args.photo_timeout,
            args.face_detector,
            args.encoder_precision,
        )
        serve.run(app, name=APP_NAME, route_prefix="/")

    try:
        # The file's version is read before deploying: a model published while the replicas load is a change.
        deploy(first := rollout.take(check=False))
    except Exception as e:  # the replicas could not load it: no old model to fall back on
        # Ray's error says only that the deployment failed; loading the file here says why.
        reason = load_problem(args.model) or f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1][:300]}"
        print(f"Could not serve the model at {args.model} ({reason}).", file=sys.stderr)
        rollout.close()
        serve.shutdown()
        ray.shutdown()
        return 2
    rollout.served(first)
    print(f"serving {args.model} at http://{args.host}:{args.port}/classify", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(args.reload_seconds):
        if (config := rollout.changed()) is None:  # as served, being replaced, or it does not load (logged)
            continue
        log.info("model file changed: moving every replica to it")
        try:
            deploy(config)
        except Exception as e:  # the replicas keep what they serve; the next version of the file is tried again
            log.error(
                "could not move the replicas to the new model (%s: %s); still serving the old one", type(e).__name__, e
            )
            continue
        rollout.served(config)
    rollout.close()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
