"""`python -m model.service` in its own process on a local Ray instance, `python -m bot --web` frontends
that use it, and a fake of the service's HTTP interface, for the tests and bench/cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web

from bot.settings import NAMES
from model.answers import FaceAnswer, PhotoAnswer
from testkit.processes import ROOT, free_port

__all__ = [
    "REPLICA_DIED",
    "START_TIMEOUT",
    "FakeService",
    "Frontend",
    "Service",
    "children",
    "eileen_answer",
    "frontend",
]

START_TIMEOUT = 240.0  # Ray, its Serve controller and proxy, and two replicas loading the model, on 2 busy cores


class Service:
    """`python -m model.service` in its own process, on a local Ray instance of 2 CPUs."""

    def __init__(self, model: Path, replicas: int = 2, extra: Sequence[str] = ()) -> None:
        self.model, self.replicas, self.port = model, replicas, free_port()
        self.extra = list(extra)  # more of `python -m model.service`'s options, as given
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read when the service fails to start, closed with it

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["--model", str(self.model), "--port", str(self.port), "--replicas", str(self.replicas)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model.service", *args, "--num-cpus", "2", "--reload-seconds", "1", *self.extra],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("serving "):
                return
            if not line and self.proc.poll() is not None:
                break
        self._log.seek(0)
        raise AssertionError(f"the service did not start: {self._log.read()[-3000:]}")

    def log_text(self) -> str:
        """Everything the service has written to stderr (its log) since it was first started."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def replica_pids(self) -> list[int]:
        """The process ids of this service's replicas: its descendants that Ray runs `Classifier` in."""
        assert self.proc is not None
        return [
            pid
            for pid in _descendants(self.proc.pid)
            if "ServeReplica" in _command(pid) and "Classifier" in _command(pid)
        ]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Frontend:
    """A running `python -m bot --web`: its web server at `url`, and its process."""

    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def frontend(classifier_url: str, workdir: Path, **env: str) -> Iterator[Frontend]:
    """`python -m bot --web` asking the classifier service at `classifier_url`, up once `/healthz` answers;
    stopped (SIGTERM) on exit. Every other setting is its default unless given in `env`."""
    port = free_port()
    settings = {**dict.fromkeys(NAMES, ""), "CLASSIFIER_URL": classifier_url, "WEB_PORT": str(port), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--web"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **settings},
        stderr=subprocess.DEVNULL,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            assert process.poll() is None, f"the frontend exited with {process.returncode}"
            assert time.monotonic() < deadline, "the frontend did not start"
            time.sleep(0.2)
        yield Frontend(url, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still running, from /proc (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    below = children(pid)
    return below + [grandchild for child in below for grandchild in _descendants(child)]


# What Ray Serve's proxy sends when the replica died under a request: a 500 with the error's text, no answer.
REPLICA_DIED = "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task."


def eileen_answer() -> dict:
    """The service's answer for a photo of Eileen (as `PhotoAnswer.to_json` writes it)."""
    face = FaceAnswer((10, 10, 90, 90), "Eileen", 0.97, True, {"Eileen": 0.97, "Twin": 0.03}, True, 0.31)
    return PhotoAnswer("ok", [face]).to_json()


class FakeService:
    """The classifier service's HTTP interface on 127.0.0.1, answering `/classify` from a script.

    Each POST takes the next step of `script` (the last one repeats): `("answer", status, body)`, the
    service's answer; `"died"`, Ray Serve's 500 for a replica that died; `"unavailable"`, its 503; `"hold"`,
    held until `release()`, then answered as Eileen. `requests` keeps each POST's query parameters.
    Runs its own event loop on a thread, so that a frontend in another process and one here can both use it.
    """

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.requests: list[dict[str, str]] = []
        self.held = 0  # requests waiting for `release`
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeService:
        self._thread.start()
        assert self._ready.wait(30), "the fake service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def release(self) -> None:
        """Answer every held request, and every later "hold" at once."""
        self._loop.call_soon_threadsafe(self._released.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/classify", self._classify)
        app.router.add_get("/about", self._about)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _classify(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append(dict(request.query))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step == "died":
            return web.Response(status=500, text=REPLICA_DIED)
        if step == "unavailable":
            return web.Response(status=503, text="Service Unavailable")
        if step == "hold":
            self.held += 1
            await self._released.wait()
            self.held -= 1
            step = ("answer", 200, eileen_answer())
        _, status, body = step
        return web.json_response(body, status=status)

    async def _about(self, request: web.Request) -> web.Response:
        return web.json_response({"classes": ["Eileen", "Twin"], "accuracy": 0.985, "model_path": "/fake/export.pkl"})
