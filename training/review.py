"""`python -m training review`: the faces users marked, for the owner to approve, reject or relabel."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from feedback import DEFAULT_FEEDBACK_DB, NEITHER, FeedbackStore, ReviewItem, StoreUnavailable, feedback_key
from feedback.keys import database_file
from model.environment import environment
from model.resources import DEFAULT_MODEL_PATH, read_metadata

__all__ = ["main"]

PROG = "python -m training review"


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line and exit 2, as every other refusal of this command."""

    def error(self, message: str) -> NoReturn:
        _refuse(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="List the faces users marked (waiting for review by default), or review them. "
        "Reads FEEDBACK_DB and FEEDBACK_KEY from the environment or .env.",
    )
    p.add_argument("--all", action="store_true", help="list every face: waiting, approved and rejected")
    p.add_argument("--json", action="store_true", help="print JSON objects instead of a table")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--approve", nargs="+", metavar="ID", help="approve these faces, with the label they show")
    act.add_argument("--reject", nargs="+", metavar="ID", help="reject these faces: never trained on")
    act.add_argument("--relabel", nargs=2, metavar=("ID", "CLASS"), help="approve the face as CLASS or 'neither'")
    act.add_argument("--approve-agreed", metavar="N", help="approve what N or more users agree on and none disputes")
    return p


def _refuse(message: str) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    raise SystemExit(2)


def _ids(raw: Sequence[str]) -> list[int]:
    ids = []
    for text in raw:
        if not text.isdigit():
            _refuse(f"{text!r} is not a face id: ids are whole numbers, as the listing shows")
        ids.append(int(text))
    return ids


def _open_store(settings: dict[str, str]) -> tuple[FeedbackStore | None, str]:
    """The store FEEDBACK_DB names; None for a SQLite file nobody has pressed a button into yet."""
    url = (settings.get("FEEDBACK_DB") or "").strip() or DEFAULT_FEEDBACK_DB
    path = database_file(url)
    if path is not None and not path.exists():
        # Not created here: a listing run from the wrong folder would leave an empty database and a key behind.
        return None, f"no feedback yet: {path} does not exist (FEEDBACK_DB={url})"
    try:
        return FeedbackStore(url, feedback_key(settings.get("FEEDBACK_KEY") or None, url)), ""
    except ValueError as e:  # SettingsError among them: FEEDBACK_KEY missing or too short
        _refuse(str(e))


def _model_classes(settings: dict[str, str]) -> list[str]:
    meta = read_metadata(Path(settings.get("MODEL_PATH") or DEFAULT_MODEL_PATH)) or {}
    return [str(c) for c in meta.get("classes") or []]


def _class_name(store: FeedbackStore, settings: dict[str, str], name: str) -> str | None:
    """`name` as a label to train on (None for "neither"), if the model (or else the store) knows it."""
    if name.lower() == NEITHER:
        return None
    known = _model_classes(settings)
    if not known:
        items = store.items(None)
        known = sorted({item.model_label for item in items} | {v for item in items for v in item.votes if v != NEITHER})
    if name in known:
        return name
    # "jessica chastain" for "Jessica Chastain": the shell is no place to get capitals right.
    matches = [k for k in known if k.casefold() == name.casefold()]
    if len(matches) != 1:
        _refuse(f"{name!r} is not a class: use one of {', '.join([*known, NEITHER])}")
    return matches[0]


def _votes_text(votes: dict[str, int]) -> str:
    return ", ".join(f"{verdict} {count}" for verdict, count in votes.items()) or "-"


def _said_text(item: ReviewItem) -> str:
    said = f"{item.model_label} {item.model_confidence:.0%}"
    if item.model_distance is not None:
        said += f" d={item.model_distance:.2f}"
    return said if item.model_known else f"{said} (someone else)"


def _table(items: list[ReviewItem]) -> str:
    """The items as aligned columns, one line each."""
    header = ("ID", "STATUS", "MODEL SAID", "USERS SAID (distinct users)", "LABEL", "FIRST PRESSED", "WHERE")
    rows = [
        (
            str(item.id),
            item.status,
            _said_text(item),
            _votes_text(item.votes),
            NEITHER if item.label is None else item.label,
            item.created_at.strftime("%Y-%m-%d %H:%M"),
            f"{item.platform} {item.chat_kind}",
        )
        for item in items
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows])
    return "\n".join(line.rstrip() for line in lines)


def _show(items: list[ReviewItem], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps([item.to_json() for item in items], indent=2, ensure_ascii=False))
    elif items:
        print(_table(items))
    else:
        print(empty)


def _changed(store: FeedbackStore, ids: Sequence[int], as_json: bool, summary: str) -> None:
    if as_json:
        wanted = set(ids)
        _show([item for item in store.items(None) if item.id in wanted], True, "")
    else:
        print(summary)


def _plural(n: int) -> str:
    return f"{n} face" if n == 1 else f"{n} faces"


def _review(store: FeedbackStore, args: argparse.Namespace, settings: dict[str, str]) -> None:
    if args.approve or args.reject:
        ids = _ids(args.approve or args.reject)
        known = {item.id for item in store.items(None)}
        if missing := [i for i in ids if i not in known]:
            _refuse(f"no face with id {', '.join(map(str, missing))}: nothing changed")
        changed = store.approve(ids) if args.approve else store.reject(ids)
        verb = "approved" if args.approve else "rejected"
        unchanged = len(set(ids)) - changed
        note = f" ({_plural(unchanged)} already {verb})" if unchanged else ""
        _changed(store, ids, args.json, f"{verb} {_plural(changed)}{note}")
    elif args.relabel:
        (face_id,) = _ids(args.relabel[:1])
        label = _class_name(store, settings, args.relabel[1])
        if not store.relabel(face_id, label):
            _refuse(f"no face with id {face_id}: nothing changed")
        _changed(store, [face_id], args.json, f"face {face_id} approved as {NEITHER if label is None else label}")
    elif args.approve_agreed is not None:
        if not args.approve_agreed.isdigit() or int(args.approve_agreed) < 1:
            _refuse(f"--approve-agreed needs a number of users, 1 or more, not {args.approve_agreed!r}")
        ids = store.approve_agreed(int(args.approve_agreed))
        listed = f": {', '.join(map(str, ids))}" if ids else ""
        _changed(store, ids, args.json, f"approved {_plural(len(ids))} that users agree on{listed}")
    else:
        status = None if args.all else "waiting"
        _show(store.items(status), args.json, "No faces kept yet." if args.all else "No faces waiting for review.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the review command; 0 when done, 2 (with one line on stderr) for a bad id, class or database."""
    args = _parser().parse_args(argv)
    settings = environment()
    store, absent = _open_store(settings)
    if store is None:
        if args.approve or args.reject or args.relabel:
            _refuse(f"{absent}: nothing to review")
        _show([], args.json, absent[:1].upper() + absent[1:] + ".")
        return 0
    try:
        _review(store, args, settings)
    except StoreUnavailable as e:
        _refuse(str(e))
    finally:
        store.close()
    return 0
