"""The bot's languages: gettext catalogs (one `.po` per language under `bot/locale/`, compiled to `.mo` by the
build), the choice of a user's language from what their app says, and numbers written the way the language does.

Every sentence a user reads goes through a `Texts`: `texts.gettext("Hi, {name}!", name=...)` looks the English
text up in the language's catalog and fills its `{placeholders}`; `ngettext` picks the plural form the language
needs (Russian has three); `pgettext` tells apart one English word meant two ways.
Names of people are never translated: they are only ever placeholders' values.
"""

from __future__ import annotations

import datetime
import functools
import gettext as _gettext
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel import Locale
from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_decimal, format_percent

__all__ = [
    "DOMAIN",
    "ENGLISH",
    "LANGUAGES",
    "LOCALE_DIR",
    "NP_",
    "N_",
    "Texts",
    "language_of",
    "negotiate",
    "texts_for",
]

log = logging.getLogger("doppelbot.i18n")

DOMAIN = "doppelbot"
LOCALE_DIR = Path(__file__).parent / "locale"
# The languages the bot speaks, as gettext names them; English is the catalogs' source and the last fallback.
LANGUAGES = ("en", "es", "pt_BR", "ru", "de", "fr")
ENGLISH = "en"


# gettext's name for "mark for extraction, translate later".
def N_(message: str) -> str:
    """Mark `message` for the catalogs without translating it now (module-level texts, translated where used)."""
    return message


def NP_(context: str, message: str) -> str:
    """`N_` with a context: `message` as meant in `context` (a command's name, not the same word in a sentence)."""
    return message


@dataclass(frozen=True)
class Texts:
    """The words and number formats of one language."""

    code: str  # one of LANGUAGES
    translations: _gettext.NullTranslations

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.code)

    @property
    def tag(self) -> str:
        """The language as HTML and HTTP write it: `pt-BR`."""
        return self.code.replace("_", "-")

    def gettext(self, message: str, **values: object) -> str:
        """`message` in this language, its `{placeholders}` filled from `values`."""
        text = self.translations.gettext(message)
        return text.format(**values) if values else text

    def pgettext(self, context: str, message: str, **values: object) -> str:
        """`message` as meant in `context` (the same English word may be a command's name and a heading)."""
        text = self.translations.pgettext(context, message)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: object) -> str:
        """The form of `singular`/`plural` that `n` takes in this language; `{n}` is `n`, written for the locale."""
        text = self.translations.ngettext(singular, plural, n)
        return text.format(**{"n": self.integer(n), **values})

    def percent(self, fraction: float, decimals: int = 0) -> str:
        """`0.97` as the language writes it: "97%", "97 %" (French, German, Russian, Spanish)."""
        if not decimals:
            return format_percent(fraction, locale=self.code)
        pattern = self.locale.percent_formats[None].pattern  # "#,##0%", "#,##0\u00a0%": the language's spacing
        with_decimals = re.sub(r"0(?=[^0#,.]*$)", "0." + "0" * decimals, pattern, count=1)
        return format_percent(fraction, format=with_decimals, locale=self.code)

    def decimal(self, number: float, decimals: int = 2) -> str:
        """`0.12` with the language's decimal sign: "0,12" in German."""
        return format_decimal(number, format="0." + "0" * decimals if decimals else "0", locale=self.code)

    def integer(self, number: int) -> str:
        """`1200` as the language groups digits: "1,200", "1 200", "1.200"."""
        return format_decimal(number, locale=self.code)

    def date(self, iso: str) -> str:
        """`2026-11-29` as the language writes a date: "November 29, 2026", "29 novembre 2026"."""
        return format_date(datetime.date.fromisoformat(iso[:10]), format="long", locale=self.code)

    def either(self, items: list[str]) -> str:
        """ "A or B", "A, B or C" in this language."""
        return format_list(items, style="or", locale=self.code) if items else ""

    def all_of(self, items: list[str]) -> str:
        """ "A and B", "A, B and C" in this language."""
        return format_list(items, locale=self.code) if items else ""


def _catalog(code: str) -> _gettext.NullTranslations:
    """The compiled catalog of `code`; compiled from its `.po` in memory when the build left no `.mo` (a checkout
    run without installing), so that a language is never silently English."""
    if code == ENGLISH:
        return _gettext.NullTranslations()
    folder = LOCALE_DIR / code / "LC_MESSAGES"
    mo, po = folder / f"{DOMAIN}.mo", folder / f"{DOMAIN}.po"
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as f:
            return _gettext.GNUTranslations(f)
    if not po.exists():
        raise FileNotFoundError(f"no catalog for {code!r} in {folder}")
    log.info("the %s catalog is not compiled (or older than its .po): compiling it in memory", code)
    return _gettext.GNUTranslations(io.BytesIO(compile_po(po)))


def compile_po(po: Path) -> bytes:
    """The `.mo` bytes for one `.po` file (what the build writes beside it)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


@functools.cache
def texts_for(code: str) -> Texts:
    """The `Texts` of one of `LANGUAGES` (loaded once)."""
    if code not in LANGUAGES:
        raise ValueError(f"doppelbot does not speak {code!r}; it speaks {', '.join(LANGUAGES)}")
    return Texts(code, _catalog(code))


def language_of(tag: str | None) -> str | None:
    """The language of ours a user's tag asks for, or None: `pt-BR`, `pt` and `pt_PT` are Brazilian Portuguese
    (the one Portuguese we have), `es-419` Spanish, `en-GB` English, `zh-CN` none."""
    if not tag:
        return None
    parts = tag.strip().replace("-", "_").split("_")
    language = parts[0].lower()
    region = parts[1].upper() if len(parts) > 1 else ""
    if f"{language}_{region}" in LANGUAGES:
        return f"{language}_{region}"
    return next((code for code in LANGUAGES if code.split("_")[0] == language), None)


def negotiate(tags: Iterable[str | None], default: str = ENGLISH) -> str:
    """The first of a user's preferred language tags that we speak, else `default`."""
    for tag in tags:
        if (code := language_of(tag)) is not None:
            return code
    return default
