"""Discord in the user's language: which language a Discord user reads, and the commands' names and descriptions
in every language of ours, as Discord's rules take them.

A slash command or a button press is answered in the language of the user's Discord (`interaction.locale`); a
mention, which everyone in the channel reads, in the server's language (its `preferred_locale`); a direct message
in the bot's default language. Command names and descriptions are sent to Discord with one translation per
Discord locale (`CatalogTranslator`, set on the command tree before it syncs), from the same catalogs as every
reply. Discord refuses the whole sync for one bad translation, so a translated name that breaks its rules is
made to fit or left out (that locale then shows the English name), never sent as it is.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation, locale_str

from .i18n import ENGLISH, NP_, Texts, language_of, texts_for

if TYPE_CHECKING:
    from .core import ChatCore

__all__ = [
    "FORGET",
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MENU",
    "NAME",
    "PRIVACY",
    "SLASH",
    "WHOIS",
    "WHO_IS_THIS",
    "CatalogTranslator",
    "command_name",
    "menu_name",
    "message_texts",
    "publish_commands",
    "slash_name",
    "texts_of",
    "with_command_names",
]

log = logging.getLogger("doppelbot.discord")

# Discord's limits: a command's (or option's) name 1-32 characters, its description 1-100.
MAX_NAME, MAX_DESCRIPTION = 32, 100
# The extra a command name's `locale_str` carries (`locale_str("whois", name=SLASH)`): which rules its
# translations must keep. Names without it (options' names) are not translated.
SLASH, MENU = "slash", "menu"
# The commands' names, translated like every text, each in the context NAME (the word "privacy" as a command's
# name is not the heading of the privacy page).
NAME = "discord command name"  # not for users: the catalogs' context of command names
# TRANSLATORS: a Discord slash command's name: one word or a few joined by hyphens, lower case, at most 32
# characters (users type it after "/"); a translation that is not is left in English.
WHOIS = NP_("discord command name", "whois")
# TRANSLATORS: a Discord slash command's name (lower case, hyphens, at most 32 characters).
PRIVACY = NP_("discord command name", "privacy")
# TRANSLATORS: a Discord slash command's name (lower case, hyphens, at most 32 characters).
FORGET = NP_("discord command name", "forget")
# TRANSLATORS: the name of the command in a message's "Apps" menu that answers the photos posted in that message;
# at most 32 characters, spaces and capitals allowed.
WHO_IS_THIS = NP_("discord command name", "Who is this?")
_NAME_LOCATIONS = (TranslationContextLocation.command_name, TranslationContextLocation.parameter_name)
# Combining marks Discord takes in names besides letters and digits: Devanagari and Thai (\p{sc=Deva}, \p{sc=Thai}).
_SCRIPTS = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x0E01, 0x0E5B))


def texts_of(core: ChatCore, interaction: discord.Interaction) -> Texts:
    """The language to answer `interaction` in: its user's Discord's, else the bot's default."""
    return core.texts(str(interaction.locale.value))


def message_texts(core: ChatCore, message: discord.Message) -> Texts:
    """The language to answer a mention in, which the whole channel reads: its server's (in a direct message, the
    bot's default)."""
    guild = message.guild
    return core.texts(str(guild.preferred_locale.value) if guild is not None else None)


def _name_char(c: str) -> bool:
    point = ord(c)
    return c in "-_" or unicodedata.category(c)[0] in "LN" or any(low <= point <= high for low, high in _SCRIPTS)


def slash_name(text: str) -> str | None:
    """`text` made a slash command name as Discord takes it: lower case, words joined by hyphens, other signs left
    out; None when that leaves nothing, or more than 32 characters (a name cut short would say something else)."""
    words = ["".join(c for c in word if _name_char(c)) for word in re.split(r"[\s\-]+", text.lower())]
    name = "-".join(word for word in words if word)
    valid = 1 <= len(name) <= MAX_NAME and all(_name_char(c) for c in name) and name.lower() == name
    return name if valid else None


def _one_line(text: str) -> str:
    """`text` on one line, its runs of spaces one space; no-break spaces kept (French writes "photo ?")."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def menu_name(text: str) -> str | None:
    """`text` as a context menu's name: 1-32 characters (spaces and capitals allowed); None if it cannot be."""
    name = _one_line(text)
    return name if 1 <= len(name) <= MAX_NAME else None


def _description(text: str) -> str | None:
    """`text` as a command's or option's description: at most 100 characters, cut at a word with "…" if longer."""
    text = _one_line(text)
    if len(text) <= MAX_DESCRIPTION:
        return text or None
    return text[: MAX_DESCRIPTION - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def with_command_names(text: str, tr: Texts) -> str:
    """`text` (written for every chat service: "/forget deletes...") with the slash commands named as a Discord user
    of `tr`'s language sees them ("/olvidar")."""
    for name in (WHOIS, PRIVACY, FORGET):
        text = re.sub(rf"(?<![\w/])/{name}\b", "/" + command_name(tr, name), text)
    return text


def command_name(tr: Texts, name: str, kind: str = SLASH) -> str:
    """The name a user of `tr`'s language sees for the command `name` (an N_-marked English name): what the
    translator gives Discord, or `name` itself."""
    translated = tr.pgettext(NAME, name)
    fitted = (slash_name if kind == SLASH else menu_name)(translated) if translated != name else None
    return fitted or name


class CatalogTranslator(app_commands.Translator):
    """Commands' names, descriptions and options' descriptions from the bot's catalogs, for each Discord locale
    whose language we speak (es-ES and es-419 both Spanish, pt-BR Portuguese): None, the English text, where the
    language is English, not ours, or its catalog has no other text yet."""

    def __init__(self) -> None:
        # Two commands of a kind must not share a name in a locale: (locale, kind) -> {translated name: command}.
        self._names: dict[tuple[str, str], dict[str, str]] = {}

    async def translate(
        self, string: locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        code = language_of(str(locale.value))
        if code is None or code == ENGLISH:
            return None
        kind = string.extras.get("name")
        if context.location in _NAME_LOCATIONS and kind not in (SLASH, MENU):
            return None  # an option's name: kept as it is, in every language
        if kind is None:
            translated = texts_for(code).gettext(string.message)
            return _description(translated) if translated != string.message else None
        translated = texts_for(code).pgettext(NAME, string.message)
        if translated == string.message:
            return None
        fitted = (slash_name if kind == SLASH else menu_name)(translated)
        if fitted is None:
            log.warning("the %s name of %r does not fit Discord's rules: left in English", locale.value, string.message)
            return None
        return self._unique(str(locale.value), kind, fitted, string.message)

    def _unique(self, locale: str, kind: str, name: str, command: str) -> str | None:
        """`name` for `command` in `locale`, unless another command of its kind has it there already."""
        taken = self._names.setdefault((locale, kind), {})
        if taken.setdefault(name.lower(), command) != command:
            log.warning("two commands would be called %r in %s: %r is left in English", name, locale, command)
            return None
        return name


async def publish_commands(tree: app_commands.CommandTree) -> None:
    """Sync `tree`'s commands, in every language of ours; in English alone if Discord refuses a translation (the
    commands matter more than their translations), and only logged if it refuses them all."""
    try:
        await tree.set_translator(CatalogTranslator())
        await tree.sync()
        return
    except (app_commands.CommandSyncFailure, app_commands.TranslationError) as e:
        log.warning("could not publish the commands' translations (%s): publishing them in English", e)
    except discord.HTTPException as e:
        log.warning("could not sync the slash commands (%s %s); mentions still work", e.status, e.text)
        return
    await tree.set_translator(None)
    try:
        await tree.sync()
    except discord.HTTPException as e:
        log.warning("could not sync the slash commands (%s %s); mentions still work", e.status, e.text)
