"""Run this checkout's commands as a user would: a fresh Python process, this repository importable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(
    *args: str, cwd: Path, env: dict[str, str] | None = None, drop: Iterable[str] = ()
) -> subprocess.CompletedProcess:
    """`python ARGS...` in `cwd`, with `env` added to ours and the names in `drop` removed from it."""
    dropped = set(drop)
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    environment.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )
