"""Settings as the process sees them: `.env` in the working folder, overridden by the environment."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

__all__ = ["MODEL_RANGES", "SERVICE_RANGES", "Range", "SettingsError", "environment", "model_setting"]


def environment(dotenv: str | Path | None = None) -> dict[str, str]:
    """`.env` (found from the working folder, or `dotenv`) with the process environment winning."""
    path = str(dotenv) if dotenv else find_dotenv(usecwd=True)
    return {**{k: v for k, v in dotenv_values(path).items() if v is not None}, **os.environ}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names it and the values it may take."""


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: finite, from `low` (or above it) to `high`."""

    low: float
    high: float
    whole: bool = False  # a whole number, such as a count or a port
    above_low: bool = False  # `low` itself is not allowed (a size or a distance of 0 means nothing)

    def __str__(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.above_low:
            return f"{kind} above {self.low:g}, up to {self.high:g}"
        return f"{kind} from {self.low:g} to {self.high:g}"

    def holds(self, value: float) -> bool:
        """Whether `value` is allowed; nan and the infinities never are."""
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.above_low else value >= self.low

    def parse(self, name: str, raw: str) -> float | int:
        """`raw` as this range's kind of number, or a `SettingsError` naming `name` and the range."""
        try:
            value = int(raw) if self.whole else float(raw)
        except ValueError:
            value = math.nan
        if not self.holds(value):
            raise SettingsError(f"{name}={raw!r} is not allowed: {name} must be {self} (see .env.example)")
        return value


# The settings the model itself reads (the bot's `RANGES` holds these and the rest).
MODEL_RANGES: dict[str, Range] = {
    "CONFIDENCE_THRESHOLD": Range(0, 1),
    # dlib's descriptors lie well within 2 of each other; its own same-person line is 0.6.
    "STRANGER_DISTANCE": Range(0, 10, above_low=True),
}


# The numbers `python -m model.service` takes as options and the bot reads as settings (its `RANGES` holds
# these too), declared here once so that both refuse the same values.
SERVICE_RANGES: dict[str, Range] = {
    # Telegram serves files up to 20 MB; 50 MB bounds the memory a queue of waiting photos holds.
    "MAX_PHOTO_MB": Range(0, 50, above_low=True),
    "MODEL_RELOAD_SECONDS": Range(0.1, 86_400),
    "FACE_WORKERS": Range(0, 64, whole=True),
    # A fresh face-finding process starts in a second or two, so under 1 s would give up on photos that are
    # fine; past 10 minutes a photo that hangs a library holds its process (and its sender) for good.
    "PHOTO_TIMEOUT_SECONDS": Range(1, 600),
}


def model_setting(settings: dict[str, str], name: str) -> float | None:
    """The setting `name` of `MODEL_RANGES` from `settings` (None when unset); `SettingsError` when out of range."""
    raw = (settings.get(name) or "").strip()
    return MODEL_RANGES[name].parse(name, raw) if raw else None
