"""Which classes to gather, and the web searches that find their photos."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DEFAULT_CLASSES", "load_classes"]

# Several phrasings per person: one query's results repeat, and varied photos train better.
DEFAULT_CLASSES: dict[str, list[str]] = {
    "Jessica Chastain": ["Jessica Chastain", "Jessica Chastain face", "Jessica Chastain portrait"],
    "Bryce Dallas Howard": [
        "Bryce Dallas Howard",
        "Bryce Dallas Howard face",
        "Bryce Dallas Howard portrait",
    ],
}


def load_classes(path: Path | None) -> dict[str, list[str]]:
    """Classes and their queries from a JSON file `{"Name": ["query", ...]}`, or the defaults."""
    if path is None:
        return DEFAULT_CLASSES
    classes = json.loads(path.read_text())
    if not isinstance(classes, dict) or len(classes) < 2:
        raise ValueError(f"{path}: expected an object with at least two classes, each a list of queries")
    for name, queries in classes.items():
        if not name or name.startswith(".") or any(c in name for c in "/\\:"):
            raise ValueError(f"{path}: class name {name!r} must be usable as a folder name")
        if not queries or not all(isinstance(q, str) and q for q in queries):
            raise ValueError(f"{path}: class {name!r} needs a non-empty list of search queries")
    return {str(name): list(queries) for name, queries in classes.items()}
