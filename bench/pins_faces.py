"""How many of the tight face crops in ../shared/datasets/pins give exactly one face.

    python bench/pins_faces.py

Compares the plain HOG detector with our face finder (crop fallback on), in the same run.
Exits cleanly, saying so, when the data set is not beside the checkout.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from model.decode import ImageError, decode_image
from model.faces import FaceFinder, FaceOptions

PINS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "pins"


def count_faces(finder: FaceFinder, files: list[Path]) -> tuple[Counter, float]:
    counts: Counter = Counter()
    start = time.perf_counter()
    for path in files:
        try:
            counts[len(finder.find(decode_image(path.read_bytes())).faces)] += 1
        except ImageError:
            counts["unreadable"] += 1
    return counts, (time.perf_counter() - start) / max(len(files), 1)


def main() -> None:
    files = sorted(PINS.glob("*/*.jpg"))
    if not files:
        print(f"skipped: no photos under {PINS}")
        return
    print(f"{len(files)} face crops from {PINS}")
    for name, options in (("plain detector", FaceOptions(crop_fallback=False)), ("ours", FaceOptions())):
        counts, per_photo = count_faces(FaceFinder(options), files)
        share = counts[1] / len(files)
        print(
            f"{name:15s} one face: {counts[1]} ({share:.1%})  none: {counts[0]}  "
            f"more: {sum(v for k, v in counts.items() if isinstance(k, int) and k > 1)}  "
            f"{per_photo * 1000:.0f} ms/photo"
        )


if __name__ == "__main__":
    main()
