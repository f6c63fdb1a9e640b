"""Discord in each user's language: the real discord.py client against the fake Discord (REST and gateway) on
127.0.0.1, answering through a chat core whose model is scripted (no model needed: the words are what is tested).

A slash command, a context-menu command and a button press are answered in the language of the user's Discord
(the interaction's `locale`); a mention in the server's (`preferred_locale`). The commands are published with
their names and descriptions in each language of ours, and the fake takes them only as Discord would.

Two kinds of check, as for Telegram. Against marked catalogs (`marked`: every text "«de» text"), a reply
without its user's mark was never looked up in the user's language, whatever the real catalogs hold yet. Against
the real catalogs (`texts_for("de").gettext(...)`), a reply is the catalog's words; the tests that say "awaits
the catalogs" also check that those words are not the English, which holds once the catalogs are filled.
"""

from __future__ import annotations

import asyncio
import gettext
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import discord_i18n, i18n
from bot.core import COMMAND_DESCRIPTIONS, WHOIS_PHOTO_DESCRIPTION, ChatCore, RateLimiter, describe
from bot.discord_commands import PhotoCommands
from bot.discord_i18n import WHO_IS_THIS, with_command_names
from bot.feedback import THANKS, Feedback
from bot.i18n import ENGLISH, texts_for
from bot.worker import Result
from feedback.store import FeedbackStore
from model.answers import Examined, FaceAnswer, PhotoAnswer
from testkit.bots import discord_bot
from testkit.discord_rules import DISCORD_LOCALES
from testkit.fake_discord import EPHEMERAL, FakeDiscord, RestCall, buttons
from testkit.imagery import jpeg, scene

TOKEN = "fake-token.never-logged"
# The Discord locales of each language of ours: both Spanish ones are Spanish.
OURS = {"es-ES": "es", "es-419": "es", "pt-BR": "pt_BR", "ru": "ru", "de": "de", "fr": "fr"}
NOT_OURS = DISCORD_LOCALES - set(OURS)  # English (en-US, en-GB) included: the commands' own names are English
QUIET_S = 1.0  # long enough for anything more the bot was going to send to have come
PHOTO = jpeg(scene(1))
PAIR = jpeg(scene(2))
PDF = b"%PDF-1.7\n%minutes of the meeting"


# -- stand-ins: answers without a model, catalogs that mark every text ---------------------------------------


def face(label: str = "Eileen", confidence: float = 0.97, x: int = 100) -> FaceAnswer:
    other = "Twin" if label == "Eileen" else "Eileen"
    return FaceAnswer((x, 100, x + 200, 300), label, confidence, confidence >= 0.8, {label: confidence, other: 0.03})


ONE = PhotoAnswer("ok", [face()])
TWO = PhotoAnswer("ok", [face(), face("Twin", x=500)])


class Scripted:
    """Stands in for the inference worker: PAIR shows two faces, every other photo Eileen's, 97% sure."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds the model takes to look

    async def classify(self, data: bytes) -> Result:
        await asyncio.sleep(self.delay)
        return Result(TWO, PHOTO) if data == PAIR else Result(ONE)

    async def examine(self, data: bytes) -> Examined:
        """What a feedback press keeps of the photo: its faces' chips."""
        answer = TWO if data == PAIR else ONE
        return Examined(answer, [PHOTO] * len(answer.faces))


class Marked(gettext.NullTranslations):
    """A catalog that "translates" every text by marking it with its language: "«es» Send a photo..."."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.mark = f"«{code}» "

    def gettext(self, message: str) -> str:
        return self.mark + message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.mark + (singular if n == 1 else plural)

    def pgettext(self, context: str, message: str) -> str:
        return self.mark + message


class Table(gettext.NullTranslations):
    """A catalog holding the translations given, and no others."""

    def __init__(self, table: dict[str, str]) -> None:
        super().__init__()
        self.table = table

    def gettext(self, message: str) -> str:
        return self.table.get(message, message)

    def pgettext(self, context: str, message: str) -> str:
        return self.table.get(message, message)


def _catalogs(monkeypatch: pytest.MonkeyPatch, make: Callable[[str], gettext.NullTranslations]) -> None:
    monkeypatch.setattr(i18n, "_catalog", lambda code: gettext.NullTranslations() if code == ENGLISH else make(code))
    i18n.texts_for.cache_clear()


@pytest.fixture
def marked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every language but English speaks in marked words (`Marked`), for the length of one test."""
    _catalogs(monkeypatch, Marked)
    yield
    i18n.texts_for.cache_clear()  # the real catalogs again, for the next test


@pytest.fixture
def real_catalogs() -> Iterator[None]:
    """The catalogs as translators wrote them (and no test's stand-ins left in the cache)."""
    i18n.texts_for.cache_clear()
    yield
    i18n.texts_for.cache_clear()


def mark(code: str) -> str:
    return f"«{code}» "


# -- the bot, and what it said -------------------------------------------------------------------------------


def with_bot(core: ChatCore, scenario: Callable[[FakeDiscord], Awaitable[None]], **fake: Any) -> None:
    async def main() -> None:
        async with discord_bot(core, FakeDiscord(token=TOKEN, **fake) if fake else None) as running:
            await scenario(running)

    asyncio.run(main())


def scripted(worker: Scripted | None = None, **options: Any) -> ChatCore:
    return ChatCore(worker or Scripted(), RateLimiter(1000), **options)


def callbacks(fake: FakeDiscord, interaction: dict) -> list[int]:
    """The types of the bot's answers to `interaction` itself (4: a message, 5: "thinking..."), in order."""
    return [c.json["type"] for c in fake.responses(interaction) if c.path.endswith("/callback") and c.status == 200]


def shown(fake: FakeDiscord, interaction: dict) -> list[tuple[str, bool]]:
    """What Discord showed for `interaction`: (text, whether only its user sees it) for each message the bot's
    answers made, as Discord keeps it (the first followup after "thinking..." is as ephemeral as the thinking)."""
    texts = []
    for call in fake.responses(interaction):
        if call.status != 200:
            continue
        if call.path.endswith("/callback") and call.json["type"] == 4:
            data = call.json.get("data") or {}
            texts.append((data.get("content") or "", bool((data.get("flags") or 0) & EPHEMERAL)))
        elif call.method == "POST" and isinstance(call.response, dict):  # a followup
            texts.append((call.response["content"], bool(call.response["flags"] & EPHEMERAL)))
    return texts


async def answered(fake: FakeDiscord, interaction: dict, count: int = 1) -> list[tuple[str, bool]]:
    """What Discord showed for `interaction`, once the bot has said `count` things and had time for more."""
    await fake.wait_for(lambda _: len(shown(fake, interaction)) >= count)
    await asyncio.sleep(QUIET_S)
    return shown(fake, interaction)


async def reply_to(fake: FakeDiscord, message: dict) -> RestCall:
    channel = int(message["channel_id"])
    return await fake.wait_for(lambda c: c.is_message_to(channel) and c.reply_to == int(message["id"]))


def followups(fake: FakeDiscord, interaction: dict) -> list[RestCall]:
    path = f"/webhooks/{fake.application_id}/{interaction['token']}"
    return fake.calls_where(lambda c: c.method == "POST" and c.path.endswith(path) and c.status == 200)


def command(fake: FakeDiscord, name: str) -> dict[str, Any]:
    [found] = [c for c in fake.commands if c["name"] == name]
    return found


# -- the fake takes commands only as Discord does -------------------------------------------------------------


def valid_commands() -> list[dict[str, Any]]:
    """Commands Discord takes: localized names in four scripts, a context menu with spaces and capitals."""
    photo = {"type": 11, "name": "photo", "description": "A photo", "required": True}
    return [
        {
            "type": 1,
            "name": "whois",
            "description": "Who is in this photo?",
            "name_localizations": {"de": "wer-ist-das", "ru": "кто-это", "hi": "कौन-है", "th": "ใครอยู่ในรูป"},
            "description_localizations": {"de": "Wer ist auf diesem Foto?", "es-419": "¿Quién sale?"},
            "options": [{**photo, "description_localizations": {"fr": "Une photo"}}],
        },
        {"type": 1, "name": "privacy", "description": "What I keep", "name_localizations": {"de": "datenschutz"}},
        {"type": 3, "name": "Who is this?", "name_localizations": {"de": "Wer ist das?", "pt-BR": "Quem é?"}},
    ]


def _broken(change: Callable[[list[dict[str, Any]]], object]) -> list[dict[str, Any]]:
    commands = valid_commands()
    change(commands)
    return commands


# Each a way to break Discord's rules, and where Discord's errors say it is.
BROKEN = {
    "a locale Discord does not know (pt, not pt-BR)": (
        lambda c: c[0]["name_localizations"].update(pt="quem-e"),
        ["0", "name_localizations", "pt"],
    ),
    "a language without its region (es, not es-ES)": (
        lambda c: c[0]["description_localizations"].update(es="¿Quién?"),
        ["0", "description_localizations", "es"],
    ),
    "a capital in a localized slash name": (
        lambda c: c[0]["name_localizations"].update(de="Wer-ist-das"),
        ["0", "name_localizations", "de"],
    ),
    "a space in a localized slash name": (
        lambda c: c[0]["name_localizations"].update(fr="qui est"),
        ["0", "name_localizations", "fr"],
    ),
    "a question mark in a localized slash name": (
        lambda c: c[0]["name_localizations"].update(ru="кто?"),
        ["0", "name_localizations", "ru"],
    ),
    "a localized slash name of 33 characters": (
        lambda c: c[0]["name_localizations"].update({"es-ES": "q" * 33}),
        ["0", "name_localizations", "es-ES"],
    ),
    "a capital in a slash name": (lambda c: c[0].update(name="WhoIs"), ["0", "name"]),
    "a localized description of 101 characters": (
        lambda c: c[0]["description_localizations"].update(ru="я" * 101),
        ["0", "description_localizations", "ru"],
    ),
    "an empty localized description": (
        lambda c: c[0]["description_localizations"].update(de=""),
        ["0", "description_localizations", "de"],
    ),
    "a description of 101 characters": (lambda c: c[1].update(description="x" * 101), ["1", "description"]),
    "an option without a description": (lambda c: c[0]["options"][0].update(description=""), ["0", "options", "0"]),
    "an option's localized description of 101 characters": (
        lambda c: c[0]["options"][0]["description_localizations"].update(de="x" * 101),
        ["0", "options", "0", "description_localizations", "de"],
    ),
    "a context menu with a description": (lambda c: c[2].update(description="Who?"), ["2", "description"]),
    "a context menu name of 33 characters": (lambda c: c[2].update(name="W" * 33), ["2", "name"]),
    "a localized context menu name of 33 characters": (
        lambda c: c[2]["name_localizations"].update(fr="Q" * 33),
        ["2", "name_localizations", "fr"],
    ),
    "two commands with one name in a locale": (
        lambda c: c[1]["name_localizations"].update(de="wer-ist-das"),
        [],
    ),
}


def test_the_fake_discord_takes_commands_only_as_discord_does() -> None:
    """What a bulk overwrite (PUT /applications/{id}/commands) may hold, checked as Discord checks it: the whole
    request is refused with Discord's error body (400, code 50035, `errors` naming the field), and nothing changes."""

    async def scenario() -> None:
        async with FakeDiscord(token=TOKEN) as fake, aiohttp.ClientSession() as http:
            url = f"{fake.api_base}/applications/{fake.application_id}/commands"
            headers = {"Authorization": f"Bot {TOKEN}"}
            async with http.put(url, json=valid_commands(), headers=headers) as taken:
                assert taken.status == 200 and taken.headers["Content-Type"] == "application/json"
            assert [(c["name"], c["type"]) for c in fake.commands] == [
                ("whois", 1),
                ("privacy", 1),
                ("Who is this?", 3),
            ]
            assert command(fake, "Who is this?")["description"] == ""  # as Discord returns a context menu
            for why, (change, where) in BROKEN.items():
                async with http.put(url, json=_broken(change), headers=headers) as refused:
                    assert refused.status == 400, why
                    assert refused.headers["Content-Type"] == "application/json"  # exactly: discord.py reads it
                    body = json.loads(await refused.read())
                assert (body["code"], body["message"]) == (50035, "Invalid Form Body"), why
                errors = body["errors"]
                for key in where:
                    assert key in errors, f"{why}: {body}"
                    errors = errors[key]
                found = [e for value in _leaves(errors) for e in value]
                assert found and all({"code", "message"} <= set(e) for e in found), f"{why}: {body}"
                assert [c["name"] for c in fake.commands] == ["whois", "privacy", "Who is this?"], why

    asyncio.run(scenario())


def _leaves(errors: dict[str, Any]) -> Iterator[list[dict[str, str]]]:
    """Every `_errors` list under `errors`."""
    for key, value in errors.items():
        if key == "_errors":
            yield value
        elif isinstance(value, dict):
            yield from _leaves(value)


# -- the commands, published in every language -----------------------------------------------------------------


def test_the_commands_are_published_in_each_language_of_ours_and_discord_takes_them(marked: None) -> None:
    """Names (slash names made to Discord's rules), descriptions and the photo option's description, for es-ES
    and es-419 (both Spanish), pt-BR, ru, de and fr; English and the locales we do not speak get the defaults."""

    async def scenario(fake: FakeDiscord) -> None:
        assert fake.refused_syncs == []
        assert [(c["name"], c["type"]) for c in fake.commands] == [
            ("whois", 1),
            ("privacy", 1),
            ("forget", 1),
            (WHO_IS_THIS, 3),
        ]
        for name in ("whois", "privacy", "forget"):
            synced = command(fake, name)
            assert synced["name_localizations"] == {locale: f"{code.lower()}-{name}" for locale, code in OURS.items()}
            english = COMMAND_DESCRIPTIONS[name]
            assert synced["description_localizations"] == {
                locale: mark(code) + english for locale, code in OURS.items()
            }
        [photo] = command(fake, "whois")["options"]
        assert photo["name"] == "photo" and "name_localizations" not in photo  # options keep their names
        assert photo["description_localizations"] == {
            locale: mark(code) + WHOIS_PHOTO_DESCRIPTION for locale, code in OURS.items()
        }
        menu = command(fake, WHO_IS_THIS)
        assert menu["name_localizations"] == {locale: mark(code) + WHO_IS_THIS for locale, code in OURS.items()}
        assert menu["description"] == "" and not menu.get("description_localizations")

    with_bot(scripted(), scenario)


def test_translations_that_break_discords_rules_are_made_to_fit_or_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A name in capitals and spaces is written as a slash name; one too long, or one another command has in that
    language, is left in English; a description over 100 characters is cut at a word. Discord takes the sync."""
    long = "Schick mir ein Foto mit einem oder mehreren Gesichtern, und ich sage dir für jedes Gesicht, wer es ist."
    table = {
        "de": {
            "whois": "Wer Ist Das?",
            "privacy": "datenschutz-und-alles-was-ich-behalte",  # 37 characters
            "forget": "wer-ist-das",  # /whois's name in German already
            COMMAND_DESCRIPTIONS["whois"]: long + " " + long,
            WHO_IS_THIS: "Wer ist die Person auf diesem Foto?",  # 35 characters
        },
        "fr": {"whois": "qui-est-ce", WHO_IS_THIS: "  Qui est-ce ?  "},
    }
    _catalogs(monkeypatch, lambda code: Table(table.get(code, {})))

    async def scenario(fake: FakeDiscord) -> None:
        assert fake.refused_syncs == []
        whois, privacy, forget = (command(fake, name) for name in ("whois", "privacy", "forget"))
        assert whois["name_localizations"] == {"de": "wer-ist-das", "fr": "qui-est-ce"}
        assert privacy["name_localizations"] == {} and forget["name_localizations"] == {}
        german = whois["description_localizations"]["de"]
        assert len(german) <= 100 and german.endswith("…") and long.startswith(german[:-1]), german
        assert command(fake, WHO_IS_THIS)["name_localizations"] == {"fr": "Qui est-ce ?"}

    try:
        with caplog.at_level(logging.WARNING, "doppelbot.discord"):
            with_bot(scripted(), scenario)
    finally:
        i18n.texts_for.cache_clear()
    said = [r.getMessage() for r in caplog.records]
    assert any("'privacy'" in line and "Discord's rules" in line for line in said), said
    assert any("'forget'" in line and "two commands" in line for line in said), said


def test_a_translation_discord_refuses_after_all_costs_only_the_translations(
    marked: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Were a translation to slip past the rules ("«de» whois" sent as it is), Discord refuses the whole sync: the
    bot publishes its commands again in English, so /whois still works."""
    monkeypatch.setattr(discord_i18n, "slash_name", lambda text: text)

    async def scenario(fake: FakeDiscord) -> None:
        assert len(fake.refused_syncs) == 1
        assert [c["name"] for c in fake.commands] == ["whois", "privacy", "forget", WHO_IS_THIS]
        assert all(not c.get("name_localizations") for c in fake.commands)
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": fake.attachment(PHOTO)}, locale="de")
        [(text, ephemeral)] = await answered(fake, interaction)
        assert text == describe(ONE, tr=texts_for("de")).text and not ephemeral

    with caplog.at_level(logging.WARNING, "doppelbot.discord"):
        with_bot(scripted(), scenario)
    assert any("publishing them in English" in r.getMessage() for r in caplog.records)


def test_the_commands_carry_the_catalogs_words(real_catalogs: None) -> None:
    """With the catalogs as translators wrote them: each description in each of our locales is the catalog's.
    Awaits the catalogs: every one of them is translated."""

    async def scenario(fake: FakeDiscord) -> None:
        assert fake.refused_syncs == []
        for name in ("whois", "privacy", "forget"):
            english = COMMAND_DESCRIPTIONS[name]
            localized = command(fake, name)["description_localizations"]
            for locale, code in OURS.items():
                expected = texts_for(code).gettext(english)
                assert localized.get(locale, english) == expected, (name, locale)
            assert set(localized) == set(OURS), f"untranslated descriptions of /{name}: awaits the catalogs"

    with_bot(scripted(), scenario)


# -- replies in the user's language ---------------------------------------------------------------------------


def test_a_german_user_gets_german_answers_and_refusals_for_their_eyes_only(marked: None) -> None:
    """/whois from a Discord in German: the answer (for the channel) and each refusal (for the user alone) in
    German; a refusal known at once is the interaction's own answer, without "thinking..." first."""
    de, core = texts_for("de"), ChatCore(Scripted(), RateLimiter(2))

    async def scenario(fake: FakeDiscord) -> None:
        user = fake.user("greta")
        asked = await fake.slash_command(user, "whois", {"photo": fake.attachment(PHOTO)}, locale="de")
        assert await answered(fake, asked) == [(describe(ONE, tr=de).text, False)]
        assert callbacks(fake, asked) == [5]

        pdf = fake.attachment(PDF, "notes.pdf", "application/pdf")
        refused = await fake.slash_command(user, "whois", {"photo": pdf}, locale="de")
        assert await answered(fake, refused) == [(core.not_an_image(de).text, True)]
        assert callbacks(fake, refused) == [4] and fake.downloads(pdf) == []

        huge = fake.attachment(PHOTO, "huge.jpg", size=25 * 1024 * 1024)
        refused = await fake.slash_command(user, "whois", {"photo": huge}, locale="de")
        assert await answered(fake, refused) == [(core.refuse_size(25 * 1024 * 1024, de).text, True)]

        await answered(fake, await fake.slash_command(user, "whois", {"photo": fake.attachment(PHOTO)}, locale="de"))
        late = fake.attachment(PHOTO)
        limited = await fake.slash_command(user, "whois", {"photo": late}, locale="de")  # a third photo a minute
        [(text, ephemeral)] = await answered(fake, limited)
        assert ephemeral and text in {core.slow_down(s, de).text for s in range(1, 61)}, text
        assert text.startswith(mark("de")) and fake.downloads(late) == []

    with_bot(core, scenario)


def test_a_german_interaction_gets_the_german_catalogs_words(real_catalogs: None) -> None:
    """The same with the catalogs as translators wrote them. Awaits the German catalog: not the English."""
    de, en, core = texts_for("de"), texts_for(ENGLISH), scripted()

    async def scenario(fake: FakeDiscord) -> None:
        asked = await fake.slash_command(fake.user(), "whois", {"photo": fake.attachment(PHOTO)}, locale="de")
        assert await answered(fake, asked) == [(describe(ONE, tr=de).text, False)]
        pdf = fake.attachment(PDF, "notes.pdf", "application/pdf")
        refused = await fake.slash_command(fake.user(), "whois", {"photo": pdf}, locale="de")
        assert await answered(fake, refused) == [(core.not_an_image(de).text, True)]
        assert core.not_an_image(de).text != core.not_an_image(en).text, "awaits the German catalog"

    with_bot(core, scenario)


def test_each_user_reads_their_own_language_and_the_rest_get_the_default(marked: None) -> None:
    """Portuguese (Brazil), Spanish (Latin America) and Russian users each read theirs; a Japanese user, whose
    language is not ours, the bot's DEFAULT_LANGUAGE (here Spanish)."""
    core = scripted(default_language="es")

    async def scenario(fake: FakeDiscord) -> None:
        for locale, code in {"pt-BR": "pt_BR", "es-419": "es", "ru": "ru", "ja": "es", "en-GB": ENGLISH}.items():
            interaction = await fake.slash_command(
                fake.user(), "whois", {"photo": fake.attachment(PHOTO)}, locale=locale
            )
            assert await answered(fake, interaction) == [(describe(ONE, tr=texts_for(code)).text, False)], locale

    with_bot(core, scenario)


def test_a_mention_is_answered_in_the_servers_language(marked: None) -> None:
    """Everyone in the channel reads a mention's answer: it is in the server's language (French here, set while the
    bot runs), whatever the asker's; a direct message is in the bot's default language."""
    core = scripted()

    async def scenario(fake: FakeDiscord) -> None:
        fr = texts_for("fr")
        await fake.set_preferred_locale("fr")
        asked = await fake.send_message(fake.user("amélie"), "qui est-ce ?", attachments=[fake.attachment(PHOTO)])
        assert (await reply_to(fake, asked)).content == describe(ONE, tr=fr).text
        hint = await fake.send_message(fake.user("amélie"), "bonjour")
        assert (await reply_to(fake, hint)).content == with_command_names(core.mention_hint(fr).text, fr)
        direct = await fake.send_message(fake.user("bob"), attachments=[fake.attachment(PHOTO)], dm=True)
        assert (await reply_to(fake, direct)).content == describe(ONE).text  # English, the default

    with_bot(core, scenario)


def test_a_mention_in_a_french_server_gets_the_french_catalogs_words(real_catalogs: None) -> None:
    """Awaits the French catalog: the hint is not the English."""
    core = scripted()

    async def scenario(fake: FakeDiscord) -> None:
        await fake.set_preferred_locale("fr")
        hint = await fake.send_message(fake.user(), "bonjour")
        text = (await reply_to(fake, hint)).content
        fr = texts_for("fr")
        assert text == with_command_names(core.mention_hint(fr).text, fr)
        assert text != core.mention_hint(texts_for(ENGLISH)).text, "awaits the French catalog"
        assert "/qui-est-ce" in text  # the slash command as a French Discord shows it

    with_bot(core, scenario)


# -- "Who is this?" in a message's Apps menu ------------------------------------------------------------------


def test_who_is_this_answers_the_photo_posted_in_a_message(marked: None, tmp_path: Path) -> None:
    """A photo posted without a mention; another user picks Apps > "Who is this?" on it: "thinking...", then the
    answer for the channel in the user's language, with the photo asked about and buttons a press can use."""
    worker = Scripted()
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", b"k" * 32)
    core = scripted(worker, feedback=Feedback(store, worker.examine, lambda: ["Eileen", "Twin"]))
    ru = texts_for("ru")

    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(PHOTO)
        posted = await fake.send_message(fake.user("ana"), "look at her", mention_bot=False, attachments=[photo])
        interaction = await fake.message_command(fake.user("ivan"), WHO_IS_THIS, posted, locale="ru")
        assert await answered(fake, interaction) == [(describe(ONE, tr=ru).text, False)]
        assert callbacks(fake, interaction) == [5]
        [answer] = followups(fake, interaction)
        assert [f.filename for f in answer.files] == ["asked.jpg"] and answer.files[0].data == PHOTO
        neither = ru.gettext("Neither of them")
        assert [[b["label"] for b in row] for row in buttons(answer.response)][-1] == [neither]
        assert len(fake.downloads(photo)) == 1
        # A vote on it takes the face from the photo the answer carries, and thanks the voter in theirs.
        pressed = await fake.press(
            fake.user("hans"), answer.response, fake.button(answer.response, neither), locale="de"
        )
        assert await answered(fake, pressed) == [(texts_for("de").gettext(THANKS), True)]

    try:
        with_bot(core, scenario)
    finally:
        store.close()


def test_who_is_this_on_a_message_without_a_photo_says_so_to_the_user_alone(marked: None) -> None:
    core = scripted()

    async def scenario(fake: FakeDiscord) -> None:
        words = await fake.send_message(fake.user("ana"), "no photo here", mention_bot=False)
        notes = fake.attachment(PDF, "notes.pdf", "application/pdf")
        pdf = await fake.send_message(fake.user("ana"), "the minutes", mention_bot=False, attachments=[notes])
        for message in (words, pdf):
            interaction = await fake.message_command(fake.user("pablo"), WHO_IS_THIS, message, locale="es-ES")
            [(text, ephemeral)] = await answered(fake, interaction)
            assert ephemeral and text == PhotoCommands.no_photo(texts_for("es")), text
            assert callbacks(fake, interaction) == [4]
            assert f"«es» {WHO_IS_THIS}" in text and "/es-whois" in text  # the commands as Spanish users see them
        assert fake.downloads(notes) == []

    with_bot(core, scenario)


def test_who_is_this_answers_each_photo_of_a_message(marked: None) -> None:
    core = scripted()

    async def scenario(fake: FakeDiscord) -> None:
        photos = [fake.attachment(PHOTO, "one.jpg"), fake.attachment(PAIR, "two.jpg")]
        posted = await fake.send_message(fake.user(), mention_bot=False, attachments=photos)
        interaction = await fake.message_command(fake.user(), WHO_IS_THIS, posted, locale="fr")
        fr = texts_for("fr")
        assert await answered(fake, interaction, 2) == [
            (describe(ONE, tr=fr).text, False),
            (describe(TWO, PHOTO, tr=fr).text, False),
        ]

    with_bot(core, scenario)


# -- Discord's 3 seconds --------------------------------------------------------------------------------------


def test_a_slow_photo_is_deferred_before_it_is_downloaded(marked: None) -> None:
    """The photo takes longer to download than Discord waits for an answer (3 s): "thinking..." goes first, the
    download after it, and the answer follows."""
    core = scripted()

    async def scenario(fake: FakeDiscord) -> None:
        fake.cdn_delay = fake.interaction_deadline_s + 0.5
        photo = fake.attachment(PHOTO)
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": photo}, locale="ru")
        assert await answered(fake, interaction) == [(describe(ONE, tr=texts_for("ru")).text, False)]
        [callback] = [c for c in fake.responses(interaction) if c.path.endswith("/callback")]
        [download] = fake.downloads(photo)
        assert callback.json["type"] == 5 and callback.status == 200
        assert fake.calls.index(callback) < fake.calls.index(download), "downloaded before thinking was shown"

    with_bot(core, scenario)


def test_a_refusal_after_thinking_stays_the_users(marked: None) -> None:
    """A photo larger than Discord announced is refused once downloaded, after "thinking..." was shown to the
    channel: the thinking is taken back and the refusal is for the user alone."""
    core = scripted(max_bytes=len(PHOTO) - 1)
    de = texts_for("de")

    async def scenario(fake: FakeDiscord) -> None:
        photo = fake.attachment(PHOTO, size=1000)  # announced smaller than it is
        interaction = await fake.slash_command(fake.user(), "whois", {"photo": photo}, locale="de")
        [(text, ephemeral)] = await answered(fake, interaction)
        assert ephemeral and text == core.refuse_size(len(PHOTO), de).text
        assert callbacks(fake, interaction) == [5]
        deleted = fake.calls_where(lambda c: c.method == "DELETE" and c.path.endswith("/messages/@original"))
        assert [c.status for c in deleted] == [204]

    with_bot(core, scenario)


# -- buttons ---------------------------------------------------------------------------------------------------


def test_a_press_is_answered_in_the_pressers_language(marked: None, tmp_path: Path) -> None:
    """The buttons under a mention's answer are in the server's language; a press redraws them, and thanks the
    presser, in the presser's."""
    worker = Scripted()
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", b"k" * 32)
    core = scripted(worker, feedback=Feedback(store, worker.examine, lambda: ["Eileen", "Twin"]))
    ru, de = texts_for("ru"), texts_for("de")

    async def scenario(fake: FakeDiscord) -> None:
        await fake.set_preferred_locale("ru")
        asked = await fake.send_message(fake.user(), attachments=[fake.attachment(PAIR)])
        answer = (await reply_to(fake, asked)).response
        assert answer["content"] == describe(TWO, PHOTO, tr=ru).text
        assert [[b["label"] for b in row] for row in buttons(answer)] == [["1", "2"]]
        picked = await fake.press(fake.user("hans"), answer, fake.button(answer, "2"), locale="de")
        await fake.wait_for(lambda _: 7 in callbacks(fake, picked))
        labels = [[b["label"] for b in row] for row in buttons(fake.messages[int(answer["id"])])]
        assert labels[-2] == [de.gettext("Neither of them")], labels
        assert labels[-1][0] == de.gettext("« Back (face {face} of {faces})", face=2, faces=2), labels
        voted = await fake.press(fake.user("hans"), answer, fake.button(answer, de.gettext("Neither")), locale="de")
        assert await answered(fake, voted) == [(de.gettext(THANKS), True)]

    try:
        with_bot(core, scenario)
    finally:
        store.close()
