"""How small a face can be and still be found and named: held-out pins faces pasted into 1280x960 photos.

    python -m bench.face_sizes [--pairs Selena_Gomez,Barbara_Palvin ...] [--faces 60] [--per-frame 4]
                               [--sizes 30,40,50,60,70,80,160] [--seed 0] [--write]

Uses `../shared/datasets/pins` (exits cleanly, saying "skipped", when it is absent). For each pair, a model
is trained by `python -m training --from-folder` on the pair's train-split photos (cached under
/tmp/doppelbot-bench/, keyed by the pair and its file list). Its held-out faces (the test and val splits,
one face found in the crop) are each scaled so that the detector's box of the face is N px wide, and pasted,
a few to a photo at seeded random places that do not overlap, onto a 1280x960 textured background, saved as
JPEG at quality 87 (what Telegram sends). Every photo is searched twice, the two finders taking turns:

- before: `FaceOptions(second_look=False, quality=QualityOptions.off(40))`, what the bot did before quality
  verdicts: a first look at 512 px and a retry at 1024 px only when nothing is found, faces under 40 px dropped;
- after: `FaceOptions()`, the defaults (the second look, the quality verdicts).

A pasted face is found when a box shares half its area with it and is under twice as wide; named right when the
model's label is the face's person, the face is known (within the gallery's stranger line) and its quality is
"ok". Also timed: each photo's search, and the second look alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shlex
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from model.answers import is_known
from model.decode import decode_image
from model.faces import FaceFinder, FaceOptions, FaceSearch
from model.quality import OK, QualityOptions

from .report import FACE_SIZES_HEADING, write_section

__all__ = [
    "CACHE",
    "FRAME",
    "SIZES",
    "HeldOut",
    "Pasted",
    "before_options",
    "compose",
    "generated_faces",
    "generated_sizes",
    "held_out",
    "matched",
    "pair_model",
    "search_frames",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
PINS = ROOT.parent / "shared" / "datasets" / "pins"
PAIRS = (("Selena_Gomez", "Barbara_Palvin"), ("Chris_Evans", "Chris_Hemsworth"))
HELD_OUT_SPLITS = ("test", "val")
CACHE = Path("/tmp/doppelbot-bench")
FRAME = (1280, 960)  # what Telegram sends of a 4:3 photo
JPEG_QUALITY = 87
SIZES = (30, 40, 50, 60, 70, 80, 160)  # face widths, px; 160 is the large reference
OLD_MIN_FACE = 40  # the floor the bot had before quality verdicts
MIN_SPAN = 0.5  # a held-out face's box spans at least this share of its crop's width (the pins crops are tight)
NATIVE_SIDE = 400  # a crop pasted at its own size is shrunk to this long side at most, so that four fit


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def before_options() -> FaceOptions:
    """The search the bot did before this issue: no second look, no verdicts, faces under 40 px dropped."""
    return FaceOptions(second_look=False, quality=QualityOptions.off(OLD_MIN_FACE))


@dataclass(frozen=True)
class HeldOut:
    """One held-out face crop: whose it is, the crop, and the detector's box of the face in it."""

    name: str
    crop: Image.Image
    box: tuple[int, int, int, int]  # left, top, right, bottom in the crop's pixels, clipped to the crop
    width: float  # the detector's box width, unclipped (`measures["width"]`): what a face's size is measured by


@dataclass(frozen=True)
class Pasted:
    """A face as placed in a composed photo: whose, and where its box should be found."""

    name: str
    box: tuple[float, float, float, float]
    index: int  # which held-out face


def split_of(path: Path) -> str:
    """The pins split a file came from (`train`, `val` or `test`): the prefix of its name."""
    return path.name.split("__", 1)[0]


def held_out(pair: tuple[str, ...], finder: FaceFinder, pins: Path = PINS) -> list[HeldOut]:
    """The pair's test- and val-split crops in which the finder sees exactly one face, spanning the crop, by person."""
    faces = []
    for name in pair:
        for path in sorted((pins / name).glob("*.jpg")):
            if split_of(path) not in HELD_OUT_SPLITS:
                continue
            found = finder.find(decode_image(path.read_bytes())).faces
            crop = Image.open(path).convert("RGB")
            # A tight crop's face spans most of it: a small box is the detector on a cheek or an ear, and scaling
            # the crop to make that box N px wide would paste a face several times larger.
            if len(found) != 1 or found[0].measures["width"] < MIN_SPAN * crop.width:
                continue
            faces.append(HeldOut(name, crop, found[0].box, found[0].measures["width"]))
    return faces


def generated_faces(finder: FaceFinder) -> list[HeldOut]:
    """Four faces made from scikit-image's astronaut (as `bench/learners.py` makes its photos): no data set needed."""
    from skimage import data

    from .learners import ASTRONAUT_FACE

    face = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE)
    variants = [face, ImageOps.mirror(face), ImageEnhance.Brightness(face).enhance(0.85)]
    variants.append(ImageEnhance.Brightness(ImageOps.mirror(face)).enhance(1.1))
    faces = []
    for im in variants:
        out = io.BytesIO()
        im.save(out, "PNG")
        found = finder.find(decode_image(out.getvalue())).faces
        if len(found) != 1:
            raise RuntimeError(f"the face finder found {len(found)} faces in the astronaut's face")
        faces.append(HeldOut("astronaut", im, found[0].box, found[0].measures["width"]))
    return faces


def generated_sizes(
    frames: int, sizes: tuple[float, ...] = SIZES[:-1], per_frame: int = 4, seed: int = 0
) -> dict[float, dict[str, Tally]]:
    """The astronaut's faces pasted at each width, `frames` photos of `per_frame` each, searched before and after."""
    reference = FaceFinder(FaceOptions(second_look=False, quality=QualityOptions.off()))
    faces = generated_faces(reference)
    shown = [faces[i % len(faces)] for i in range(frames * per_frame)]
    finders = {"before": FaceFinder(before_options()), "after": FaceFinder(FaceOptions())}
    rng = np.random.default_rng(seed)
    return {width: search_frames(shown, finders, width, per_frame, rng) for width in sizes}


def background(rng: np.random.Generator, size: tuple[int, int] = FRAME) -> Image.Image:
    """A seeded textured backdrop: soft colour patches with fine grain, so the detector has edges to refuse."""
    w, h = size
    coarse = Image.fromarray(rng.uniform(50, 205, (6, 8, 3)).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    mid = Image.fromarray(rng.normal(0, 14, (h // 24, w // 24)).astype(np.float32), mode="F")
    texture = np.asarray(mid.resize((w, h), Image.Resampling.BICUBIC))[..., None]
    grain = rng.normal(0, 4, (h, w, 1))
    return Image.fromarray((np.asarray(coarse, dtype=np.float32) + texture + grain).clip(0, 255).astype(np.uint8))


def _places(sizes: list[tuple[int, int]], rng: np.random.Generator, frame: tuple[int, int], gap: int = 12):
    """Top-left corners for rectangles of `sizes` inside `frame`, none overlapping another (seeded, by retries)."""
    placed: list[tuple[int, int, int, int]] = []
    for w, h in sizes:
        for _ in range(500):
            x, y = int(rng.integers(0, frame[0] - w + 1)), int(rng.integers(0, frame[1] - h + 1))
            if all(x + w + gap <= a or a2 + gap <= x or y + h + gap <= b or b2 + gap <= y for a, b, a2, b2 in placed):
                placed.append((x, y, x + w, y + h))
                break
        else:
            raise ValueError(f"{len(sizes)} faces of up to {max(sizes)} px do not fit in a {frame} photo")
    return [(x, y) for x, y, _, _ in placed]


def compose(
    faces: list[HeldOut],
    width: float | None,
    rng: np.random.Generator,
    frame: tuple[int, int] = FRAME,
    indices: list[int] | None = None,
    degrade=None,
) -> tuple[bytes, list[Pasted]]:
    """A JPEG of `frame` with each face scaled to a box `width` px wide at a random place, and where each box is.

    `width` None: each crop as it is (only the few over 400 px shrunk to fit). `degrade`: a function of the whole
    photo (PIL) applied before the JPEG, as a blurred or dark shot would be.
    """
    scaled = []
    for face in faces:
        s = width / face.width if width else min(1.0, NATIVE_SIDE / max(face.crop.size))
        size = (max(1, round(face.crop.width * s)), max(1, round(face.crop.height * s)))
        scaled.append((face, s, face.crop.resize(size, Image.Resampling.LANCZOS)))
    canvas = background(rng, frame)
    pasted = []
    corners = _places([im.size for _, _, im in scaled], rng, frame)
    for k, ((face, s, im), (x, y)) in enumerate(zip(scaled, corners, strict=True)):
        canvas.paste(im, (x, y), _feather(im.size))
        box = (x + face.box[0] * s, y + face.box[1] * s, x + face.box[2] * s, y + face.box[3] * s)
        pasted.append(Pasted(face.name, box, indices[k] if indices else k))
    if degrade is not None:
        canvas = degrade(canvas)
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), pasted


def _feather(size: tuple[int, int]) -> Image.Image:
    """A mask that fades the crop's outer few pixels into the background: a pasted rectangle's hard edge is no
    part of a real photo, and the detector would read it."""
    w, h = size
    edge = max(1, round(min(w, h) * 0.04))
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (edge, edge, max(edge + 1, w - edge), max(edge + 1, h - edge)))
    return mask.filter(ImageFilter.BoxBlur(edge))


def _on_face(found: tuple[int, int, int, int], expected: tuple[float, float, float, float]) -> bool:
    """Whether a found box is the pasted face's: they share half the smaller of them, and neither is twice as wide.

    (A box of the detector's coarsest look can be half as wide again as the face; a whole-frame guess is not it.)
    """
    w = min(found[2], expected[2]) - max(found[0], expected[0])
    h = min(found[3], expected[3]) - max(found[1], expected[1])
    if w <= 0 or h <= 0:
        return False
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (found, expected)]
    ratio = (found[2] - found[0]) / max(1e-6, expected[2] - expected[0])
    return w * h >= 0.5 * min(areas) and 0.5 <= ratio <= 2.0


def matched(search: FaceSearch, pasted: list[Pasted]) -> tuple[list[int | None], int]:
    """For each pasted face, the index of the found face on it (None: missed); and the boxes on no face."""
    taken: set[int] = set()
    out: list[int | None] = []
    for p in pasted:
        hit = next((i for i, f in enumerate(search.faces) if i not in taken and _on_face(f.box, p.box)), None)
        if hit is not None:
            taken.add(hit)
        out.append(hit)
    return out, len(search.faces) - len(taken)


@dataclass
class Tally:
    """One finder at one face width: what became of the pasted faces, and the time each photo took."""

    faces: int = 0
    found: int = 0
    named: int = 0  # label right, known, quality ok: what the bot answers right
    right: int = 0  # found, label right and known, whatever the verdict (what naming it would have got)
    turned_away: Counter = field(default_factory=Counter)  # quality -> faces found but not named for it
    turned_away_right: int = 0  # of those, the ones the model would have named right
    stray: int = 0  # boxes on no pasted face
    seconds: list[float] = field(default_factory=list)  # each photo's search (decode included)
    second_look: list[float] = field(default_factory=list)  # the second look, on photos where it ran
    records: list[dict] = field(default_factory=list)  # one per found face: measures, quality, scale, right


def search_frames(
    faces: list[HeldOut],
    finders: dict[str, FaceFinder],
    width: float | None,
    per_frame: int,
    rng: np.random.Generator,
    classifier=None,
    degrade=None,
) -> dict[str, Tally]:
    """Paste `faces` at `width`, `per_frame` to a photo, and search each photo with every finder in turn.

    With a classifier, the faces found are named too (all of a finder's chips in one batch).
    """
    tallies = {name: Tally() for name in finders}
    found_faces: dict[str, list[tuple[str, object, float]]] = {name: [] for name in finders}
    order = list(finders.items())
    for k, start in enumerate(range(0, len(faces), per_frame)):
        group = list(range(start, min(start + per_frame, len(faces))))
        jpeg, pasted = compose([faces[i] for i in group], width, rng, indices=group, degrade=degrade)
        for name, finder in order[k % len(order) :] + order[: k % len(order)]:  # taking turns
            t = tallies[name]
            started = time.perf_counter()
            image = decode_image(jpeg)
            search = finder.find(image)
            t.seconds.append(time.perf_counter() - started)
            if search.second_look_s:
                t.second_look.append(search.second_look_s)
            hits, stray = matched(search, pasted)
            t.faces += len(pasted)
            t.stray += stray
            for p, hit in zip(pasted, hits, strict=True):
                if hit is not None:
                    t.found += 1
                    found_faces[name].append((p.name, search.faces[hit], image.scale, p.index))
    if classifier is not None:
        for name, t in tallies.items():
            _name_faces(classifier, found_faces[name], t)
    return tallies


def _name_faces(classifier, found: list[tuple], t: Tally) -> None:
    if not found:
        return
    probs, distances, _ = classifier.identify([face.chip for _, face, _, _ in found])
    labels = np.array(classifier.classes)[probs.argmax(1)]
    for k, (truth, face, scale, index) in enumerate(found):
        distance = None if distances is None or not np.isfinite(distances[k]) else float(distances[k])
        known = is_known(distance, classifier.stranger_distance)
        right = bool(labels[k] == truth) and known
        t.right += right
        if face.quality == OK:
            t.named += right
        else:
            t.turned_away[face.quality] += 1
            t.turned_away_right += right
        t.records.append(
            {
                "index": index,
                "measures": face.measures,
                "scale": scale,
                "quality": face.quality,
                "right": right,
                "known": known,
            }
        )


def pair_model(pair: tuple[str, ...], pins: Path = PINS, cache: Path = CACHE) -> Path:
    """The pair's model from `python -m training --from-folder` on its train-split photos, trained once and cached."""
    from training.cli import main as training_main

    train = sorted(p for name in pair for p in (pins / name).glob("*.jpg") if split_of(p) == "train")
    key = hashlib.sha256("\n".join(f"{p.parent.name}/{p.name}" for p in train).encode()).hexdigest()[:12]
    root = cache / f"{'_'.join(pair)}-{key}"
    model = root / "export.pkl"
    if model.is_file():
        return model
    log(f"{' vs '.join(pair)}: training on the {len(train)} train-split photos (cached in {root})")
    work = root / f"work-{os.getpid()}"
    for path in train:
        (work / "photos" / path.parent.name).mkdir(parents=True, exist_ok=True)
        (work / "photos" / path.parent.name / path.name).symlink_to(path.resolve())
    partial = work / "export.pkl"
    args = ["--from-folder", str(work / "photos"), "--work", str(work), "--out", str(partial), "--no-feedback"]
    with contextlib.redirect_stdout(sys.stderr):  # its summary is progress here; stdout holds the tables
        code = training_main(args)
    if code or not partial.is_file():
        raise RuntimeError(f"python -m training failed ({code}) for {pair}")
    os.replace(partial, model)  # whole, or not at all: another run may be reading the cache
    return model


def _share(n: int, of: int) -> str:
    return f"{n}/{of} ({n / of:.0%})" if of else "-"


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} ms (p95 {np.percentile(values, 95) * 1000:.0f})"


def size_table(results: dict[float, dict[str, Tally]], named: bool = True) -> str:
    """One row per face width: faces found and named right, before and after, and what the verdicts turned away."""
    head = "| face width | found: before | found: after |"
    rule = "|---|---|---|"
    if named:
        head += (
            " named right: before | named right: after | found after but turned away (why; of them, the "
            "model would have named right) | right and known among the found, whatever the verdict: after |"
        )
        rule += "---|---|---|---|"
    lines = [head + " boxes on no face: before / after |", rule + "---|"]
    for width, t in results.items():
        b, a = t["before"], t["after"]
        row = f"| {width:g} px | {_share(b.found, b.faces)} | {_share(a.found, a.faces)} |"
        if named:
            why = ", ".join(f"{q} {n}" for q, n in a.turned_away.most_common()) or "none"
            away = sum(a.turned_away.values())
            row += (
                f" {_share(b.named, b.faces)} | {_share(a.named, a.faces)} | {away} ({why}; {a.turned_away_right}) "
                f"| {_share(a.right, a.found)} |"
            )
        lines.append(row + f" {b.stray} / {a.stray} |")
    return "\n".join(lines)


def timing_lines(results: dict[float, dict[str, Tally]]) -> list[str]:
    """Per photo: the search before and after, and the second look alone, over every width."""
    before = [s for t in results.values() for s in t["before"].seconds]
    after = [s for t in results.values() for s in t["after"].seconds]
    second = [s for t in results.values() for s in t["after"].second_look]
    return [
        f"- Search per 1280x960 photo (decode, detection, landmarks, chips and verdicts), median of {len(before)}: "
        f"before {_ms(before)}, after {_ms(after)}.",
        f"- The second look alone: {_ms(second)}, run on {len(second)} of {len(after)} photos (the first look found "
        "none or several faces).",
    ]


def one_face_timing(face: HeldOut, finders: dict[str, FaceFinder], runs: int, width: float = 300) -> str:
    """A 1280x960 photo with one large face, which the first look finds: before and after, alternating."""
    jpeg, _ = compose([face], width, np.random.default_rng(1))
    times: dict[str, list[float]] = {name: [] for name in finders}
    ran = 0
    for k in range(runs + 1):
        for name, finder in list(finders.items())[:: 1 if k % 2 else -1]:
            started = time.perf_counter()
            search = finder.find(decode_image(jpeg))
            if k:  # the first round warms up
                times[name].append(time.perf_counter() - started)
                ran += bool(search.second_look_s)
    cells = ", ".join(f"{name} {_ms(values)}" for name, values in times.items())
    return f"- One {width:g} px face (the first look finds it), median of {runs}: {cells}; second look ran {ran} times."


def balanced(faces: list[HeldOut], n: int, seed: int) -> list[HeldOut]:
    """Up to `n` faces, as many of each person, seeded, in a mixed order (so each photo mixes people)."""
    rng = np.random.default_rng(seed)
    names = sorted({f.name for f in faces})
    per = n // max(1, len(names))
    chosen = []
    for name in names:
        own = [f for f in faces if f.name == name]
        chosen += [own[i] for i in sorted(rng.permutation(len(own))[:per])]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def pins_parser(prog: str, description: str, faces_per: str) -> argparse.ArgumentParser:
    """The options both pins benches take: which pairs, how many faces, the seed, and --write."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--pairs", nargs="*", help="NAME,NAME pairs (default: both pairs in pins)")
    parser.add_argument("--faces", type=int, default=60, help=f"held-out faces per pair and {faces_per} (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pins", type=Path, default=PINS, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=f"put the tables in {RESULTS.name}")
    return parser


def chosen_pairs(args: argparse.Namespace) -> list[tuple[str, ...]] | None:
    """The pairs `--pairs` names (default: both), or None, having said "skipped", when their photos are absent."""
    pairs = [tuple(p.split(",")) for p in args.pairs] if args.pairs else list(PAIRS)
    if not all((args.pins / name).is_dir() for pair in pairs for name in pair):
        print(f"skipped: the pins photos are not under {args.pins}")
        return None
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = pins_parser("python -m bench.face_sizes", __doc__.splitlines()[0], "width")
    parser.add_argument("--per-frame", type=int, default=4, help="faces pasted into each photo (default 4)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="face widths in px, comma-separated")
    args = parser.parse_args(argv)
    if (pairs := chosen_pairs(args)) is None:
        return 0
    import torch

    from model.serving import FaceClassifier

    torch.set_num_threads(1)
    sizes = [float(s) for s in args.sizes.split(",")]
    finders = {"before": FaceFinder(before_options()), "after": FaceFinder(FaceOptions())}
    reference = FaceFinder(FaceOptions(second_look=False, quality=QualityOptions.off()))
    parts = []
    for pair in pairs:
        classifier = FaceClassifier.load(pair_model(pair, args.pins))
        faces = held_out(pair, reference, args.pins)
        chosen = balanced(faces, args.faces, args.seed)
        log(f"{' vs '.join(pair)}: {len(chosen)} of {len(faces)} held-out faces at {len(sizes)} widths")
        rng = np.random.default_rng(args.seed)
        results = {}
        for width in sizes:
            results[width] = search_frames(chosen, finders, width, args.per_frame, rng, classifier)
            log(f"  {width:g} px: found {results[width]['before'].found} before, {results[width]['after'].found} after")
        parts.append(
            f"### {' vs '.join(pair)}\n\n{len(chosen)} held-out faces ({', '.join(HELD_OUT_SPLITS)} splits) per "
            f"width, {args.per_frame} to a photo; the model trained on the pair's train split.\n\n"
            + size_table(results)
            + "\n\n"
            + "\n".join([*timing_lines(results), one_face_timing(chosen[0], finders, 10)])
        )
    body = "\n\n".join(parts)
    print(body)
    if args.write:
        command = shlex.join(["python", "-m", "bench.face_sizes", *(argv if argv is not None else sys.argv[1:])])
        date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
        intro = (
            f"`{command}`, {date}, {len(os.sched_getaffinity(0))} cores, load average at start {load}. "
            "Before: the search the bot had (first look at 512 px, a retry at 1024 px only when nothing is "
            "found, faces under 40 px dropped). After: `FaceOptions()` (the second look, quality verdicts). "
            "Named right: right label, known, quality ok."
        )
        write_section(RESULTS, FACE_SIZES_HEADING, f"{FACE_SIZES_HEADING}\n\n{intro}\n\n{body}")
        log(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
