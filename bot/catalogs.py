"""The translators' tool: extract every user-facing text of `bot/` with Babel, bring each language's `.po` up to
date with it, and compile the `.mo` files the bot reads (the build does that last step by itself: setup.py).

    python -m bot.catalogs            # extract, update every .po (new texts empty, gone ones dropped), compile
    python -m bot.catalogs --check    # exit 1 if a catalog lacks a text, keeps a stale one or is untranslated

Extraction is pybabel's (`pybabel extract -k N_ -k NP_:1c,2 bot/` finds the same texts): calls of `gettext`, `ngettext`,
`pgettext`, `N_` and `NP_`, as functions or as methods (`tr.gettext("...")`).
"""

from __future__ import annotations

import argparse
import io
import sys
from datetime import datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from .i18n import DOMAIN, ENGLISH, LANGUAGES, LOCALE_DIR

__all__ = ["KEYWORDS", "compile_all", "extract", "po_path", "problems", "read_catalog", "update"]

SOURCE = Path(__file__).parent
# Babel's defaults name these too; said here so the check and `pybabel extract` agree whatever a version's defaults.
KEYWORDS = {"gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2), "N_": None, "NP_": ((1, "c"), 2)}
# Texts of bot/ that no user reads are not extracted: the owner's review page and the operator's command line.
_NOT_EXTRACTED = ("web_review.py", "catalogs.py", "__main__.py")


_HEADER = """# {language} translations of doppelbot's chat bot and web page.
# This file is distributed under the same license as doppelbot (MIT).
# Update it with `python -m bot.catalogs`; translate only the msgstr lines.
#"""


def _headed(catalog: Catalog, language: str) -> Catalog:
    """The project's header in place of Babel's placeholders (FIRST AUTHOR, ORGANIZATION, EMAIL@ADDRESS)."""
    catalog.header_comment = _HEADER.format(language=language)
    catalog.project, catalog.version = "doppelbot", "0.1.0"
    catalog.copyright_holder = "the doppelbot authors"
    catalog.msgid_bugs_address = "the doppelbot issue tracker"
    if catalog.locale is not None:
        catalog.last_translator = "doppelbot translators"
        catalog.language_team = f"{catalog.locale.english_name} (doppelbot)"
    return catalog


def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """Every text `bot/` writes for a user, as the template (`doppelbot.pot`) holds it."""
    template = Catalog(project="doppelbot", domain=DOMAIN, fuzzy=False)
    found = extract_from_dir(
        SOURCE,
        method_map=[("**.py", "python")],
        keywords=KEYWORDS,
        comment_tags=("TRANSLATORS:", "Translators:"),
        strip_comment_tags=True,
    )
    for filename, lineno, message, comments, context in found:
        if Path(filename).name in _NOT_EXTRACTED:
            continue
        template.add(message, None, [(f"bot/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def read_catalog(code: str) -> Catalog:
    with po_path(code).open("rb") as f:
        return read_po(f, locale=code, domain=DOMAIN)


def update() -> None:
    """Write the template and bring every language's `.po` up to date with it (new texts empty, gone ones
    dropped rather than kept as obsolete)."""
    template = extract()
    _write(LOCALE_DIR / f"{DOMAIN}.pot", _headed(template, "The English texts (template) for all"))
    for code in LANGUAGES:
        if code == ENGLISH:
            continue
        path = po_path(code)
        if path.exists():
            catalog = read_catalog(code)
            catalog.update(template, update_header_comment=False, no_fuzzy_matching=True)
            catalog.obsolete.clear()
        else:
            catalog = Catalog(locale=code, domain=DOMAIN, project="doppelbot", fuzzy=False)
            catalog.update(template, no_fuzzy_matching=True)
        catalog.revision_date = datetime.now().astimezone()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, _headed(catalog, catalog.locale.english_name))


def _write(path: Path, catalog: Catalog) -> None:
    out = io.BytesIO()
    write_po(out, catalog, width=100, sort_output=False, include_previous=False)
    path.write_bytes(out.getvalue())


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every `.po` under `locale_dir` to the `.mo` beside it; the `.mo` files written."""
    written = []
    for po in sorted(locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        with po.open("rb") as f:
            catalog = read_po(f)
        mo = po.with_suffix(".mo")
        with mo.open("wb") as f:
            write_mo(f, catalog)
        written.append(mo)
    return written


def problems() -> list[str]:
    """What is wrong with the catalogs against the code: texts missing or stale, untranslated, or translated with
    other placeholders or the wrong number of plural forms."""
    from .i18n_checks import catalog_problems  # the checks are the tests', kept in one place

    return catalog_problems(extract(), {code: read_catalog(code) for code in LANGUAGES if code != ENGLISH})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.catalogs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report what is wrong; change nothing")
    args = parser.parse_args(argv)
    if not args.check:
        update()
        compile_all()
    wrong = problems()
    for line in wrong:
        print(line)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
