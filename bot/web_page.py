"""The web page in a user's language: `static/index.html` is a template whose `{{ name }}`s are filled from the
tables here (each text N_-marked, so the catalogs hold them), and the words `page.js` writes itself ride in the
page as a JSON block.
Which language a request is answered in is `web_common.texts_of`'s to say.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Mapping
from pathlib import Path

from .feedback import WHY
from .i18n import LANGUAGES, N_, Texts, texts_for

__all__ = [
    "LANGUAGE_NAMES",
    "PAGE_TEXTS",
    "SCRIPT_TEXTS",
    "TEMPLATE",
    "fill",
    "render_page",
]

TEMPLATE = Path(__file__).with_name("static") / "index.html"
# Each language in its own words, as a picker lists them: a Russian reader looks for "Русский", not "Russian".
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Español",
    "pt_BR": "Português (Brasil)",
    "ru": "Русский",
    "de": "Deutsch",
    "fr": "Français",
}
# The page's own words (index.html's `{{ name }}`s).
PAGE_TEXTS = {
    "title": N_("doppelbot: who is in this photo?"),
    "tagline": N_("who is in this photo?"),
    "asking_model": N_("Asking which model answers…"),
    "drop": N_("Drop a photo here, paste one (Ctrl+V), or choose one:"),
    "choose": N_("Choose a photo"),
    "never_stored": N_("Your photo is looked at in memory and never stored."),
    "keeping": N_("A press on a button under an answer keeps only that face, for review."),
    "photo_alt": N_("The photo you sent"),
    "language": N_("Language"),
    "privacy": N_("Privacy"),
    "forget": N_("Forget my feedback"),
}
# The words page.js writes itself; its `{placeholders}` are filled there.
SCRIPT_TEXTS = {
    "unreachable": N_("I can't reach the bot: is `python -m bot --web` still running?"),
    "failed": N_("Sorry, something went wrong on my side."),
    # TRANSLATORS: {status} is an HTTP status code, such as 502.
    "failed_status": N_("Sorry, something went wrong on my side (HTTP {status})."),
    "who_really": N_("Who is face {n}, really?"),
    "sending": N_("Sending…"),
    "why": WHY,
    "looking": N_("Looking…"),
    "evidence_alt": N_("Face {n} beside the nearest training faces of each person"),
    "looking_at_photo": N_("Looking at the photo…"),
    "not_a_file": N_("That wasn't a file. Save the photo first, then drop the file here."),
}
_NAME = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Inside a <script> block, "</script>" (or "<!--") in a text would end it: JSON can write those characters escaped.
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


@functools.cache
def _template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def _script_json(tr: Texts) -> str:
    texts = {key: tr.gettext(text) for key, text in SCRIPT_TEXTS.items()}
    page = {"language": tr.code, "tag": tr.tag, "texts": texts}
    return json.dumps(page, ensure_ascii=False).translate(_SCRIPT_UNSAFE)


def _options(tr: Texts) -> str:
    options = []
    for code in LANGUAGES:
        tag = texts_for(code).tag
        selected = " selected" if code == tr.code else ""
        options.append(f'<option value="{tag}" lang="{tag}"{selected}>{html.escape(LANGUAGE_NAMES[code])}</option>')
    return "\n          ".join(options)


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{{ name }}` replaced by `values[name]` (already safe HTML); KeyError for a name with
    no value, so a text left out of the tables fails loudly rather than showing braces."""
    return _NAME.sub(lambda m: values[m.group(1)], template)


@functools.cache
def render_page(code: str) -> str:
    """The page in language `code` (one of LANGUAGES): its texts html-escaped, the script's as JSON."""
    tr = texts_for(code)
    values = {key: html.escape(tr.gettext(text)) for key, text in PAGE_TEXTS.items()}
    values.update(lang=html.escape(tr.tag), query=html.escape(f"?lang={tr.tag}"))
    values.update(languages=_options(tr), script_texts=_script_json(tr))
    return fill(_template(), values)
