"""Reduced JPEG decoding against the full decode: the same faces, boxes and names on real photos.

    python bench/decode_check.py [--per-person 60]

The face finder decodes a large JPEG only as finely as it needs (libjpeg's 1/2, 1/4, 1/8 scaling):
its first look at 512 px; the chips of the faces found are cut at working resolution.
This runs the pins photos of both look-alike pairs through the finder both ways, as they come (mostly
small: nothing is reduced) and made into the large photos phones send, and prints, side by side:
faces found, the largest box difference, the descriptor distance between the two ways' chips, and
whether a logistic regression fitted on the pair's own descriptors names each face the same. Also
the time per photo. Needs ../shared/datasets/pins (exits cleanly, saying so, when it is absent).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from bench.accuracy import PAIRS, PINS
from model.decode import decode_image
from model.encoder import load_face_encoder
from model.faces import FaceFinder

BACKGROUND = (128, 128, 128)


def as_phone_photo(data: bytes, how: str) -> bytes:
    """The photo as it comes, enlarged 4x alone, or enlarged 2x in a 1280x960 frame."""
    if how == "as it comes":
        return data
    im = Image.open(io.BytesIO(data)).convert("RGB")
    factor = 4 if how == "4x alone" else 2
    im = im.resize((im.width * factor, im.height * factor), Image.Resampling.LANCZOS)
    if how != "4x alone":
        frame = Image.new("RGB", (max(1280, im.width), max(960, im.height)), BACKGROUND)
        frame.paste(im, ((frame.width - im.width) // 2, (frame.height - im.height) // 3))
        im = frame
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


def search(finder: FaceFinder, data: bytes, reduced: bool) -> tuple[list, float]:
    start = time.perf_counter()
    image = decode_image(data, first_side=finder.options.detect_side if reduced else None)
    faces = finder.find(image).faces
    return faces, time.perf_counter() - start


def describe(encoder: torch.nn.Module, chips: list[np.ndarray]) -> np.ndarray:
    if not chips:
        return np.zeros((0, 128), dtype=np.float32)
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div(255)
    with torch.inference_mode():
        return encoder(x).numpy()


def check_pair(pair: tuple[str, str], per_person: int, finder: FaceFinder, encoder) -> list[str]:
    files = [p for name in pair for p in sorted((PINS / name).glob("*.jpg"))[:per_person]]
    labels = np.array([p.parent.name for p in files])
    # The names come from a classifier fitted on the pair's own photos as they come, full decode.
    found = [search(finder, p.read_bytes(), reduced=False)[0] for p in files]
    keep = [i for i, faces in enumerate(found) if len(faces) == 1]
    names = LogisticRegression(max_iter=2000).fit(describe(encoder, [found[i][0].chip for i in keep]), labels[keep])
    rows = []
    for how in ("as it comes", "2x in a frame", "4x alone"):
        same_count = box_px = compared = same_name = 0
        distances, times = [], {False: [], True: []}
        for path in files:
            data = as_phone_photo(path.read_bytes(), how)
            (full, t_full), (red, t_red) = search(finder, data, False), search(finder, data, True)
            times[False].append(t_full)
            times[True].append(t_red)
            same_count += len(full) == len(red)
            if len(full) != len(red) or not full:
                continue
            pairs = zip(full, red, strict=True)
            box_px = max(box_px, *(abs(a - b) for f, r in pairs for a, b in zip(f.box, r.box, strict=True)))
            d_full, d_red = describe(encoder, [f.chip for f in full]), describe(encoder, [f.chip for f in red])
            distances += list(np.linalg.norm(d_full - d_red, axis=1))
            same_name += int((names.predict(d_full) == names.predict(d_red)).sum())
            compared += len(full)
        size = Image.open(io.BytesIO(as_phone_photo(files[0].read_bytes(), how))).size
        rows.append(
            f"| {' vs '.join(pair)}, {how} (e.g. {size[0]}x{size[1]}) | {same_count}/{len(files)} "
            f"| {box_px} px | {statistics.median(distances):.4f} / {max(distances):.4f} "
            f"| {same_name}/{compared} | {statistics.median(times[False]) * 1000:.1f} ms "
            f"| {statistics.median(times[True]) * 1000:.1f} ms |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-person", type=int, default=60, help="photos of each person (default 60)")
    args = parser.parse_args()
    if not PINS.is_dir():
        print(f"skipped: no photos under {PINS}")
        return 0
    torch.set_num_threads(1)
    finder, encoder = FaceFinder(), load_face_encoder().eval()
    print(
        "| photos | same number of faces | largest box difference | descriptor distance, median / max "
        "| same name | full decode, median | reduced, median |"
    )
    print("|---|---|---|---|---|---|---|")
    for pair in PAIRS:
        for row in check_pair(pair, args.per_person, finder, encoder):
            print(row, flush=True)
    print(
        "\nDescriptor distances for scale: one person's faces lie about 0.5 apart, look-alikes 0.68; "
        "the stranger line is about 0.51."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
