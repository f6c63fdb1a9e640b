"""`python -m model.service` in its own process on a local Ray instance, and `python -m bot --web` frontends
that use it, for the tests and bench/cluster.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.settings import NAMES
from testkit.processes import ROOT, free_port

__all__ = ["START_TIMEOUT", "Frontend", "Service", "frontend"]

START_TIMEOUT = 240.0  # Ray, its Serve controller and proxy, and two replicas loading the model, on 2 busy cores


class Service:
    """`python -m model.service` in its own process, on a local Ray instance of 2 CPUs."""

    def __init__(self, model: Path, replicas: int = 2) -> None:
        self.model, self.replicas, self.port = model, replicas, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read when the service fails to start, closed with it

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["--model", str(self.model), "--port", str(self.port), "--replicas", str(self.replicas)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model.service", *args, "--num-cpus", "2", "--reload-seconds", "1"],
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
