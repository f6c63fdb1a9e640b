"""Model package timings: our encoder against dlib's, per-photo stages, cold start.

    python bench/model_timings.py [--model PATH] [--runs 20]

Prints each figure beside the one it is compared with, measured in the same run. Without
`--model` it exports an untrained two-class face learner to a temporary folder (accuracy does not
matter for timing). Needs scikit-image (the dev extra) for its test photo.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image
from skimage import data

from model.decode import decode_image
from model.encoder import load_face_encoder
from model.faces import FaceFinder
from model.resources import face_encoder_dat_path
from model.serving import FaceClassifier

FACE = (150, 50, 290, 195)  # the astronaut's face with a margin


def photo(n_faces: int, width: int = 1280, height: int = 853) -> bytes:
    """A 1280 px JPEG with `n_faces` faces, as Telegram would send it."""
    face = Image.fromarray(data.astronaut()).crop(FACE)
    canvas = Image.new("RGB", (width, height), (196, 204, 188))
    slot = width // n_faces
    size = min(slot - 40, 300)
    face = face.resize((size, round(size * face.height / face.width)), Image.Resampling.LANCZOS)
    for i in range(n_faces):
        canvas.paste(face, (i * slot + (slot - size) // 2, (height - face.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def median_ms(fn, runs: int, warm_ups: int = 1) -> float:
    """Median milliseconds of `runs` calls of `fn`, after `warm_ups` untimed ones (kernels, allocator pools)."""
    for _ in range(warm_ups):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def test_chips(finder: FaceFinder, n: int) -> list[np.ndarray]:
    real = [f.chip for f in finder.find(decode_image(photo(4))).faces]
    rng = np.random.default_rng(0)
    return (real + [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(n)])[:n]


def encoder_against_dlib(finder: FaceFinder, runs: int) -> None:
    chips = test_chips(finder, 16)
    dlib_encoder = dlib.face_recognition_model_v1(str(face_encoder_dat_path()))
    ours = load_face_encoder().eval().to(memory_format=torch.channels_last)

    def batch(cs):
        x = torch.from_numpy(np.stack(cs)).permute(0, 3, 1, 2).float() / 255
        return x.contiguous(memory_format=torch.channels_last)

    with torch.inference_mode():
        got = ours(batch(chips)).numpy()
        expected = np.array([dlib_encoder.compute_face_descriptor(c) for c in chips])
        diff = np.abs(got - expected).max()
        dlib_ms = median_ms(lambda: dlib_encoder.compute_face_descriptor(chips[0]), runs)
        b1 = median_ms(lambda: ours(batch(chips[:1])), runs)
        b16 = median_ms(lambda: ours(batch(chips)), runs) / 16
    print(f"descriptors vs dlib on {len(chips)} chips: max abs difference {diff:.2e}")
    print(f"encoder per face: dlib {dlib_ms:.1f} ms | ours batch 1 {b1:.1f} ms ({dlib_ms / b1:.1f}x faster)")
    print(f"                  ours batch 16 {b16:.1f} ms/face ({dlib_ms / b16:.1f}x faster than dlib)")


def stages(classifier: FaceClassifier, runs: int) -> None:
    print(f"\nper-photo stages, 1280x853 JPEG, median of {runs} runs (ms):")
    print("faces  decode  detect  chips  transforms  encoder  head   total  (wall)")
    for n in (1, 4):
        jpeg = photo(n)
        rows, walls = [], []
        classifier.classify(jpeg)
        for _ in range(runs):
            start = time.perf_counter()
            answer = classifier.classify(jpeg)
            walls.append(time.perf_counter() - start)
            assert len(answer.faces) == n, answer
            rows.append(answer.timings)
        keys = ("decode", "detect", "chips", "transforms", "encoder", "head")
        med = {k: statistics.median(r[k] for r in rows) * 1000 for k in keys}
        total = sum(med.values())
        cells = "  ".join(f"{med[k]:6.1f}" for k in keys)
        print(f"{n:5d}  {cells}  {total:6.1f}  ({statistics.median(walls) * 1000:.1f})")


def cold_start(model: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.jpg"
        path.write_bytes(photo(1))
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "model", str(path), "--model", str(model)], capture_output=True, text=True
        )
        elapsed = time.perf_counter() - start
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-300:]}"
    print(f"\ncold start, `python -m model one.jpg` to its answer: {elapsed:.2f} s ({status})")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    print(f"  of which a bare `import torch` takes {time.perf_counter() - start:.2f} s")


def untrained_model(folder: Path, finder: FaceFinder) -> Path:
    from fastai.vision.all import ImageDataLoaders

    from model.learner import export_learner, face_learner

    chips = test_chips(finder, 8)
    for cls in ("A", "B"):
        (folder / cls).mkdir()
        for i, chip in enumerate(chips):
            Image.fromarray(chip).save(folder / cls / f"{i}.png")
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=4, num_workers=0)
    return export_learner(face_learner(dls), folder / "export.pkl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dlib {dlib.__version__}")
    finder = FaceFinder()
    encoder_against_dlib(finder, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or untrained_model(Path(tmp), finder)
        stages(FaceClassifier.load(model), args.runs)
        cold_start(model)


if __name__ == "__main__":
    main()
