"""What Discord checks in application commands before it takes them (`PUT /applications/{id}/commands`), for the
fake Discord: names, descriptions and their localizations, per locale.

Discord refuses the whole request with 400 "Invalid Form Body" (code 50035) and says where, in nested `errors`:
`{"0": {"name_localizations": {"de": {"_errors": [{"code": ..., "message": ...}]}}}}` for the German name of the
first command. A bot whose translations break a rule loses every command, not only that translation, so the fake
is as strict as Discord (https://discord.com/developers/docs/interactions/application-commands).
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = [
    "CHAT_INPUT",
    "DISCORD_LOCALES",
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MESSAGE_COMMAND",
    "USER_COMMAND",
    "command_errors",
    "is_slash_name",
]

# The locales Discord knows (keys of name_localizations and description_localizations, an interaction's locale).
# fmt: off
DISCORD_LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl", "pt-BR",
    "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko",
})
# fmt: on
CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3  # application command types
MAX_NAME, MAX_DESCRIPTION = 32, 100
MAX_CONTEXT_MENUS = 5  # of each type (user, message), for the whole application
_NAME_MARKS = frozenset("-_")
# Scripts whose combining marks Discord takes in names (\p{sc=Deva}, \p{sc=Thai}), as code point ranges.
_DEVANAGARI = ((0x0900, 0x0950), (0x0955, 0x0963), (0x0966, 0x097F), (0xA8E0, 0xA8FF), (0x11B00, 0x11B09))
_THAI = ((0x0E01, 0x0E3A), (0x0E40, 0x0E5B))


def _name_char(c: str) -> bool:
    """Whether `c` may be in a slash command's name: Discord's `[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]`."""
    if c in _NAME_MARKS or unicodedata.category(c)[0] in "LN":
        return True
    point = ord(c)
    return any(low <= point <= high for low, high in (*_DEVANAGARI, *_THAI))


def is_slash_name(name: Any) -> bool:
    """Whether `name` is a valid slash command (or option) name: 1-32 of those characters, none upper case."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_NAME
        and all(_name_char(c) for c in name)
        and name.lower() == name
    )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _name_error(name: Any, kind: int) -> dict[str, Any] | None:
    if kind == CHAT_INPUT:
        return None if is_slash_name(name) else _error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    if isinstance(name, str) and 1 <= len(name) <= MAX_NAME:
        return None
    return _error("BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_NAME} in length.")


def _description_error(description: Any, kind: int) -> dict[str, Any] | None:
    if kind != CHAT_INPUT:  # a context menu shows no description: Discord takes only an empty one
        return None if description in (None, "") else _error("BASE_TYPE_MAX_LENGTH", "Must be 0 or fewer in length.")
    if isinstance(description, str) and 1 <= len(description) <= MAX_DESCRIPTION:
        return None
    return _error("BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_DESCRIPTION} in length.")


def _localization_errors(localizations: Any, check) -> dict[str, Any] | None:
    """The errors of one `*_localizations` dict: unknown locales, and values `check` refuses (by locale)."""
    if localizations is None:
        return None
    if not isinstance(localizations, dict):
        return _error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    errors: dict[str, Any] = {}
    for locale, value in localizations.items():
        if locale not in DISCORD_LOCALES:
            errors[locale] = _error("ENUM_TYPE_COERCE", f'Value "{locale}" is not a valid enum value.')
        elif (problem := check(value)) is not None:
            errors[locale] = problem
    return errors or None


def _named_errors(item: dict[str, Any], kind: int) -> dict[str, Any]:
    """The errors of a command's or an option's name, description and their localizations."""
    errors: dict[str, Any] = {}
    checks = {
        "name": (item.get("name"), lambda value: _name_error(value, kind)),
        "description": (item.get("description"), lambda value: _description_error(value, kind)),
    }
    for field, (value, check) in checks.items():
        if (problem := check(value)) is not None:
            errors[field] = problem
        if (problem := _localization_errors(item.get(f"{field}_localizations"), check)) is not None:
            errors[f"{field}_localizations"] = problem
    return errors


def _one_command_errors(command: dict[str, Any]) -> dict[str, Any]:
    kind = command.get("type") or CHAT_INPUT
    if kind not in (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND):
        return {"type": _error("ENUM_TYPE_COERCE", f'Value "{kind}" is not a valid enum value.')}
    errors = _named_errors(command, kind)
    options = command.get("options") or []
    if kind != CHAT_INPUT and options:
        errors["options"] = _error("APPLICATION_COMMAND_OPTIONS_INVALID", "Context menu commands take no options")
        return errors
    option_errors = {str(i): found for i, option in enumerate(options) if (found := _named_errors(option, CHAT_INPUT))}
    if option_errors:
        errors["options"] = option_errors
    return errors


def _unique(commands: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Discord's refusal of two commands of one type with one name, in any locale; None when all differ."""
    seen: set[tuple[int, str | None, str]] = set()
    for command in commands:
        kind = command.get("type") or CHAT_INPUT
        names = [(None, command.get("name")), *(command.get("name_localizations") or {}).items()]
        for locale, name in names:
            key = (kind, locale, str(name).lower())
            if key in seen:
                where = f" in {locale}" if locale else ""
                return _error("APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique{where}")
            seen.add(key)
    return None


def command_errors(commands: Any) -> dict[str, Any] | None:
    """Discord's `errors` for a bulk overwrite of `commands` (by command index, then field); None when it takes
    them."""
    if not isinstance(commands, list):
        return _error("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    errors: dict[str, Any] = {}
    for i, command in enumerate(commands):
        found = _one_command_errors(command) if isinstance(command, dict) else _error("MODEL_TYPE_CONVERT", "object")
        if found:
            errors[str(i)] = found
    if errors:
        return errors
    for kind in (USER_COMMAND, MESSAGE_COMMAND):
        if sum(1 for c in commands if c.get("type") == kind) > MAX_CONTEXT_MENUS:
            return _error("APPLICATION_COMMANDS_TOO_MANY", f"At most {MAX_CONTEXT_MENUS} context menus of a type")
    return _unique(commands)
