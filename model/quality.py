"""Whether a face can be named at all: too small, side-on, too dark, washed out or blurred, each with its measure.

A face below quality is answered with the reason and what to send instead, never with a guess: the encoder
still gives it a descriptor, but one the gallery and the head read no better than chance (`bench/quality.py`
measures where each measure's accuracy falls off on the pins pairs; the defaults below come from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OK", "QUALITIES", "QualityOptions", "brief", "measure", "reasons", "verdict"]

OK = "ok"
QUALITIES = (OK, "too_small", "side_on", "too_dark", "washed_out", "blurred")

# The middle of a 150 px chip: the face from brows to mouth, without the hair and background the padding adds.
_CENTRE = slice(40, 110)


@dataclass(frozen=True)
class QualityOptions:
    """The lines a face must keep to be named; `off()` lets every face through."""

    # Measured on both pins pairs (`bench/quality.py`, bench/results.md "Face quality"): a line sits where
    # accuracy on held-out faces, made worse a step at a time, falls clearly under that of clean 120 px faces
    # (96.4% and 97.8%); where the pairs differ, the stricter line. No clean or as-sent face is turned away.
    min_width: float = 40.0  # the face's box width in working pixels (the chip is cut from those): 37 px falls
    # No fall-off was seen for turn or darkness: the frontal detector stops finding faces first (the held-out
    # faces reach 0.51 and 0.14, still named right). These lines lie past the last rung that held, so they
    # turn away only faces worse than any measured to be named well.
    max_yaw: float = 0.55  # the nose's offset from between the eyes, in eye-distances
    min_brightness: float = 0.10  # the face's mean grey level, 0 to 1
    max_brightness: float = 0.85  # overexposed twice holds on one pair (0.83), falls on the other (0.89)
    min_sharpness: float = 0.0054  # Laplacian variance over grey-level variance: blur radius 2 holds, 3 falls

    @classmethod
    def off(cls, min_width: float = 0.0) -> QualityOptions:
        """Every face through (or only those at least `min_width` wide): what the bot did before quality verdicts."""
        return cls(min_width, max_yaw=np.inf, min_brightness=-np.inf, max_brightness=np.inf, min_sharpness=-np.inf)


def _grey(chip: np.ndarray) -> np.ndarray:
    return chip[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _yaw(points: np.ndarray) -> float:
    """How far the face is turned: the nose's offset along the line of the eyes, from their midpoint, per eye-distance.

    dlib's 5 points are two corners of each eye and the base of the nose; a face turned side-on brings the
    nose towards one eye (0 is straight on, 0.5 the nose under an eye).
    """
    eyes = points[:4].reshape(2, 2, 2).mean(1)
    axis = eyes[1] - eyes[0]
    span = float(np.hypot(*axis))
    if span < 1e-6:
        return float("inf")
    offset = points[4] - eyes.mean(0)
    return abs(float(offset @ axis)) / (span * span)


def _sharpness(grey: np.ndarray) -> float:
    """The centre's Laplacian variance over its grey-level variance: detail, whatever the contrast or the light."""
    g = grey[_CENTRE, _CENTRE]
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    spread = float(g.var())
    return float(lap.var()) / spread if spread > 1e-6 else 0.0


def measure(chip: np.ndarray, points: np.ndarray, width: float) -> dict[str, float]:
    """The face's measures: `width` (its box, in the user's pixels), `yaw`, `sharpness` and `brightness`."""
    grey = _grey(chip)
    return {
        "width": float(width),
        "yaw": round(_yaw(np.asarray(points, dtype=np.float64)), 4),
        "sharpness": round(_sharpness(grey), 4),
        "brightness": round(float(grey[_CENTRE, _CENTRE].mean()) / 255.0, 4),
    }


# Each verdict: what the face is, and how the photo to send instead would be.
_SAID = {
    "too_small": ("too small", "closer"),
    "side_on": ("turned side-on", "facing the camera"),
    "too_dark": ("too dark", "in better light"),
    "washed_out": ("washed out", "in softer light"),
    "blurred": ("blurred", "sharper"),
}


def brief(quality: str, measures: dict[str, float]) -> str:
    """The verdict in a few words for one line of a group photo's reply: `only 38 pixels wide, send a closer photo`."""
    said, instead = _SAID.get(quality, ("not clear enough", "clearer"))
    if quality == "too_small" and "width" in measures:
        said = f"only {round(measures['width'])} pixels wide"
    return f"{said}, send a photo where it is {instead}" if quality != "too_small" else f"{said}, send a closer photo"


def reasons(qualities: list[str]) -> str:
    """Why several faces were all turned away: `2 are too small and 1 is blurred: send a photo where they are
    closer and sharper.`"""
    counts = {q: qualities.count(q) for q in dict.fromkeys(qualities)}
    parts = [f"{n} {'is' if n == 1 else 'are'} {_SAID.get(q, ('not clear enough', ''))[0]}" for q, n in counts.items()]
    instead = [_SAID[q][1] for q in counts if q in _SAID]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed}: send a photo where they are {' and '.join(instead)}." if instead else f"{listed}."


def verdict(measures: dict[str, float], options: QualityOptions, scale: float = 1.0) -> tuple[str, str | None]:
    """The face's quality and, below quality, the sentence that says why and what to send instead.

    `scale`: working pixels per pixel of the user's photo (a face is as small as the pixels its chip is cut from).
    Checked in this order because each hides the next: a tiny or dark face is never sharp.
    """
    if measures["width"] * scale < options.min_width:
        return "too_small", f"This face is only {round(measures['width'])} pixels wide: send a closer photo."
    if measures["yaw"] > options.max_yaw:
        return "side_on", "This face is turned side-on: send one that faces the camera."
    if measures["brightness"] < options.min_brightness:
        return "too_dark", "This face is too dark: send a photo taken in better light."
    if measures["brightness"] > options.max_brightness:
        return "washed_out", "This face is washed out by the light: send a photo that is less bright."
    if measures["sharpness"] < options.min_sharpness:
        return "blurred", "This face is blurred: send a sharper photo."
    return OK, None
