"""Settings as the process sees them: `.env` in the working folder, overridden by the environment."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

__all__ = ["environment"]


def environment(dotenv: str | Path | None = None) -> dict[str, str]:
    """`.env` (found from the working folder, or `dotenv`) with the process environment winning."""
    path = str(dotenv) if dotenv else find_dotenv(usecwd=True)
    return {**{k: v for k, v in dotenv_values(path).items() if v is not None}, **os.environ}
