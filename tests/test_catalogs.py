"""The translation catalogs against the code: complete, current, placeholders intact, plurals right, compiled by the
build; and no English sentence of `bot/` reaching a user without going through them."""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from bot.catalogs import compile_all, extract, read_catalog
from bot.i18n import LANGUAGES, LOCALE_DIR
from bot.i18n_checks import catalog_problems

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [code for code in LANGUAGES if code != "en"]


def test_every_catalog_has_every_text_of_the_code_translated_with_its_placeholders() -> None:
    """What `python -m bot.catalogs --check` reports: nothing missing, stale, untranslated or mismatched."""
    problems = catalog_problems(extract(), {code: read_catalog(code) for code in TRANSLATED})
    assert problems == [], "\n".join(problems[:40])


def _catalog(entries: dict) -> Catalog:
    catalog = Catalog(locale="ru", domain="doppelbot")
    for msgid, string in entries.items():
        catalog.add(msgid, string)
    return catalog


def test_the_check_finds_a_missing_a_stale_and_a_mistranslated_text() -> None:
    """The check itself: each kind of problem is reported (so the test above can fail)."""
    template = _catalog({"Hi, {name}!": None, "Thanks": None, ("{n} face", "{n} faces"): None})
    broken = _catalog({"Hi, {name}!": "Привет, {имя}!", "Gone": "Нет", ("{n} face", "{n} faces"): ("{n} лицо", "")})
    problems = catalog_problems(template, {"ru": broken})
    assert "ru: missing 'Thanks'" in problems
    assert "ru: stale 'Gone'" in problems
    assert any("placeholders ['имя'] where English has ['name']" in p for p in problems)
    assert any("2 plural forms where the language has 3" in p for p in problems)
    left = catalog_problems(_catalog({"Thanks": None}), {"ru": _catalog({"Thanks": "Thanks"})})
    assert left == ["ru: left in English in 'Thanks'"]


def test_russian_plurals_have_three_forms_and_german_two() -> None:
    assert read_catalog("ru").num_plurals == 3
    assert read_catalog("de").num_plurals == 2


def test_the_build_compiles_every_catalog_into_the_package(tmp_path: Path) -> None:
    """`pip install` runs setup.py's build_py, which writes each language's .mo: no step a user has to remember."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "bot", source / "bot", ignore=shutil.ignore_patterns("*.mo", "__pycache__"))
    shutil.copy(ROOT / "setup.py", source)
    (source / "pyproject.toml").write_text(
        '[project]\nname = "catalogs-only"\nversion = "0"\n[tool.setuptools]\npackages = ["bot"]\n'
        '[tool.setuptools.package-data]\nbot = ["locale/*/LC_MESSAGES/*.mo"]\n'
    )
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=source,
        check=True,
        capture_output=True,
    )
    for code in TRANSLATED:
        mo = tmp_path / "lib" / "bot" / "locale" / code / "LC_MESSAGES" / "doppelbot.mo"
        with mo.open("rb") as f:
            translations = gettext.GNUTranslations(f)
        assert translations.gettext("Why?") != "Why?", code


def test_compiled_catalogs_say_what_their_po_files_say(tmp_path: Path) -> None:
    shutil.copytree(LOCALE_DIR, tmp_path / "locale", ignore=shutil.ignore_patterns("*.mo"))
    written = compile_all(tmp_path / "locale")
    assert len(written) == len(TRANSLATED)
    for code in TRANSLATED:
        catalog = read_catalog(code)
        with (tmp_path / "locale" / code / "LC_MESSAGES" / "doppelbot.mo").open("rb") as f:
            translations = gettext.GNUTranslations(f)
        for message in catalog:
            if message.id and not isinstance(message.id, tuple):
                said = translations.pgettext(message.context, message.id) if message.context else None
                assert (said or translations.gettext(message.id)) == message.string


# -- no English sentence reaches a user unless through the catalog ------------------------------------------------

# The modules that write what users read (replies, buttons, toasts, pages). The others write for the operator
# (settings, logs, metrics, the review page) or for programs.
USER_FACING = [
    "core.py",
    "replies.py",
    "feedback.py",
    "evidence_words.py",
    "telegram_adapter.py",
    "telegram_feedback.py",
    "discord_adapter.py",
    "discord_feedback.py",
    "discord_commands.py",
    "discord_i18n.py",
    "web_adapter.py",
    "web_feedback.py",
    "web_common.py",
    "web_guards.py",
    "web_page.py",
]
_TRANSLATE = {"gettext", "ngettext", "pgettext", "N_", "NP_"}
_LOGGING = {"debug", "info", "warning", "error", "exception", "critical"}
# Prose: two lowercase words in a row, once markup is taken out ("no face found", not "image/jpeg").
_PROSE = re.compile(r"\b[a-z]{2,}[,;:]? [a-z]{2,}\b")
_MARKUP = re.compile(r"<[^>]*>")
# A literal that reads like prose but is for programs or the operator says so on its line.
NOT_FOR_USERS = "# not for users"


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _exempt_nodes(tree: ast.Module) -> set[int]:
    """Docstrings, texts inside gettext calls, log lines and raised exceptions (for developers and operators)."""
    exempt: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                exempt.add(id(first.value))
        logs = isinstance(node, ast.Call) and _name(node.func) in _LOGGING and isinstance(node.func, ast.Attribute)
        if (isinstance(node, ast.Call) and _name(node.func) in _TRANSLATE) or logs or isinstance(node, ast.Raise):
            exempt.update(id(sub) for sub in ast.walk(node))
    return exempt


def english_literals(path: Path) -> list[str]:
    """The prose string literals of a module that do not go through the catalog."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    exempt = _exempt_nodes(tree)
    found = []
    for node in ast.walk(tree):
        # An f-string is read whole: its markup may span its pieces.
        if isinstance(node, ast.JoinedStr) and id(node) not in exempt:
            exempt.update(id(value) for value in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else "\x00" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in exempt:
            text = node.value
        else:
            continue
        span = lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
        if _PROSE.search(_MARKUP.sub(" ", text)) and not any(NOT_FOR_USERS in line for line in span):
            found.append(f"{path.name}:{node.lineno}: {text[:70]!r}")
    return found


def test_no_english_sentence_of_the_bot_reaches_a_user_without_the_catalog() -> None:
    modules = [ROOT / "bot" / name for name in USER_FACING if (ROOT / "bot" / name).exists()]
    found = [line for path in modules for line in english_literals(path)]
    assert found == [], "\n".join(found)


def test_the_literal_check_finds_a_sentence_written_past_the_catalog(tmp_path: Path) -> None:
    module = tmp_path / "adapter.py"
    module.write_text(
        '"""A module."""\n'
        "def reply(tr, log):\n"
        '    """Reply."""\n'
        '    log.info("sent the reply")\n'
        '    ok = tr.gettext("That file is empty.")\n'
        '    wire = "Bad Request: message is not modified"  # not for users\n'
        '    return ok + "I found no face here"\n'
    )
    assert english_literals(module) == ["adapter.py:7: 'I found no face here'"]


@pytest.mark.parametrize("code", TRANSLATED)
def test_each_language_names_itself_in_its_catalog_header(code: str) -> None:
    assert str(read_catalog(code).locale) == code
