"""What makes a catalog wrong against the code's texts: one place for the tests and `python -m bot.catalogs --check`.

A catalog is wrong when it lacks a text the code writes, keeps one the code no longer writes, leaves one
untranslated (or fuzzy), gives a translation other `{placeholders}` than the English text, or gives a plural
text another number of forms than its language has (Russian three, German two).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from babel.messages.catalog import Catalog, Message

__all__ = ["catalog_problems", "placeholders"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LETTERS = re.compile(r"[^\W\d_]{2,}")


def placeholders(text: str) -> list[str]:
    """The `{names}` in `text`, sorted (one name may appear twice: "1 to {n}" beside "{n} faces")."""
    return sorted(set(_PLACEHOLDER.findall(text)))


def _key(message: Message) -> tuple[str | None, str]:
    return (message.context, message.id[0] if isinstance(message.id, tuple) else message.id)


def catalog_problems(template: Catalog, catalogs: Mapping[str, Catalog]) -> list[str]:
    """Every problem of every catalog, one line each (empty: all is well)."""
    wrong = [f"source: {problem}" for message in template if message.id for problem in _source_problems(message)]
    wanted = {_key(m): m for m in template if m.id}
    for code, catalog in catalogs.items():
        have = {_key(m): m for m in catalog if m.id}
        wrong += [f"{code}: missing {_said(key)}" for key in wanted if key not in have]
        wrong += [f"{code}: stale {_said(key)}" for key in have if key not in wanted]
        for key, message in have.items():
            if key in wanted:
                problems = _problems(message, wanted[key], catalog)
                wrong += [f"{code}: {problem} in {_said(key)}" for problem in problems]
    return wrong


def _said(key: tuple[str | None, str]) -> str:
    context, text = key
    return f"{text!r}" if context is None else f"{text!r} ({context})"


def _source_problems(message: Message) -> list[str]:
    ids = message.id if isinstance(message.id, tuple) else (message.id,)
    wrong = []
    for text in ids:
        for name in _PLACEHOLDER.findall(text):
            if not name.isidentifier():
                wrong.append(f"placeholder {{{name}}} is not a plain name in {text!r}")
    if len(ids) == 2 and placeholders(ids[0]) != placeholders(ids[1]):
        wrong.append(f"singular and plural have other placeholders: {ids!r}")
    return wrong


def _problems(message: Message, wanted: Message, catalog: Catalog) -> list[str]:
    if isinstance(wanted.id, tuple) != isinstance(message.id, tuple) or message.id != wanted.id:
        return ["plural forms differ from the code's"]
    if message.fuzzy:
        return ["fuzzy (unchecked) translation"]
    english = wanted.id[-1] if isinstance(wanted.id, tuple) else wanted.id
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    if isinstance(message.id, tuple) and len(strings) != catalog.num_plurals:
        return [f"{len(strings)} plural forms where the language has {catalog.num_plurals}"]
    wrong = []
    for text in strings:
        if not text:
            wrong.append("untranslated")
        elif placeholders(text) != placeholders(english):
            wrong.append(f"placeholders {placeholders(text)} where English has {placeholders(english)}: {text!r}")
        elif text == english and _LETTERS.search(_PLACEHOLDER.sub("", english)):
            wrong.append("left in English")
    return sorted(set(wrong))
