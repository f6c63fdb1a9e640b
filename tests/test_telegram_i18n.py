"""Telegram in each user's language: the real python-telegram-bot application polling the fake Bot API on 127.0.0.1.

A user's `language_code` (what their app says) picks the words of every reply, button and toast; in a group, the
asker's. The command menu, description and short description are published in every language the bot speaks.

Two kinds of check. Against the catalogs (`texts_for("es").gettext(...)`): a reply is the catalog's words, and
(the tests marked so below) differs from the English, which holds once the catalogs are filled. Against marked
catalogs (`marked` below), which write every text as "«es» text": a reply without its user's mark was never
looked up in the user's language, whatever the real catalogs hold yet.
"""

from __future__ import annotations

import asyncio
import gettext
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from telegram import Bot, BotCommand
from telegram.error import BadRequest

from bot import i18n
from bot.core import ChatCore, RateLimiter, bot_description, command_descriptions, describe, short_description
from bot.feedback import THANKS, WHY, Feedback
from bot.i18n import ENGLISH, LANGUAGES, texts_for
from bot.telegram_adapter import build_application, menu_languages, run_telegram
from bot.telegram_feedback import LOOKING
from bot.telegram_webhook import WebhookIntake, run_telegram_webhook
from bot.updates import MemoryUpdateLog
from bot.worker import Result
from feedback.store import FeedbackStore
from model.answers import FaceAnswer, PhotoAnswer
from testkit.bots import telegram_bot
from testkit.crowd import crowd_answer
from testkit.fake_telegram import (
    MAX_COMMAND_DESCRIPTION,
    MAX_DESCRIPTION,
    MAX_SHORT_DESCRIPTION,
    Call,
    FakeTelegram,
)
from testkit.imagery import jpeg, noise_image, scene

# Telegram's language_code for each of ours: pt_BR's menu is the one Portuguese users' apps ask for.
TELEGRAM_CODES = {"en": "en", "es": "es", "pt_BR": "pt", "ru": "ru", "de": "de", "fr": "fr"}
NOT_AN_IMAGE = "That file isn't an image. Send me a photo (JPEG, PNG, WebP, GIF...) with a face in it."
FACES = ("I found {n} face:", "I found {n} faces:")
SURE = "{name}, {confidence} sure"
NOT_SURE = "not sure (maybe {name}, {confidence})"
PDF = b"%PDF-1.7\n%minutes"
STICKER = {
    "file_id": "CAACAgIAAxkBAAI",
    "file_unique_id": "AgAD",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
    "type": "regular",
}


# -- the bot, and what it said -------------------------------------------------------------------


def with_bot(core: ChatCore, scenario: Callable[[FakeTelegram], Awaitable[None]]) -> None:
    async def main() -> None:
        async with telegram_bot(core, until_polling=True) as fake:
            await scenario(fake)

    asyncio.run(main())


def text_of(call: Call) -> str:
    return call.params.get("text") or call.params.get("caption") or ""


def replies_to(fake: FakeTelegram, message: dict) -> list[Call]:
    """What the bot delivered quoting `message`."""
    chat = str(message["chat"]["id"])
    return [c for c in fake.replies if c.reply_to == message["message_id"] and str(c.params["chat_id"]) == chat]


async def reply(fake: FakeTelegram, message: dict) -> str:
    """The text of the one reply quoting `message`, once it came."""
    await fake.wait_until(lambda: replies_to(fake, message), what=f"a reply to message {message['message_id']}")
    (sent,) = replies_to(fake, message)
    return text_of(sent)


async def said_in(fake: FakeTelegram, chat: dict, count: int) -> list[str]:
    """The first `count` texts the bot sent in `chat` (a private chat's commands are answered unquoted)."""

    def sent() -> list[Call]:
        return [c for c in fake.replies if str(c.params["chat_id"]) == str(chat["id"])]

    await fake.wait_until(lambda: len(sent()) >= count, what=f"{count} messages in chat {chat['id']}")
    return [text_of(c) for c in sent()[:count]]


async def commanded(fake: FakeTelegram, command: str, chat: dict, user: dict) -> str:
    """What the bot answered `user`'s `command` in their private chat (one command at a time)."""
    before = len([c for c in fake.replies if str(c.params["chat_id"]) == str(chat["id"])])
    fake.push_command(command, chat, sender=user)
    return (await said_in(fake, chat, before + 1))[-1]


# -- stand-ins: answers without a model, catalogs that mark every text ---------------------------


class Scripted:
    """Stands in for the inference worker: each photo (by its bytes) gets the answer scripted for it."""

    def __init__(self, answers: dict[bytes, Result]) -> None:
        self.answers = answers

    async def classify(self, data: bytes) -> Result:
        return self.answers[data]


def face(label: str = "Eileen", confidence: float = 0.97, x: int = 100) -> FaceAnswer:
    other = "Twin" if label == "Eileen" else "Eileen"
    return FaceAnswer((x, 100, x + 200, 300), label, confidence, confidence >= 0.8, {label: confidence, other: 0.03})


SURE_PHOTO = jpeg(scene(1))
UNSURE_PHOTO = jpeg(scene(1, twins=(True,)))
PAIR_PHOTO = jpeg(scene(2))
CROWD_PHOTO = jpeg(noise_image())
SCRIPT = {
    SURE_PHOTO: Result(PhotoAnswer("ok", [face()])),
    UNSURE_PHOTO: Result(PhotoAnswer("ok", [face("Twin", 0.55)])),
    PAIR_PHOTO: Result(PhotoAnswer("ok", [face(), face("Twin", x=500)]), SURE_PHOTO),  # any JPEG for the boxes
    CROWD_PHOTO: Result(crowd_answer(21)),
}


def scripted(**options) -> ChatCore:
    return ChatCore(Scripted(SCRIPT), RateLimiter(1000), **options)


class Marked(gettext.NullTranslations):
    """A catalog that "translates" every text by marking it with its language: "«es» Send a photo..."."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.mark = mark(code)

    def gettext(self, message: str) -> str:
        return self.mark + message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.mark + (singular if n == 1 else plural)


def mark(code: str) -> str:
    return f"«{code}» "


def sentence(text: str) -> str:
    """A face's line as a reply of its own begins: with a capital."""
    return text[:1].upper() + text[1:]


@pytest.fixture
def marked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every language but English speaks in marked words (`Marked`), for the length of one test."""
    monkeypatch.setattr(i18n, "_catalog", lambda code: gettext.NullTranslations() if code == ENGLISH else Marked(code))
    i18n.texts_for.cache_clear()
    yield
    i18n.texts_for.cache_clear()  # the real catalogs again, for the next test


# -- the fake holds the menu as Telegram does ----------------------------------------------------


def test_the_fake_bot_api_refuses_menus_and_descriptions_as_telegram_does() -> None:
    """The fake these tests stand on checks what the Bot API checks (python-telegram-bot's own Bot, no bot)."""

    async def scenario() -> None:
        async with FakeTelegram() as fake, Bot(fake.token, base_url=fake.base_url) as bot:
            refusals = {
                r"(?i)bot_command_invalid": [BotCommand("Start", "Begin")],
                r"(?i)command length must not exceed 32": [BotCommand("a" * 33, "Too long a name")],
                r"(?i)description must be non-empty": [BotCommand("start", "   ")],
                r"(?i)description length must not exceed 256": [BotCommand("start", "é" * 257)],
                r"(?i)bot_commands_too_much": [BotCommand(f"c{i}", "One of many") for i in range(101)],
            }
            for error, commands in refusals.items():
                with pytest.raises(BadRequest, match=error):
                    await bot.set_my_commands(commands)
            for code in ("pt-BR", "pt_BR", "PT", "por", "e"):
                with pytest.raises(BadRequest, match=r"(?i)invalid language code"):
                    await bot.set_my_commands([BotCommand("start", "Begin")], language_code=code)
            assert fake.menus == {}

            # At the limits: kept per language, the default apart; "/start" is the command "start".
            longest = [BotCommand("/" + "a" * 32, "é" * MAX_COMMAND_DESCRIPTION), BotCommand("start", "Begin")]
            assert await bot.set_my_commands(longest, language_code="pt")
            assert await bot.set_my_commands([BotCommand("help", "Help")])
            assert fake.menus["pt"] == [
                {"command": "a" * 32, "description": "é" * MAX_COMMAND_DESCRIPTION},
                {"command": "start", "description": "Begin"},
            ]
            assert fake.commands == [{"command": "help", "description": "Help"}]
            assert [c.command for c in await bot.get_my_commands(language_code="pt")] == ["a" * 32, "start"]
            assert await bot.set_my_commands([], language_code="pt")  # an empty menu removes the language's own
            assert set(fake.menus) == {""}

            with pytest.raises(BadRequest, match=r"(?i)too long"):
                await bot.set_my_description("x" * (MAX_DESCRIPTION + 1), language_code="ru")
            with pytest.raises(BadRequest, match=r"(?i)too long"):
                await bot.set_my_short_description("x" * (MAX_SHORT_DESCRIPTION + 1), language_code="ru")
            with pytest.raises(BadRequest, match=r"(?i)invalid language code"):
                await bot.set_my_description("Hola", language_code="es-419")
            assert await bot.set_my_description("ж" * MAX_DESCRIPTION, language_code="ru")
            assert await bot.set_my_short_description("ж" * MAX_SHORT_DESCRIPTION, language_code="ru")
            assert await bot.set_my_description("Hi")
            assert fake.descriptions == {"ru": "ж" * MAX_DESCRIPTION, "": "Hi"}
            assert fake.short_descriptions == {"ru": "ж" * MAX_SHORT_DESCRIPTION}
            assert (await bot.get_my_short_description("ru")).short_description == "ж" * MAX_SHORT_DESCRIPTION
            assert await bot.set_my_description("", language_code="ru")  # removed: Russians see the default
            assert fake.descriptions == {"": "Hi"}

    asyncio.run(scenario())


# -- the command menu in every language ----------------------------------------------------------


def test_the_command_menu_and_descriptions_are_published_in_every_language() -> None:
    assert menu_languages() == {TELEGRAM_CODES[code]: code for code in LANGUAGES}

    async def scenario(fake: FakeTelegram) -> None:
        assert set(fake.menus) == {"", *TELEGRAM_CODES.values()}
        for code, telegram_code in [(ENGLISH, ""), *TELEGRAM_CODES.items()]:
            tr = texts_for(code)
            menu = fake.menus[telegram_code]
            assert {c["command"]: c["description"] for c in menu} == command_descriptions(tr), code
            assert [c["command"] for c in menu] == ["start", "help", "about", "whois", "privacy", "forget"]
            assert all(len(c["description"]) <= MAX_COMMAND_DESCRIPTION for c in menu)
            assert fake.descriptions[telegram_code] == bot_description(tr)
            assert fake.short_descriptions[telegram_code] == short_description(tr)
        assert not [c.error for c in fake.calls if c.error]

    with_bot(scripted(), scenario)


def test_every_language_has_its_own_words_in_the_menu(marked: None) -> None:
    """With marked catalogs: each language's menu and descriptions are looked up in that language."""

    async def scenario(fake: FakeTelegram) -> None:
        for code, telegram_code in TELEGRAM_CODES.items():
            expected = "" if code == ENGLISH else mark(code)
            texts = [c["description"] for c in fake.menus[telegram_code]]
            texts += [fake.descriptions[telegram_code], fake.short_descriptions[telegram_code]]
            assert all(t.startswith(expected) and (expected or "«" not in t) for t in texts), (code, texts)

    with_bot(scripted(), scenario)


def test_the_default_menu_is_in_the_bots_default_language(marked: None) -> None:
    """DEFAULT_LANGUAGE=de: users whose app's language the bot does not speak see the German menu."""

    async def scenario(fake: FakeTelegram) -> None:
        assert fake.commands == fake.menus["de"] and fake.commands[0]["description"].startswith(mark("de"))
        assert fake.descriptions[""] == bot_description(texts_for("de"))
        assert fake.menus["en"][0]["description"] == command_descriptions(texts_for(ENGLISH))["start"]
        # A user whose app says Chinese, or nothing, is answered in German too.
        for language_code in ("zh-hans", None):
            user, chat = fake.new_user("Lin", language_code)
            assert await commanded(fake, "/help", chat, user) == scripted().help_text(texts_for("de"))

    with_bot(scripted(default_language="de"), scenario)


def test_a_refused_menu_is_only_logged_and_the_other_languages_are_still_published(
    core: ChatCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="doppelbot.telegram")

    async def main() -> None:
        async with FakeTelegram() as fake:
            too_long = "Bad Request: command description length must not exceed 256"
            fake.fail_next("setMyCommands", 400, too_long)  # the first: the default menu
            stop = asyncio.Event()
            app = build_application(fake.token, core, fake.base_url, fake.base_file_url)
            running = asyncio.create_task(run_telegram(app, stop))
            try:
                sent = fake.push_private_photo(SURE_PHOTO)
                assert "sure" in await reply(fake, sent)  # the bot answers all the same
                assert set(fake.menus) == set(TELEGRAM_CODES.values())
                assert set(fake.descriptions) == {"", *TELEGRAM_CODES.values()}
            finally:
                stop.set()
                await asyncio.wait_for(running, 30)
            assert fake.token not in caplog.text
            (warning,) = [r.getMessage() for r in caplog.records if "could not set" in r.getMessage()]
            assert "command menu for everyone" in warning and "must not exceed 256" in warning

    asyncio.run(main())


def test_an_unreachable_bot_api_stops_the_menus_at_the_first_failure(
    core: ChatCore, caplog: pytest.LogCaptureFixture
) -> None:
    """A 502 would strike every one of the 21 calls, each after its wait: one warning, and the bot polls at once."""
    caplog.set_level(logging.WARNING, logger="doppelbot.telegram")

    async def main() -> None:
        async with FakeTelegram() as fake:
            fake.bad_gateway_next("setMyDescription")
            stop = asyncio.Event()
            running = asyncio.create_task(
                run_telegram(build_application(fake.token, core, fake.base_url, fake.base_file_url), stop)
            )
            try:
                sent = fake.push_private_photo(SURE_PHOTO)
                assert "sure" in await reply(fake, sent)
            finally:
                stop.set()
                await asyncio.wait_for(running, 30)
            published = [c.method for c in fake.calls if c.method.startswith("setMy")]
            assert published == ["setMyCommands", "setMyDescription"]
            warnings = [r.getMessage() for r in caplog.records if "could not set" in r.getMessage()]
            assert len(warnings) == 1 and "description" in warnings[0] and fake.token not in caplog.text

    asyncio.run(main())


def test_a_webhook_replica_publishes_the_menus_and_stops_without_waiting_for_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """By webhook the menus go out while updates are taken: a stop meanwhile (a rolling deploy) is not held up."""
    caplog.set_level(logging.WARNING, logger="doppelbot.telegram")

    async def run(fake: FakeTelegram) -> tuple[WebhookIntake, asyncio.Event, asyncio.Task]:
        app = build_application(fake.token, scripted(), fake.base_url, fake.base_file_url, polling=False)
        intake = WebhookIntake(app, "webhook-secret", MemoryUpdateLog(2.0), fake.token.partition(":")[0])
        stop = asyncio.Event()
        return intake, stop, asyncio.create_task(run_telegram_webhook(app, intake, stop, drain_seconds=1.0))

    async def main() -> None:
        async with FakeTelegram() as fake:
            intake, stop, running = await run(fake)
            everyone = {"", *TELEGRAM_CODES.values()}
            await fake.wait_until(lambda: set(fake.short_descriptions) == everyone, what="every language's profile")
            assert set(fake.menus) == set(fake.descriptions) == everyone
            stop.set()
            await asyncio.wait_for(running, 30)
        async with FakeTelegram() as fake:
            fake.slow_next("setMyDescription", 60.0)  # Telegram hangs on the second call
            intake, stop, running = await run(fake)
            await fake.wait_for("setMyDescription")
            assert intake.accepting
            stop.set()
            await asyncio.wait_for(running, 30)
            assert not intake.accepting and set(fake.menus) == {""}
            # Stopped before python-telegram-bot gave up on the hanging call (which it would have logged).
            assert not [r for r in caplog.records if "could not set" in r.getMessage()]

    asyncio.run(main())


# -- replies in the user's language --------------------------------------------------------------


def test_every_reply_to_a_user_is_in_their_apps_language(marked: None) -> None:
    """With marked catalogs: photos, refusals and commands for a Spanish app, a Brazilian one, an English one."""
    core = scripted()

    async def scenario(fake: FakeTelegram) -> None:
        for language_code, code in (("es", "es"), ("pt-br", "pt_BR"), ("en", ENGLISH)):
            tr = texts_for(code)
            user, chat = fake.new_user("Ana", language_code)
            sure = fake.push_photo(SURE_PHOTO, chat, sender=user)
            unsure = fake.push_photo(UNSURE_PHOTO, chat, sender=user)
            pair = fake.push_photo(PAIR_PHOTO, chat, sender=user)
            pdf = fake.push_document(PDF, "minutes.pdf", "application/pdf", chat=chat, sender=user)
            big = fake.push_document(b"\xff\xd8\xff", "big.jpg", file_size=30 * 1024 * 1024, chat=chat, sender=user)
            sticker = fake.push_message(chat, user, sticker=STICKER)
            replies = [await reply(fake, m) for m in (sure, unsure, pair, pdf, big, sticker)]
            assert replies[0] == sentence(tr.gettext(SURE, name="Eileen", confidence=tr.percent(0.97)))
            assert replies[1] == sentence(tr.gettext(NOT_SURE, name="Twin", confidence=tr.percent(0.55)))
            assert replies[2].splitlines()[0] == tr.ngettext(*FACES, 2)
            assert replies[3:] == [
                tr.gettext(NOT_AN_IMAGE),
                core.refuse_size(30 * 1024 * 1024, tr).text,
                tr.gettext(NOT_AN_IMAGE),
            ]
            commands = {c: await commanded(fake, c, chat, user) for c in ("/start", "/help", "/about", "/privacy")}
            assert commands == {
                "/start": core.start_text(tr),
                "/help": core.help_text(tr),
                "/about": core.about_text(tr),
                "/privacy": core.privacy_text(tr),
            }
            assert await commanded(fake, "/whois", chat, user) == core.whois_without_photo(tr).text
            assert await commanded(fake, "what is this?", chat, user) == core.help_text(tr)
            assert await commanded(fake, "/forget", chat, user) == (await core.forget("telegram", "x", tr)).text
            everything = [*replies, *commands.values()]
            if code == ENGLISH:
                assert not any("«" in text for text in everything), everything
            else:
                assert all(text.startswith(mark(code)) for text in everything), everything
                listed = replies[2].splitlines()[1:]
                assert [line[: 3 + len(mark(code))] for line in listed] == [f"{i}. {mark(code)}" for i in (1, 2)]

    with_bot(core, scenario)


def test_a_failure_is_apologized_for_in_the_users_language(marked: None) -> None:
    async def scenario(fake: FakeTelegram) -> None:
        user, chat = fake.new_user("Olga", "ru")
        fake.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        sent = fake.push_photo(PAIR_PHOTO, chat, sender=user)
        assert await reply(fake, sent) == scripted().failed(texts_for("ru")).text
        assert (await reply(fake, sent)).startswith(mark("ru"))

    with_bot(scripted(), scenario)


def test_in_a_group_the_reply_is_in_the_language_of_whoever_asked(marked: None) -> None:
    core = scripted()

    async def scenario(fake: FakeTelegram) -> None:
        ana, _ = fake.new_user("Ana", "es")
        olga, _ = fake.new_user("Olga", "ru")
        english = fake.user  # the fake's own user: an English app
        # An English user's photo, asked about by a Spanish user: Spanish; and by a Russian one: Russian.
        photo = fake.push_group_photo(SURE_PHOTO, caption="look who I met", sender=english)
        fake.push_reply(photo, "/whois", sender=ana)
        await fake.wait_until(lambda: len(replies_to(fake, photo)) == 1, what="the Spanish answer")
        fake.push_reply(photo, "@doppel_test_bot", sender=olga)
        await fake.wait_until(lambda: len(replies_to(fake, photo)) == 2, what="the Russian answer")
        spanish, russian = (text_of(c) for c in replies_to(fake, photo))
        assert spanish.startswith(mark("es")) and russian.startswith(mark("ru")), (spanish, russian)
        assert russian == describe(SCRIPT[SURE_PHOTO].answer, tr=texts_for("ru")).text
        # A Spanish user's photo, asked about by the English one: English.
        theirs = fake.push_group_photo(UNSURE_PHOTO, caption="¿quién es?", sender=ana)
        fake.push_reply(theirs, "@doppel_test_bot who?", sender=english)
        assert await reply(fake, theirs) == describe(SCRIPT[UNSURE_PHOTO].answer).text
        # Asking about no photo: told how, in the asker's language (quoting the question).
        question = fake.push_text("/whois", fake.group_chat, sender=olga)
        assert await reply(fake, question) == core.whois_without_photo(texts_for("ru")).text
        # Their own captioned photo: the sender is the asker.
        own = fake.push_group_photo(PAIR_PHOTO, caption="@doppel_test_bot", sender=olga)
        assert (await reply(fake, own)).startswith(texts_for("ru").ngettext(*FACES, 2))

    with_bot(core, scenario)


def test_a_press_is_answered_in_the_pressers_language(marked: None, worker, tmp_path: Path) -> None:
    """The buttons under an answer are in the asker's language; each press's toast in the presser's, and so is the
    evidence a Why? press brings (a second look within the minute is refused, in the presser's words too)."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", b"k" * 32)
    feedback = Feedback(store, worker.examine, lambda: list(worker.classifier.classes), why=worker.why)
    core = ChatCore(worker, RateLimiter(1), feedback=feedback)  # one photo a minute, and one look again

    async def press(fake: FakeTelegram, answer: Call, label: str, user: dict) -> str | None:
        data = [b["callback_data"] for row in fake.buttons(answer.result) for b in row if label in b["text"]]
        query = fake.push_callback(answer.result, data[0], user)
        await fake.wait_until(lambda: fake.answer_to(query) is not None, what=f"the press on {label!r} answered")
        return fake.answer_to(query).params.get("text")

    async def scenario(fake: FakeTelegram) -> None:
        ana, _ = fake.new_user("Ana", "es")
        olga, _ = fake.new_user("Olga", "ru")
        photo = fake.push_group_photo(jpeg(scene(1)), caption="@doppel_test_bot", sender=ana)
        await fake.wait_until(lambda: replies_to(fake, photo), what="the answer")
        (answer,) = replies_to(fake, photo)
        es = texts_for("es")
        buttons = [b["text"] for row in answer.keyboard for b in row]
        assert es.gettext("Neither of them") in buttons and es.gettext(WHY) in buttons, buttons
        assert await press(fake, answer, "Twin", olga) == texts_for("ru").gettext(THANKS)
        assert await press(fake, answer, "Eileen", fake.user) == THANKS  # an English app: no mark
        assert await press(fake, answer, "Eileen", ana) == es.gettext(THANKS)
        assert await press(fake, answer, WHY, olga) in (None, texts_for("ru").gettext(LOOKING))
        await fake.wait_until(lambda: replies_to(fake, answer.result), what="the evidence")
        (evidence,) = replies_to(fake, answer.result)
        assert evidence.method == "sendPhoto" and text_of(evidence).startswith(mark("ru")), text_of(evidence)
        assert (await press(fake, answer, WHY, olga)).startswith(mark("ru") + "You're asking faster")

    try:
        with_bot(core, scenario)
    finally:
        store.close()


# -- against the catalogs: Spanish and Russian as translators wrote them -------------------------


def test_a_spanish_user_gets_spanish_for_a_photo_a_not_sure_a_refusal_and_help() -> None:
    """Awaits the filled Spanish catalog for its last assertions (that Spanish is not the English)."""
    core, es = scripted(), texts_for("es")

    async def scenario(fake: FakeTelegram) -> None:
        user, chat = fake.new_user("Lucía", "es")
        sure = fake.push_photo(SURE_PHOTO, chat, sender=user)
        unsure = fake.push_photo(UNSURE_PHOTO, chat, sender=user)
        pdf = fake.push_document(PDF, "actas.pdf", "application/pdf", chat=chat, sender=user)
        texts = [await reply(fake, m) for m in (sure, unsure, pdf)]
        help_text = await commanded(fake, "/help", chat, user)
        english = [  # English words, Spanish numbers ("97 %"): what an empty catalog gives
            f"Eileen, {es.percent(0.97)} sure",
            f"Not sure (maybe Twin, {es.percent(0.55)})",
            NOT_AN_IMAGE,
            core.help_text(texts_for(ENGLISH)),
        ]
        expected = [
            sentence(es.gettext(SURE, name="Eileen", confidence=es.percent(0.97))),
            sentence(es.gettext(NOT_SURE, name="Twin", confidence=es.percent(0.55))),
            es.gettext(NOT_AN_IMAGE),
            core.help_text(es),
        ]
        assert [*texts, help_text] == expected
        assert "Eileen" in texts[0] and "Twin" in texts[1]  # names are never translated
        for spanish, words in zip([*texts, help_text], english, strict=True):
            assert spanish != words, f"not translated into Spanish yet: {words!r}"

    with_bot(core, scenario)


def test_a_russian_user_gets_the_right_plural_for_1_2_and_5_faces(core: ChatCore, worker) -> None:
    """Real faces through the model: "I found {n} faces:" takes Russian's plural form for each count (лицо, лица,
    лиц). Awaits the filled Russian catalog for its last assertions."""
    ru = texts_for("ru")
    photos = {n: jpeg(scene(n)) for n in (1, 2, 5)}

    async def scenario(fake: FakeTelegram) -> None:
        user, chat = fake.new_user("Olga", "ru")
        sent = {n: fake.push_photo(data, chat, sender=user) for n, data in photos.items()}
        texts = {n: await reply(fake, m) for n, m in sent.items()}
        one = await worker.classify(photos[1])
        assert texts[1] == describe(one.answer, tr=ru).text
        for n in (2, 5):
            assert texts[n].splitlines()[0] == ru.ngettext(*FACES, n), texts[n]
            assert len(texts[n].splitlines()) == n + 1
        # Russian's three forms: 2 faces and 5 faces are different words; 1 face is told as the face itself.
        two, five = (texts[n].splitlines()[0].replace(str(n), "") for n in (2, 5))
        assert two != five, f"the Russian catalog has no plural forms yet: {two!r}"
        assert texts[1] != describe(one.answer).text, "not translated into Russian yet"

    with_bot(core, scenario)


def test_a_russian_crowd_of_21_takes_the_singular_form() -> None:
    """21 takes the form of 1 in Russian ("21 лицо"): the plural comes from the catalog's rule, not from n == 1."""
    ru = texts_for("ru")

    async def scenario(fake: FakeTelegram) -> None:
        user, chat = fake.new_user("Olga", "ru")
        text = await reply(fake, fake.push_photo(CROWD_PHOTO, chat, sender=user))
        lines = text.splitlines()
        assert lines[0] == ru.ngettext(*FACES, 21)
        assert lines[-1] == ru.ngettext("and {n} more.", "and {n} more.", 1)
        assert ru.translations.ngettext(*FACES, 21) == ru.translations.ngettext(*FACES, 1)

    with_bot(scripted(), scenario)
