"""Command line: every face in each photo, its box, label and confidence; JSON for scripts; `--why` its evidence."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .decode import DecodeLimits
from .environment import MODEL_RANGES, SettingsError, environment, model_setting

__all__ = ["main", "read_photo"]

_BATCH = 16  # photos per forward pass: bounds memory on long argument lists


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model", description="Name every face in each photo.")
    p.add_argument("photos", nargs="+", type=Path, help="image files (JPEG, PNG, GIF, WebP, BMP, TIFF)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="exported learner (default: MODEL_PATH, else model/export.pkl)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON list, one object per photo")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write each photo with its faces boxed")
    p.add_argument(
        "--why",
        type=Path,
        metavar="DIR",
        help="write each face's evidence as DIR/<photo>.why-<n>.jpg (its nearest training faces) and say it in words",
    )
    p.add_argument("--threshold", type=float, default=None, help="confidence below which a face is 'not sure'")
    p.add_argument(
        "--stranger-distance",
        type=float,
        default=None,
        help="distance beyond which a face is someone else (default: STRANGER_DISTANCE, else the model's own)",
    )
    return p


def read_photo(path: Path, limits: DecodeLimits) -> bytes | str:
    """The file's bytes, or a sentence saying why it cannot be read; never reads past the cap."""
    try:
        with path.open("rb") as f:
            data = f.read(limits.max_bytes + 1)
    except OSError as e:
        return f"Can't read this file: {e.strerror or e}."
    if len(data) > limits.max_bytes:
        return f"This file is over {limits.max_bytes / (1024 * 1024):.0f} MB, the most I take."
    return data


def _describe(path: Path, answer) -> list[str]:
    from .annotate import face_caption

    if answer.outcome != "ok":
        return [f"{path}: {answer.note}"]
    count = len(answer.faces)
    lines = [f"{path}: {count} face{'s' if count != 1 else ''}"]
    for number, face in enumerate(answer.faces, start=1):
        lines.append(f"  {face_caption(number, face)}  box={list(face.box)}")
    return lines


def _annotate(out_dir: Path, path: Path, data: bytes, answer) -> None:
    from .annotate import annotate

    out_dir.mkdir(parents=True, exist_ok=True)
    annotate(data, answer).save(out_dir / f"{path.stem}.annotated.jpg", quality=90)


def _explain(out_dir: Path, path: Path, evidence) -> list[str]:
    """Write each face's evidence picture; its lines for the text output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for said in evidence:
        if said.picture is not None:
            (out_dir / f"{path.stem}.why-{said.face}.jpg").write_bytes(said.picture)
    return [f"  {said.face}. why: {said.text}" for said in evidence]


def _thresholds(args: argparse.Namespace, settings: dict[str, str]) -> tuple[float | None, float | None]:
    """--threshold and --stranger-distance, else CONFIDENCE_THRESHOLD and STRANGER_DISTANCE; each in its range."""
    chosen = []
    for name, flag, given in (
        ("CONFIDENCE_THRESHOLD", "--threshold", args.threshold),
        ("STRANGER_DISTANCE", "--stranger-distance", args.stranger_distance),
    ):
        if given is not None and not MODEL_RANGES[name].holds(given):
            raise SettingsError(f"{flag} {given:g} is not allowed: it must be {MODEL_RANGES[name]}")
        chosen.append(given if given is not None else model_setting(settings, name))
    return chosen[0], chosen[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 when every photo was read, 1 when some could not be, 2 without a model."""
    args = _parser().parse_args(argv)
    # Imported here so `--help` and argument errors answer at once, without loading torch.
    from .answers import PhotoAnswer
    from .serving import DEFAULT_MODEL_PATH, DEFAULT_THRESHOLD, FaceClassifier, ModelNotFound

    settings = environment()
    model = args.model or Path(settings.get("MODEL_PATH") or DEFAULT_MODEL_PATH)
    try:
        threshold, stranger_distance = _thresholds(args, settings)
    except SettingsError as e:
        print(f"Bad setting: {e}", file=sys.stderr)
        return 2
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    try:
        classifier = FaceClassifier.load(model, threshold=threshold, stranger_distance=stranger_distance)
    except ModelNotFound as e:
        print(e, file=sys.stderr)
        return 2
    results = []
    for start in range(0, len(args.photos), _BATCH):
        paths = args.photos[start : start + _BATCH]
        read = [read_photo(p, classifier.limits) for p in paths]
        photos = [data for data in read if isinstance(data, bytes)]
        answers = iter(_answered(classifier, photos, bool(args.why)))
        for path, data in zip(paths, read, strict=True):
            if isinstance(data, str):
                results.append((path, None, PhotoAnswer("error", error=data, error_kind="FileError"), []))
            else:
                results.append((path, data, *next(answers)))
    for path, data, answer, evidence in results:
        if args.annotate and answer.outcome == "ok":
            _annotate(args.annotate, path, data, answer)
        lines = _explain(args.why, path, evidence) if args.why else []
        if not args.json:
            print("\n".join(_describe(path, answer) + lines))
    if args.json:
        printed = []
        for path, _, answer, evidence in results:
            result = answer.to_json(str(path))
            if args.why:
                for face, said in zip(result["faces"], evidence, strict=False):
                    face["why"] = said.text
            printed.append(result)
        print(json.dumps(printed, indent=2))
    return 1 if any(answer.outcome == "error" for _, _, answer, _ in results) else 0


def _answered(classifier, photos: list[bytes], why: bool) -> list[tuple]:
    """Each photo's answer and its faces' evidence (none unless asked: the photos then share a forward pass)."""
    if not why:
        return [(answer, []) for answer in classifier.classify_many(photos)]
    from .evidence import explain_photo

    explained = [explain_photo(classifier, data) for data in photos]
    return [(e.answer, e.evidence) for e in explained]
