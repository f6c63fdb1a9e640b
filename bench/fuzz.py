"""Fuzzing the way in: mutated JPEG, PNG, GIF and WebP bytes through decoding and the face pipeline.

    python -m bench.fuzz [--minutes 10] [--inputs N] [--seed S] [--model PATH] [--save DIR]
    python -m bench.fuzz --replay DIR [--model PATH]

Every input must get an answer: `decode_image` either gives an RGB image or raises an `ImageError` (a
sentence for the user), the face finder never raises, chips and boxes are well formed, and with
`--model` the classifier's answer is never the "something went wrong" of an unexpected exception. Any
other outcome is a failure, saved to `--save` (default `fuzz-failures/`) for `--replay` to try again. A
watchdog ends the run with every thread's traceback if one input takes longer than `--hang` seconds.

This is the long run, by hand; tests/test_fuzz.py runs the same seeds, mutations and checks briefly
under Hypothesis in CI. Seeds are small photos of a face (scikit-image's astronaut), so mutations reach
the detector, the landmarks and the chips, not only the decoders.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import hashlib
import io
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from model.answers import PhotoAnswer
from model.decode import DecodedImage, ImageError, decode_image
from model.encoder import CHIP_SIZE
from model.faces import FaceFinder

__all__ = ["OPERATIONS", "FuzzFailure", "Mutation", "examine", "examine_answer", "mutate", "random_mutations", "seeds"]

ASTRONAUT_FACE = (120, 20, 320, 220)  # the astronaut's face with a margin the detector needs


class FuzzFailure(AssertionError):
    """An input that got no proper answer: an unexpected exception, or a malformed result."""


@cache
def seeds() -> dict[str, bytes]:
    """Small, valid photos of one face in the formats people send, with the features parsers trip on."""
    from skimage import data

    face = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE)

    def save(im: Image.Image, fmt: str, **params) -> bytes:
        out = io.BytesIO()
        im.save(out, fmt, **params)
        return out.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the decoder must turn it upright
    turned = face.transpose(Image.Transpose.ROTATE_90)
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 200))
    grey16 = Image.fromarray((np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        "jpeg": save(face, "JPEG", quality=85),
        "jpeg-progressive-exif": save(turned, "JPEG", quality=80, progressive=True, exif=exif),
        "png": save(face, "PNG"),
        "png-rgba": save(rgba, "PNG"),
        "png-16bit-grey": save(grey16, "PNG"),
        "png-palette": save(face.quantize(64), "PNG", transparency=0),
        "gif-animated": save(frames[0].quantize(128), "GIF", save_all=True, append_images=frames[1:], duration=100),
        "webp": save(face, "WEBP", quality=80),
        "webp-lossless-alpha": save(rgba, "WEBP", lossless=True),
    }


# -- mutations ---------------------------------------------------------------------------------

# Values that make parsers take unusual paths: zero, one, sign boundaries, all bits set.
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
OPERATIONS = ("flip", "byte", "interesting", "truncate", "delete", "duplicate", "insert", "splice")
HEADER = 96  # most length and size fields of these formats lie in the first bytes


@dataclass(frozen=True)
class Mutation:
    """One edit of the bytes. Positions and values are taken modulo what fits, so any integers are valid."""

    op: str
    at: int  # where (modulo the length)
    value: int  # a byte, a bit, an index into INTERESTING, or a seed to splice in
    size: int = 1  # how many bytes the edit spans


def mutate(data: bytes, mutations: Sequence[Mutation], pool: Sequence[bytes] = ()) -> bytes:
    """`data` with every mutation applied in turn; `pool` is what "splice" takes its tail from."""
    out = bytearray(data)
    for m in mutations:
        if not out:
            break
        at = m.at % len(out)
        size = max(1, m.size)
        if m.op == "flip":
            out[at] ^= 1 << (m.value % 8)
        elif m.op == "byte":
            out[at] = m.value % 256
        elif m.op == "interesting":
            value = INTERESTING[m.value % len(INTERESTING)]
            width = (1, 2, 4)[size % 3]
            order = "big" if m.value % 2 else "little"
            out[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, order)
        elif m.op == "truncate":
            del out[at:]
        elif m.op == "delete":
            del out[at : at + size]
        elif m.op == "duplicate":
            chunk = out[at : at + size]
            where = (m.value * 7919) % len(out)
            out[where:where] = chunk
        elif m.op == "insert":
            out[at:at] = bytes((m.value + i * 31) % 256 for i in range(min(size, 64)))
        elif m.op == "splice" and pool:
            other = pool[m.value % len(pool)]
            out[at:] = other[m.value % len(other) :]
        else:
            raise ValueError(f"unknown mutation {m.op!r}")
    return bytes(out)


def random_mutations(rng: random.Random, length: int) -> list[Mutation]:
    """One to eight edits, half of them in the header, as a mutational fuzzer makes them."""
    edits = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 8))):
        op = rng.choice(OPERATIONS)
        at = rng.randrange(min(HEADER, length)) if rng.random() < 0.5 else rng.randrange(max(length, 1))
        size = rng.choice((1, 2, 4, 8, 64, 512))
        edits.append(Mutation(op, at, rng.randrange(1 << 32), size))
    return edits


# -- the checks --------------------------------------------------------------------------------


def _check_image(image: DecodedImage) -> None:
    pixels = image.pixels
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise FuzzFailure(f"decode_image gave pixels {pixels.dtype} {pixels.shape}")
    if not 0 < image.scale <= 1.0 + 1e-6:
        raise FuzzFailure(f"decode_image gave scale {image.scale}")


def examine(data: bytes, finder: FaceFinder) -> str:
    """Decode and find faces as the bot does; the outcome (an ImageError's name, "faces" or "no_face").

    Raises FuzzFailure for anything that would reach a user as a crash or a wrong box.
    """
    try:
        image = decode_image(data)
    except ImageError as e:
        if not str(e).strip():
            raise FuzzFailure(f"{type(e).__name__} without a message for the user") from e
        return type(e).__name__
    except Exception as e:
        raise FuzzFailure(f"decode_image raised {type(e).__name__}: {e}") from e
    _check_image(image)
    try:
        search = finder.find(image)
    except Exception as e:
        raise FuzzFailure(f"FaceFinder.find raised {type(e).__name__}: {e}") from e
    width, height = image.original_size
    for face in search.faces:
        if face.chip.shape != (CHIP_SIZE, CHIP_SIZE, 3) or face.chip.dtype != np.uint8:
            raise FuzzFailure(f"a chip of {face.chip.dtype} {face.chip.shape}")
        left, top, right, bottom = face.box
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise FuzzFailure(f"box {face.box} outside or inside out in a {width}x{height} photo")
    return "faces" if search.faces else "no_face"


def examine_answer(data: bytes, classifier) -> PhotoAnswer:
    """The whole serving path (`FaceClassifier.classify`): every input gets an answer a user can read."""
    answer = classifier.classify(data)
    if answer.outcome not in ("ok", "no_face", "error"):
        raise FuzzFailure(f"outcome {answer.outcome!r}")
    if answer.outcome == "error" and answer.error_kind == "Internal":
        raise FuzzFailure("an unexpected exception inside the classifier (its log has the traceback)")
    if answer.outcome == "error" and not answer.note:
        raise FuzzFailure(f"an error without words for the user: {answer}")
    if answer.outcome == "ok" and not answer.faces:
        raise FuzzFailure("outcome ok without faces")
    return answer


# -- the long run ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--inputs", type=int, help="stop after this many inputs instead")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    p.add_argument("--model", type=Path, help="also run the classifier's serving path with this learner")
    p.add_argument("--save", type=Path, default=Path("fuzz-failures"), help="where failing inputs are written")
    p.add_argument("--hang", type=float, default=60.0, help="seconds one input may take before the run is ended")
    p.add_argument("--replay", type=Path, help="check the saved inputs in this folder instead of fuzzing")
    return p.parse_args(argv)


def _check(data: bytes, finder: FaceFinder, classifier) -> str:
    outcome = examine(data, finder)
    if classifier is not None:
        examine_answer(data, classifier)
    return outcome


def replay(folder: Path, finder: FaceFinder, classifier) -> int:
    """Check every saved input again (after a fix, they should all pass)."""
    failed = 0
    for path in sorted(folder.glob("*.bin")):
        try:
            print(f"{path.name}: {_check(path.read_bytes(), finder, classifier)}")
        except FuzzFailure as e:
            failed += 1
            print(f"{path.name}: FAILURE {e}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    pool = seeds()
    names = sorted(pool)
    finder = FaceFinder()
    classifier = None
    if args.model is not None:
        from model.serving import FaceClassifier

        classifier = FaceClassifier.load(args.model)
    if args.replay is not None:
        return replay(args.replay, finder, classifier)
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[tuple[str, Path]] = []
    slowest = (0.0, "")
    deadline = time.monotonic() + args.minutes * 60
    count = 0
    print(f"fuzzing with seed {seed} ({len(names)} seed photos{', with the classifier' if classifier else ''})")
    while (args.inputs is None and time.monotonic() < deadline) or (args.inputs is not None and count < args.inputs):
        name = rng.choice(names)
        data = mutate(pool[name], random_mutations(rng, len(pool[name])), [pool[n] for n in names])
        faulthandler.dump_traceback_later(args.hang, exit=True)
        started = time.perf_counter()
        try:
            outcome = _check(data, finder, classifier)
        except FuzzFailure as e:
            args.save.mkdir(parents=True, exist_ok=True)
            path = args.save / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
            path.write_bytes(data)
            failures.append((f"{name}: {e}", path))
            outcome = "FAILURE"
        finally:
            faulthandler.cancel_dump_traceback_later()
        took = time.perf_counter() - started
        slowest = max(slowest, (took, name))
        outcomes[outcome] += 1
        count += 1
        if count % 1000 == 0:
            print(f"  {count} inputs, {outcomes['FAILURE']} failures", flush=True)
    print(f"{count} inputs tried (seed {seed}); slowest {slowest[0] * 1000:.0f} ms (from {slowest[1]})")
    for outcome, n in outcomes.most_common():
        print(f"  {outcome}: {n}")
    for message, path in failures[:20]:
        print(f"FAILURE {message} -> {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
