"""Where each face-quality measure's accuracy falls off, on held-out pins faces, and what each verdict turns away.

    python -m bench.quality [--pairs Selena_Gomez,Barbara_Palvin ...] [--faces 60] [--seed 0] [--write]

Uses `../shared/datasets/pins` (exits cleanly, saying "skipped", when it is absent) and the pair models of
`bench/face_sizes.py` (trained on each pair's train split, cached). The pair's held-out faces are pasted into
1280x960 photos (JPEG 87, as `bench/face_sizes.py` makes them) as they are ("as sent") and at a face width of
120 px ("clean", the reference: every held-out face), then degraded: the whole photo blurred (Gaussian radii),
darkened or brightened (gamma), overexposed (a gain, clipped), or the face made smaller (30 to 80 px). Each
photo is searched with the default finder, every verdict off, so every face found is measured
(`Face.measures`: width, yaw, sharpness, brightness) and named by the pair's model (right: the face's person,
and known).

For each measure, in the order the verdicts are checked (width, yaw, brightness, sharpness), the faces that
pass the lines before it are cut into bins of equal count along it; walking in from the good end, the first
bin whose accuracy is clearly under the clean faces' (5 points or more under, and its 95% Wilson interval
below) sets the line: the edge between it and the bin above. A line that holds on both pairs is the
stricter of the two. Then, per verdict, the faces each set of lines (the defaults, and the suggested ones)
lets through and turns away, and the accuracy of each group.
"""

from __future__ import annotations

import math
import shlex
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from model.faces import FaceFinder, FaceOptions
from model.quality import OK, QUALITIES, QualityOptions, verdict

from .face_sizes import HeldOut, balanced, chosen_pairs, held_out, pair_model, pins_parser, search_frames
from .report import QUALITY_HEADING, write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
PINS = ROOT.parent / "shared" / "datasets" / "pins"
PAIRS = (("Selena_Gomez", "Barbara_Palvin"), ("Chris_Evans", "Chris_Hemsworth"))
CLEAN_WIDTH = 120.0
PER_FRAME = 4
MIN_BIN = 20  # faces per bin, at least
CLEARLY_UNDER = 0.05  # a bin this far under the clean faces' accuracy (and its interval under it) is a fall-off


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _gamma(g: float) -> Callable[[Image.Image], Image.Image]:
    lut = [round(255 * (v / 255) ** g) for v in range(256)]
    return lambda im: im.point(lut * 3)


def _gain(k: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.point([min(255, round(v * k)) for v in range(256)] * 3)


def _blur(radius: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


@dataclass(frozen=True)
class Condition:
    """One way the held-out faces are shown: a face width (None: as sent), what is done to the photo, and the line
    it is evidence for (its measure's ladder: the conditions in order of that measure, away from the clean faces)."""

    name: str
    width: float | None
    degrade: Callable[[Image.Image], Image.Image] | None = None
    line: str | None = None  # the QualityOptions field
    strangers: bool = False  # also shown with faces of people outside the pair


CONDITIONS = (
    Condition("clean, 120 px (reference)", CLEAN_WIDTH, strangers=True),
    Condition("as sent (each crop at its own size)", None),
    *(Condition(f"blurred, radius {r:g}", CLEAN_WIDTH, _blur(r), "min_sharpness", r == 3) for r in (1, 1.5, 2, 3, 4)),
    *(Condition(f"darker, gamma {g:g}", CLEAN_WIDTH, _gamma(g), "min_brightness", g == 4) for g in (2, 3, 4, 5)),
    *(Condition(f"brighter, gamma {g:g}", CLEAN_WIDTH, _gamma(g), "max_brightness") for g in (0.5, 0.33)),
    *(Condition(f"overexposed, x{k:g}", CLEAN_WIDTH, _gain(k), "max_brightness", k == 2.5) for k in (1.5, 2, 2.5, 3)),
    *(Condition(f"{w} px wide", float(w), line="min_width", strangers=True) for w in (30, 40, 50, 60, 70, 80)),
)
REFERENCE = CONDITIONS[0].name
NATURAL = {REFERENCE, CONDITIONS[1].name}
STRANGERS = ("Megan_Fox", "Alexandra_Daddario")
# Each line: the measure it reads, and which way faces get worse.
LINES = {
    "min_width": ("width", "min"),
    "max_yaw": ("yaw", "max"),
    "min_brightness": ("brightness", "min"),
    "max_brightness": ("brightness", "max"),
    "min_sharpness": ("sharpness", "min"),
}


@dataclass
class Face:
    """One face found in one condition: its measures, the scale it was found at, and whether answered right.

    Right: for the pair's own faces, named as the face's person and known; for a stranger, answered someone else.
    """

    condition: str
    measures: dict[str, float]
    scale: float
    right: bool


def _found(
    people: tuple[str, ...], classifier, faces: int, seed: int, pins: Path, strangers: bool
) -> tuple[list[Face], dict]:
    everyone = held_out(people, FaceFinder(FaceOptions(second_look=False, quality=QualityOptions.off())), pins)
    chosen = balanced(everyone, faces, seed)
    finder = {"measured": FaceFinder(FaceOptions(quality=QualityOptions.off()))}
    rng = np.random.default_rng(seed)
    found: list[Face] = []
    counts = {}
    for c in CONDITIONS:
        if strangers and not c.strangers:
            continue
        shown: list[HeldOut] = balanced(everyone, len(everyone), seed) if c.name == REFERENCE else chosen
        t = search_frames(shown, finder, c.width, PER_FRAME, rng, classifier, c.degrade)["measured"]
        counts[c.name] = (t.found, t.faces)
        # A stranger is answered right when turned away as someone else.
        mine = [Face(c.name, r["measures"], r["scale"], not r["known"] if strangers else r["right"]) for r in t.records]
        found += mine
        log(f"{' + '.join(people)}: {c.name}: {t.found}/{t.faces} found, {sum(f.right for f in mine)} right")
    return found, counts


def measure_pair(pair: tuple[str, ...], faces: int, seed: int, pins: Path = PINS) -> dict:
    """Every condition's faces found, the pair's own and strangers', with (found, pasted) per condition."""
    from model.serving import FaceClassifier

    classifier = FaceClassifier.load(pair_model(pair, pins))
    own, counts = _found(pair, classifier, faces, seed, pins, strangers=False)
    result = {"faces": own, "counts": counts, "strangers": [], "stranger_counts": {}}
    if all((pins / name).is_dir() for name in STRANGERS):
        result["strangers"], result["stranger_counts"] = _found(STRANGERS, classifier, faces, seed, pins, True)
    return result


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a share k/n."""
    if not n:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def accuracy(faces: list[Face]) -> float:
    return sum(f.right for f in faces) / len(faces) if faces else float("nan")


def clearly_under(faces: list[Face], reference: float) -> bool:
    """Accuracy 5 points or more under the reference, and the reference outside its 95% interval."""
    right = sum(f.right for f in faces)
    return (
        len(faces) >= 10
        and right / len(faces) <= reference - CLEARLY_UNDER
        and wilson(right, len(faces))[1] < reference
    )


@dataclass
class Step:
    """One rung of a line's ladder: a condition, its faces' median measure, and how they were answered."""

    condition: str
    median: float
    found: int
    accuracy: float
    strangers: float | None  # strangers in this condition answered someone else, where shown
    under: bool


@dataclass
class Line:
    """Where one measure's accuracy falls off on one pair, and what shows it."""

    option: str
    value: float | None  # None: no fall-off seen
    steps: list[Step]  # from the clean faces outwards (the ladder); for yaw, bins of faces
    holds_to: float | None = None  # the furthest median measure with no fall-off


def ladder(option: str, measured: dict) -> Line:
    """The line where the ladder's conditions fall clearly under the clean faces, and stay under beyond.

    Under: the pair's own faces named right and known, or the strangers answered someone else, 5 points or more
    under the clean faces' and outside the 95% interval. The line is halfway between the medians of the last
    condition that held and the first that fell.
    """
    key, worse = LINES[option]
    faces, strangers = measured["faces"], measured["strangers"]

    def of(group: list[Face], name: str) -> list[Face]:
        return [f for f in group if f.condition == name]

    reference, stranger_reference = accuracy(of(faces, REFERENCE)), accuracy(of(strangers, REFERENCE))
    names = [REFERENCE, *(c.name for c in CONDITIONS if c.line == option)]
    steps = []
    for name in names:
        own, away = of(faces, name), of(strangers, name)
        if not own:
            continue
        under = clearly_under(own, reference) or (bool(away) and clearly_under(away, stranger_reference))
        median = statistics.median(f.measures[key] * (f.scale if key == "width" else 1) for f in own)
        steps.append(Step(name, median, len(own), accuracy(own), accuracy(away) if away else None, under))
    steps = [steps[0], *sorted(steps[1:], key=lambda s: -s.median if worse == "min" else s.median)]
    fell = next((i for i in range(1, len(steps)) if all(s.under for s in steps[i:])), None)
    if fell is None:
        return Line(option, None, steps, steps[-1].median)
    return Line(option, round((steps[fell - 1].median + steps[fell].median) / 2, 4), steps, steps[fell - 1].median)


def yaw_bins(measured: dict, options: QualityOptions) -> Line:
    """Yaw has no synthetic ladder: the clean and as-sent faces that keep the width line, in bins of equal count
    from the most frontal; the line where the bins from there to the most turned are all clearly under."""
    faces = [f for f in measured["faces"] if f.condition in NATURAL]
    faces = [f for f in faces if verdict(f.measures, options, f.scale)[0] != "too_small"]
    reference = accuracy([f for f in faces if f.condition == REFERENCE])
    ordered = sorted(faces, key=lambda f: f.measures["yaw"])
    parts = [[ordered[i] for i in part] for part in np.array_split(np.arange(len(ordered)), max(1, len(ordered) // 30))]
    steps = [
        Step(
            f"yaw {p[0].measures['yaw']:.3g} to {p[-1].measures['yaw']:.3g}",
            statistics.median(f.measures["yaw"] for f in p),
            len(p),
            accuracy(p),
            None,
            clearly_under(p, reference),
        )
        for p in parts
        if p
    ]
    fell = next((i for i in range(1, len(steps)) if all(s.under for s in steps[i:])), None)
    if fell is None:
        return Line("max_yaw", None, steps, max(f.measures["yaw"] for f in faces) if faces else None)
    edge = (parts[fell - 1][-1].measures["yaw"] + parts[fell][0].measures["yaw"]) / 2
    return Line("max_yaw", round(edge, 4), steps, parts[fell - 1][-1].measures["yaw"])


def suggest(measured: dict) -> tuple[QualityOptions, list[Line]]:
    """One pair's lines: each measure's ladder (yaw: its bins), and the options they make (off where none fell)."""
    lines = {option: ladder(option, measured) for option in LINES if option != "max_yaw"}
    options = replace(QualityOptions.off(), **{o: line.value for o, line in lines.items() if line.value is not None})
    lines["max_yaw"] = yaw_bins(measured, options)
    if lines["max_yaw"].value is not None:
        options = replace(options, max_yaw=lines["max_yaw"].value)
    return options, [lines[o] for o in LINES]


def both(per_pair: list[QualityOptions]) -> QualityOptions:
    """The lines that hold on every pair: the highest minimum and the lowest maximum each pair asked for."""
    off = QualityOptions.off()
    picked = {}
    for option in LINES:
        values = [getattr(o, option) for o in per_pair if getattr(o, option) != getattr(off, option)]
        if values:
            picked[option] = max(values) if option.startswith("min") else min(values)
    return replace(off, **picked)


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def _options_text(o: QualityOptions) -> str:
    off = QualityOptions.off()
    return ", ".join(
        f"{name}={getattr(o, name):g}" if getattr(o, name) != getattr(off, name) else f"{name}=off" for name in LINES
    )


def conditions_table(measured: dict, defaults: QualityOptions) -> str:
    """Per condition: faces found, their median measures, accuracy, and what the default verdicts turn away."""
    lines = [
        "| condition | found | median width / yaw / brightness / sharpness | right and known among the found "
        "| turned away by the defaults (why) | right and known among those let through | strangers found "
        "| strangers answered someone else |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in CONDITIONS:
        group = [f for f in measured["faces"] if f.condition == c.name]
        medians = " / ".join(
            f"{statistics.median(f.measures[k] for f in group):.3g}" if group else "-"
            for k in ("width", "yaw", "brightness", "sharpness")
        )
        said = [verdict(f.measures, defaults, f.scale)[0] for f in group]
        away = [q for q in said if q != OK]
        why = ", ".join(f"{q} {away.count(q)}" for q in QUALITIES if q in away) or "none"
        through = [f for f, q in zip(group, said, strict=True) if q == OK]
        found, pasted = measured["counts"][c.name]
        others = [f for f in measured["strangers"] if f.condition == c.name]
        seen = measured["stranger_counts"].get(c.name)
        lines.append(
            f"| {c.name} | {found}/{pasted} | {medians} | {_pct(accuracy(group))} | {len(away)} ({why}) "
            f"| {_pct(accuracy(through))} | {f'{seen[0]}/{seen[1]}' if seen else '-'} "
            f"| {_pct(accuracy(others)) if others else '-'} |"
        )
    return "\n".join(lines)


def verdict_table(faces: list[Face], options: QualityOptions) -> str:
    """Per verdict: the faces it gives, and their accuracy had they been named; all conditions, and clean only."""
    groups = {"all conditions": faces, "clean and as sent": [f for f in faces if f.condition in NATURAL]}
    lines = [
        "| verdict | " + " | ".join(f"{g}: faces | {g}: right and known" for g in groups) + " |",
        "|---|" + "---|---|" * len(groups),
    ]
    said = {g: [verdict(f.measures, options, f.scale)[0] for f in fs] for g, fs in groups.items()}
    for q in (*QUALITIES, "turned away, all"):
        cells = []
        for g, fs in groups.items():
            chosen = [f for f, s in zip(fs, said[g], strict=True) if s == q or (q.startswith("turned") and s != OK)]
            cells += [f"{len(chosen)} ({len(chosen) / max(1, len(fs)):.0%})", _pct(accuracy(chosen))]
        lines.append(f"| {'ok: let through' if q == OK else q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evidence(lines: list[Line]) -> str:
    """Each line's ladder (or bins), from the clean faces outwards, and the value it sets."""
    out = []
    for line in lines:
        key = LINES[line.option][0]
        steps = "; ".join(
            f"{s.condition}: {key} {s.median:.3g}, {s.accuracy:.0%} of {s.found}"
            + (f", strangers away {s.strangers:.0%}" if s.strangers is not None else "")
            + (" (under)" if s.under else "")
            for s in line.steps
        )
        if line.value is None:
            value = "no fall-off seen" + (f" (holds to {line.holds_to:.3g})" if line.holds_to is not None else "")
        else:
            value = f"**{line.value:g}**"
        out.append(f"- {line.option}: {value}. {steps}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = pins_parser("python -m bench.quality", __doc__.splitlines()[0], "condition").parse_args(argv)
    if (pairs := chosen_pairs(args)) is None:
        return 0
    import torch

    torch.set_num_threads(1)
    defaults = QualityOptions()
    measured = {pair: measure_pair(pair, args.faces, args.seed, args.pins) for pair in pairs}
    suggested = {pair: suggest(m) for pair, m in measured.items()}
    together = both([options for options, _ in suggested.values()])
    holds = {}  # where neither pair fell: how far accuracy held on both
    for option in LINES:
        per_pair = [next(line for line in lines if line.option == option) for _, lines in suggested.values()]
        if all(line.value is None and line.holds_to is not None for line in per_pair):
            reach = [line.holds_to for line in per_pair]
            holds[option] = max(reach) if option.startswith("min") else min(reach)
    parts = [
        f"**Suggested lines, holding on {' and '.join(' vs '.join(p) for p in pairs)}:** "
        f"`QualityOptions({_options_text(together)})`"
        + (
            "; no fall-off on either pair for "
            + ", ".join(f"{o} (accuracy holds to {v:.3g})" for o, v in holds.items())
            if holds
            else ""
        ),
        f"Defaults measured: `QualityOptions({_options_text(defaults)})`",
    ]
    for pair, m in measured.items():
        options, lines = suggested[pair]
        parts += [
            f"### {' vs '.join(pair)}",
            conditions_table(m, defaults),
            f"Lines this pair alone suggests: `{_options_text(options)}`. Each line's ladder, from the clean faces "
            "outwards (own faces' share right and known; under: clearly under the clean faces):",
            evidence(lines),
            "What each verdict turns away, the pair's own faces, with the defaults:",
            verdict_table(m["faces"], defaults),
            "With the suggested lines (both pairs):",
            verdict_table(m["faces"], together),
        ]
    body = "\n\n".join(parts)
    print(body)
    if args.write:
        command = shlex.join(["python", "-m", "bench.quality", *(argv if argv is not None else sys.argv[1:])])
        date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        intro = (
            f"`{command}`, {date}. Held-out pins faces (test and val splits) in 1280x960 JPEGs, each pair's model "
            "trained on its train split; a face is right when named as its person and known, whatever the verdict "
            "(the verdict tables say which of them each line would turn away)."
        )
        write_section(RESULTS, QUALITY_HEADING, f"{QUALITY_HEADING}\n\n{intro}\n\n{body}")
        log(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
