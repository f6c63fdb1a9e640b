"""`python -m model.service` in its own process on a local Ray instance, for the tests and bench/cluster.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import ROOT, free_port

__all__ = ["START_TIMEOUT", "Service"]

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
