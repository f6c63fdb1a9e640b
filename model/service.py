"""The classifier as a Ray Serve service: `python -m model.service --model model/export.pkl --port 8000`.

Each replica holds one `FaceClassifier` and answers as the one-process bot does: faces found, one
batched forward pass, the batching done by `@serve.batch` instead of `bot/worker.py`.

- `POST /classify` with the photo as the body: the object `python -m model --json` prints for it
  (200), 413 when the body is larger than the cap (refused from its Content-Length, before it is
  read), 422 when the file cannot be read as a photo (the same object, saying why).
- `GET /about`: the model's classes and the metadata the training script wrote beside it.
- Replacing the model file moves every replica to the new model in place (`reconfigure`): requests
  in progress finish on the old one, none is dropped.

Needs the `cluster` extra (`pip install -e ".[cluster]"`, Ray Serve); nothing else imports this module.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .answers import PhotoAnswer
from .decode import DecodeLimits, file_too_large
from .resources import DEFAULT_MODEL_PATH, read_metadata

__all__ = ["APP_NAME", "DEPLOYMENT", "Classifier", "build_app", "main", "scaling", "status_of"]

log = logging.getLogger(__name__)

APP_NAME = "doppelbot"
DEPLOYMENT = "Classifier"
# Refusals a user's file earns: the photo cannot be read. Anything else that fails is the service's fault (500).
UNREADABLE = {"NotAnImage", "TruncatedImage", "TooManyPixels", "ImageTooSmall"}


def status_of(answer: PhotoAnswer) -> int:
    """The HTTP status an answer is sent with: 200, 413 too large, 422 unreadable, 500 the service failed."""
    if answer.outcome != "error":
        return 200
    if answer.error_kind == "FileTooLarge":
        return 413
    return 422 if answer.error_kind in UNREADABLE else 500


@serve.deployment(name=DEPLOYMENT, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64)
class Classifier:
    """One replica: a `FaceClassifier`, loaded from `user_config["model_path"]`, reloaded when it changes."""

    def __init__(self, max_bytes: int = DecodeLimits.max_bytes, torch_threads: int = 1, device: str = "cpu") -> None:
        import torch

        torch.set_num_threads(torch_threads)
        self.device = device
        self.limits = DecodeLimits(max_bytes=max_bytes)
        self.classifier = None
        self.meta: dict = {}
        self.loaded: tuple[str, int] | None = None  # the model's path and the mtime it was loaded at

    def reconfigure(self, config: dict) -> None:
        """Load the model `config` names, if it is not the one loaded; called in place, between requests."""
        from .serving import FaceClassifier

        path = Path(config["model_path"])
        version = (str(path), int(config.get("version", 0)))
        if version == self.loaded:
            return
        classifier = FaceClassifier.load(path, limits=self.limits, device=self.device)
        self.classifier, self.meta, self.loaded = classifier, read_metadata(path) or {}, version
        log.info("replica serving %s (version %s)", path, version[1])

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.03)
    async def _classify(self, photos: list[bytes]) -> list[PhotoAnswer]:
        classifier = self.classifier  # a reload during this batch does not change its model
        return await asyncio.to_thread(classifier.classify_many, photos)

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        if path.endswith("/about") and request.method == "GET":
            return JSONResponse(self._about())
        if request.method != "POST" or not path.endswith("/classify"):
            return JSONResponse({"error": "POST a photo to /classify, or GET /about"}, status_code=404)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_bytes:
            too_large = file_too_large(int(declared), self.limits.max_bytes)
            answer = PhotoAnswer("error", error=str(too_large), error_kind="FileTooLarge")
            return JSONResponse(answer.to_json(), status_code=413)
        answer = await self._classify(await request.body())
        return JSONResponse(answer.to_json(), status_code=status_of(answer))

    def _about(self) -> dict:
        classes = list(self.classifier.classes) if self.classifier is not None else []
        return {**self.meta, "classes": classes, "model_path": self.loaded[0] if self.loaded else None}


def build_app(model: Path, replicas: int | str = 1, max_bytes: int = DecodeLimits.max_bytes, num_gpus: float = 0):
    """The application: `replicas` replicas of `Classifier`, or autoscaling from 1 to N with `auto:N`."""
    options: dict = {"user_config": _model_config(model), "ray_actor_options": {"num_cpus": 1, "num_gpus": num_gpus}}
    options.update(scaling(str(replicas)))
    return Classifier.options(**options).bind(max_bytes=max_bytes, device="cuda" if num_gpus else "cpu")


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


def _model_config(model: Path) -> dict:
    return {"model_path": str(model.resolve()), "version": model.stat().st_mtime_ns}


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
    p.add_argument("--max-mb", type=float, default=DecodeLimits.max_bytes / 2**20, help="largest photo, in MB")
    p.add_argument("--reload-seconds", type=float, default=5.0, help="how often the model file is checked")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Start (or join) Ray, deploy, print the URL, and serve until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.model.is_file():
        print(f"No model at {args.model}: train one with `python -m training`.", file=sys.stderr)
        return 2
    import ray

    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    max_bytes = int(args.max_mb * 2**20)

    def deploy() -> None:
        """Deploy, or move the running replicas in place to the model file as it is now."""
        serve.run(build_app(args.model, args.replicas, max_bytes, args.num_gpus), name=APP_NAME, route_prefix="/")

    deploy()
    print(f"serving {args.model} at http://{args.host}:{args.port}/classify", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    version = args.model.stat().st_mtime_ns
    while not stop.wait(args.reload_seconds):
        try:
            now = args.model.stat().st_mtime_ns
        except OSError:
            continue  # being replaced: look again next time
        if now != version:
            version = now
            log.info("model file changed: moving every replica to it")
            deploy()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
