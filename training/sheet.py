"""What identity cleaning set aside, for a person to look over: a contact sheet and a list to copy from.

The picture fastai's `ImageClassifierCleaner` would show, without clicking through it: each face
with its class, the reason and its distance from the class's person. Lines of the list, copied
into `keep.txt`, move a face back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .clean import SetAsideFace

__all__ = ["MAX_FACES", "write_set_aside"]

MAX_FACES = 240  # a sheet past this is too big to look at; the list names them all
_COLUMNS = 8
_CHIP = 150
_CAPTION = 58  # four lines of text under each face


_CHARACTERS = 26  # what fits under a face in the sheet's font


def _fit(text: str) -> str:
    """`text` within the width of a face; long file names keep their end, which tells them apart."""
    return text if len(text) <= _CHARACTERS else "…" + text[-(_CHARACTERS - 1) :]


def _caption(face: SetAsideFace, root: Path) -> str:
    lines = (face.name, face.reason, f"distance {face.distance:.2f}", _shown(face.path, root).name)
    return "\n".join(_fit(line) for line in lines)


def _shown(path: Path, root: Path) -> Path:
    """The photo's path as a person would type it: relative to the working directory where it can be."""
    try:
        return path.resolve().relative_to(root)
    except ValueError:
        return path


def _sheet(faces: Sequence[SetAsideFace], root: Path) -> Image.Image:
    shown = faces[:MAX_FACES]
    rows = -(-len(shown) // _COLUMNS)
    width = _COLUMNS * (_CHIP + 10) + 10
    footer = 24 if len(faces) > len(shown) else 0
    sheet = Image.new("RGB", (width, 10 + rows * (_CHIP + _CAPTION + 10) + footer), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for i, face in enumerate(shown):
        x, y = 10 + (i % _COLUMNS) * (_CHIP + 10), 10 + (i // _COLUMNS) * (_CHIP + _CAPTION + 10)
        sheet.paste(Image.fromarray(face.chip).resize((_CHIP, _CHIP)), (x, y))
        draw.multiline_text((x, y + _CHIP + 2), _caption(face, root), fill="black", font=font, spacing=1)
    if footer:
        more = f"and {len(faces) - len(shown)} more: see set_aside.txt"
        draw.text((10, sheet.height - footer + 4), more, fill="black", font=font)
    return sheet


def write_set_aside(faces: Sequence[SetAsideFace], plots_dir: Path, list_path: Path) -> list[Path]:
    """`plots_dir/set_aside.png` and the list at `list_path`; both removed when nothing was set aside.

    Returns the files written. Sheets of an earlier run are removed, so none describes another run's data.
    """
    sheet_path = plots_dir / "set_aside.png"
    if not faces:
        sheet_path.unlink(missing_ok=True)
        list_path.unlink(missing_ok=True)
        return []
    root = Path.cwd().resolve()
    faces = sorted(faces, key=lambda f: (f.name, f.reason, f.distance))
    plots_dir.mkdir(parents=True, exist_ok=True)
    _sheet(faces, root).save(sheet_path)
    lines = [f"{_shown(f.path, root)}  # {f.name}: {f.reason}, distance {f.distance:.3f}" for f in faces]
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text(
        "# Faces identity cleaning set aside. Copy a line into keep.txt to train on that face after all.\n"
        + "\n".join(lines)
        + "\n"
    )
    return [sheet_path, list_path]
