"""What the evidence's thumbnails cost: an export's size with a gallery of N faces, with and without them.

    python -m bench.evidence_size [--faces 400] [--model PATH]

The gallery is built from generated faces (the astronaut's face, turned, scaled, lit and cropped
differently each time, half of them as her twin) with random unit descriptors: the size of a
thumbnail depends on the face in it, not on the descriptor. Without `--model`, the learner is
`python -m training`'s face learner on a few generated chips, untrained (training does not change its
size). Both exports are written to a temporary folder and their sizes printed side by side.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from model.resources import CHIP_SIZE
from model.strangers import MAX_THUMBNAILS_PER_CLASS, THUMB_SIDE, Gallery, thumbnail
from testkit.imagery import CLASSES, face_crop

__all__ = ["generated_chips", "main"]


def generated_chips(n: int, twin: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` face chips of one test person, each framed and lit a little differently."""
    face = face_crop(twin)
    chips = []
    for _ in range(n):
        turned = face.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
        w, h = turned.size
        m = float(rng.uniform(0.0, 0.12))
        box = (w * m, h * m, w * (1 - m * float(rng.uniform(0.5, 1.5))), h * (1 - m))
        lit = ImageEnhance.Brightness(turned.crop(box)).enhance(float(rng.uniform(0.7, 1.3)))
        chips.append(np.asarray(lit.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.LANCZOS)))
    return chips


def _learner(folder: Path, model: Path | None):
    from fastai.learner import load_learner
    from fastai.vision.all import ImageDataLoaders

    from model.learner import face_learner

    if model is not None:
        return load_learner(model)
    rng = np.random.default_rng(1)
    for name, twin in zip(CLASSES, (False, True), strict=True):
        (folder / "chips" / name).mkdir(parents=True)
        for i, chip in enumerate(generated_chips(4, twin, rng)):
            Image.fromarray(chip).save(folder / "chips" / name / f"{i}.png")
    dls = ImageDataLoaders.from_folder(folder / "chips", valid_pct=0.25, seed=42, bs=2, num_workers=0)
    return face_learner(dls)


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.evidence_size", description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=400, help="faces in the gallery, split between the two classes")
    p.add_argument("--model", type=Path, default=None, help="an exported face learner to carry the gallery")
    args = p.parse_args(argv)
    from model.learner import export_learner

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        learn = _learner(folder, args.model)
        classes = [str(c) for c in learn.dls.vocab]
        per_class = [args.faces // 2, args.faces - args.faces // 2]
        labels = [c for c, n in zip(classes, per_class, strict=True) for _ in range(n)]
        chips = [chip for i, n in enumerate(per_class) for chip in generated_chips(n, i == 1, rng)]
        descriptors = rng.normal(size=(len(labels), 128)).astype(np.float32)
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
        thumbs = [thumbnail(chip) for chip in chips]
        rows = []
        for name, kept in (("without thumbnails", None), ("with thumbnails", thumbs)):
            learn.gallery = Gallery.fit(descriptors, labels, classes, thumbnails=kept)
            export = export_learner(learn, folder / f"{name.replace(' ', '-')}.pkl")
            rows.append((name, export.stat().st_size, len(pickle.dumps(learn.gallery))))
        report = learn.gallery.to_json()["thumbnails"]
        # fastai exports with pickle protocol 2, which writes bytes as latin-1 text: high bytes take two.
        learn.export(folder / "protocol-4.pkl", pickle_protocol=4)
        rows.append(("with thumbnails, pickle protocol 4", (folder / "protocol-4.pkl").stat().st_size, rows[1][2]))
    print(f"gallery of {args.faces} faces ({' + '.join(map(str, per_class))}), thumbnails {THUMB_SIDE} px square")
    print("| | export.pkl | gallery pickled |\n|---|---|---|")
    for name, export_size, gallery_size in rows:
        print(f"| {name} | {_mb(export_size)} | {_mb(gallery_size)} |")
    (_, plain, plain_gallery), (_, shown, shown_gallery) = rows[:2]
    print(f"| difference | +{_mb(shown - plain)} | +{_mb(shown_gallery - plain_gallery)} |")
    mean = report["bytes"] / max(report["count"], 1)
    print(f"thumbnails kept: {report['count']}, {report['bytes']} bytes, {mean / 1024:.1f} KB each on average")
    bound = 2 * MAX_THUMBNAILS_PER_CLASS
    print(f"at the bound ({MAX_THUMBNAILS_PER_CLASS} a class, 2 classes): about {_mb(round(bound * mean))} of JPEG")


if __name__ == "__main__":
    main()
