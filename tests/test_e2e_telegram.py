"""What a Telegram user sees, through the real `python -m bot` process and a fake Bot API (one process per module)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core import ChatCore, RateLimiter, bot_description, command_descriptions, read_model_info, short_description
from bot.feedback import Feedback
from bot.i18n import ENGLISH, LANGUAGES, Texts, texts_for
from feedback.store import FeedbackStore
from testkit.e2e import LiveBot, model_folder, telegram_replies_to, telegram_text
from testkit.fake_telegram import MAX_COMMAND_DESCRIPTION, FakeTelegram
from testkit.imagery import encode, jpeg, scene

EILEEN = re.compile(r"Eileen, (9\d|100)% sure")
TWIN = re.compile(r"Twin, (9\d|100)% sure")


@pytest.fixture(scope="module")
def live(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    """The bot with Telegram only, default settings (rate limit included)."""
    folder = tmp_path_factory.mktemp("e2e_telegram")
    with LiveBot(model_folder(exported, folder / "model"), folder, discord=False) as bot:
        yield bot
    assert FakeTelegram().token not in bot.log, "the bot logged its token"


@pytest.fixture(scope="module")
def wording(live: LiveBot) -> Iterator[ChatCore]:
    """The chat core's sentences for this model, with feedback on as the bot runs by default, to compare the
    replies with."""
    store = FeedbackStore("sqlite://", b"wording-key-0123456789")
    feedback = Feedback(store, examine=None, classes=lambda: ["Eileen", "Twin"])
    yield ChatCore(None, RateLimiter(1), lambda: read_model_info(live.model), feedback=feedback, keep_days=90)
    store.close()


def answer(live: LiveBot, *messages: dict) -> list[str]:
    """The one reply to each message, once all have come; fails if any message got two."""
    fake = live.telegram

    async def wait() -> None:
        await live.eventually(lambda: all(telegram_replies_to(fake, m) for m in messages), what="a reply to each")

    live.run(wait())
    texts = []
    for m in messages:
        sent = live.call(lambda m=m: telegram_replies_to(fake, m))
        assert len(sent) == 1, f"message {m['message_id']} got {len(sent)} replies: {[telegram_text(c) for c in sent]}"
        texts.append(telegram_text(sent[0]))
    return texts


def downloaded(fake: FakeTelegram, file_id: str) -> bool:
    return fake.files[file_id].file_path in fake.downloads


def said_in(fake: FakeTelegram, chat: dict) -> list[str]:
    """Every text the bot sent in `chat` so far (a private chat's commands are answered unquoted); on the fakes'
    loop."""
    return [telegram_text(c) for c in fake.replies if str(c.params["chat_id"]) == str(chat["id"])]


def sure_of(tr: Texts, name: str) -> re.Pattern:
    """A one-face answer naming `name` at 90% or more, in `tr`'s words and number format ("Eileen, 97 % sure")."""
    text = tr.gettext("{name}, {confidence} sure", name=name, confidence="CONFIDENCE")
    percent = re.escape(tr.percent(0.97)).replace("97", r"(9\d|100)")
    return re.compile(re.escape(text[:1].upper() + text[1:]).replace("CONFIDENCE", percent))


def test_a_photo_gets_one_reply_naming_the_right_person(live: LiveBot) -> None:
    fake = live.telegram
    ada, ada_chat = live.call(lambda: fake.new_user("Ada"))
    bea, bea_chat = live.call(lambda: fake.new_user("Bea"))
    eileen = live.call(lambda: fake.push_photo(jpeg(scene(1)), ada_chat, sender=ada))
    twin = live.call(lambda: fake.push_photo(jpeg(scene(1, twins=(True,))), bea_chat, sender=bea))
    first, second = answer(live, eileen, twin)
    assert EILEEN.fullmatch(first), first
    assert TWIN.fullmatch(second), second
    # "typing..." showed in the asker's chat while the bot looked, and the command menu was set at start.
    actions = live.call(lambda: [c.params for c in fake.called("sendChatAction")])
    assert {"chat_id": ada_chat["id"], "action": "typing"} in actions
    commands = [c["command"] for c in live.call(lambda: fake.commands)]
    assert commands == ["start", "help", "about", "whois", "privacy", "forget"]


def test_two_faces_come_back_as_the_boxed_photo_with_a_numbered_list(live: LiveBot) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Cy"))
    sent = live.call(lambda: fake.push_photo(jpeg(scene(2, twins=(False, True))), chat, sender=user))
    (caption,) = answer(live, sent)
    assert caption.splitlines()[0] == "I found 2 faces:"
    assert [line.split(",")[0] for line in caption.splitlines()[1:]] == ["1. Eileen", "2. Twin"]
    (reply,) = live.call(lambda: telegram_replies_to(fake, sent))
    assert reply.method == "sendPhoto" and reply.files["photo"][:3] == b"\xff\xd8\xff"


def test_an_image_sent_as_a_file_is_answered(live: LiveBot) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Dee"))
    portrait = encode(scene(1, twins=(True,)), "PNG")
    png = live.call(lambda: fake.push_document(portrait, "portrait.png", "image/png", chat=chat, sender=user))
    # Uncompressed JPEGs often come as application/octet-stream: the name says image.
    octets = "application/octet-stream"
    unnamed = live.call(lambda: fake.push_document(jpeg(scene(1)), "IMG_0001.JPG", octets, chat=chat, sender=user))
    texts = answer(live, png, unnamed)
    assert TWIN.fullmatch(texts[0]) and EILEEN.fullmatch(texts[1]), texts


def test_a_file_that_is_not_an_image_is_refused_unread(live: LiveBot, wording: ChatCore) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Eve"))
    notes = b"%PDF-1.7\n%minutes"
    pdf = live.call(lambda: fake.push_document(notes, "minutes.pdf", "application/pdf", chat=chat, sender=user))
    assert answer(live, pdf) == [wording.not_an_image().text]
    assert "isn't an image" in wording.not_an_image().text
    assert not live.call(lambda: downloaded(fake, pdf["document"]["file_id"]))


def test_an_oversized_file_is_refused_before_download(live: LiveBot) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Fay"))
    huge = 30 * 1024 * 1024  # announced by Telegram; the fake holds three bytes
    big = live.call(lambda: fake.push_document(b"\xff\xd8\xff", "huge.jpg", file_size=huge, chat=chat, sender=user))
    assert answer(live, big) == ["That file is 30 MB; I can look at files up to 20 MB."]
    assert not live.call(lambda: downloaded(fake, big["document"]["file_id"]))


def test_a_corrupt_jpeg_gets_a_plain_answer_and_the_bot_carries_on(live: LiveBot) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Gus"))
    whole = jpeg(scene(1))
    truncated = live.call(lambda: fake.push_photo(whole[: len(whole) // 3], chat, sender=user))
    scrambled = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # a JPEG's first bytes, then nonsense
    garbage = live.call(lambda: fake.push_document(scrambled, "x.jpg", chat=chat, sender=user))
    after = live.call(lambda: fake.push_photo(whole, chat, sender=user))
    texts = answer(live, truncated, garbage, after)
    assert texts[0] == "This image file is cut short or damaged, so I can't read it.", texts
    assert "damaged" in texts[1] or "isn't an image" in texts[1], texts
    assert EILEEN.fullmatch(texts[2]), texts


def test_in_a_group_only_a_photo_that_mentions_the_bot_is_answered(live: LiveBot) -> None:
    fake = live.telegram
    user, _ = live.call(lambda: fake.new_user("Hal"))
    photo = jpeg(scene(1))
    unaddressed = live.call(lambda: fake.push_group_photo(photo, caption="look who I met", sender=user))
    addressed = live.call(lambda: fake.push_group_photo(photo, caption="@doppel_test_bot who is it?", sender=user))
    (text,) = answer(live, addressed)
    assert EILEEN.fullmatch(text), text
    live.run(live.quiet())
    assert live.call(lambda: telegram_replies_to(fake, unaddressed)) == []
    assert not live.call(lambda: downloaded(fake, unaddressed["photo"][-1]["file_id"]))
    assert len(live.log_lines(r"request adapter=telegram chat=supergroup ")) == 1


def test_start_help_and_about_answer_with_the_bots_texts(live: LiveBot, wording: ChatCore) -> None:
    fake = live.telegram
    chats = [live.call(lambda n=n: fake.new_user(n))[1] for n in ("Ivy", "Jay", "Kit")]
    for command, chat in zip(("/start", "/help", "/about"), chats, strict=True):
        live.call(lambda command=command, chat=chat: fake.push_command(command, chat))

    def in_chat(chat: dict) -> list[str]:  # a private chat's command is answered without quoting it
        return [telegram_text(c) for c in fake.replies if str(c.params["chat_id"]) == str(chat["id"])]

    live.run(live.eventually(lambda: all(in_chat(c) for c in chats), what="an answer to each command"))
    live.run(live.quiet(0.5))
    [start], [help_], [about] = (live.call(lambda c=c: in_chat(c)) for c in chats)
    assert start == wording.start_text() and "Eileen or Twin" in start
    assert help_ == wording.help_text() and "mention me" in help_
    assert about == wording.about_text()
    assert "Validation accuracy: 98.5% on 200 faces" in about and "Trained: January 31, 2025." in about


def test_more_photos_than_the_rate_limit_get_one_polite_refusal(live: LiveBot) -> None:
    fake = live.telegram
    user, chat = live.call(lambda: fake.new_user("Jo"))  # the default limit: 10 photos a minute
    photo = jpeg(scene(1))
    sent = [live.call(lambda: fake.push_photo(photo, chat, sender=user)) for _ in range(11)]
    texts = answer(live, *sent)
    refused = [t for t in texts if t.startswith("You're sending photos faster than I can look at them")]
    assert len(refused) == 1 and sum(bool(EILEEN.fullmatch(t)) for t in texts) == 10, texts


def test_a_spanish_user_gets_spanish_for_a_photo_a_refusal_and_help(live: LiveBot, wording: ChatCore) -> None:
    """A user whose Telegram app is in Spanish. Awaits the filled Spanish catalog for its last assertion."""
    fake, es = live.telegram, texts_for("es")
    user, chat = live.call(lambda: fake.new_user("Lucía", "es"))
    photo = live.call(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=user))
    notes = b"%PDF-1.7\n%actas"
    pdf = live.call(lambda: fake.push_document(notes, "actas.pdf", "application/pdf", chat=chat, sender=user))
    sure, refused = answer(live, photo, pdf)
    assert sure_of(es, "Eileen").fullmatch(sure), sure
    assert refused == wording.not_an_image(es).text
    live.call(lambda: fake.push_command("/help", chat, sender=user))
    live.run(live.eventually(lambda: len(said_in(fake, chat)) == 3, what="the answer to /help"))
    help_ = live.call(lambda: said_in(fake, chat))[-1]
    assert help_ == wording.help_text(es) and "Eileen" in help_ and "Twin" in help_  # names stay as they are
    # Not the English words (with Spanish numbers, "97 %", as an empty catalog gives them).
    assert not sure_of(texts_for(ENGLISH), "Eileen").fullmatch(sure.replace("\xa0", "")), f"not Spanish: {sure}"
    assert refused != wording.not_an_image().text and help_ != wording.help_text(), "not Spanish yet"


def test_a_russian_user_gets_the_right_plural_for_1_2_and_5_faces(live: LiveBot) -> None:
    """A user whose app is in Russian: "I found {n} faces:" in the catalog's plural form for each number (two
    faces and five take different words in Russian). Awaits the filled Russian catalog for its last assertion."""
    fake, ru = live.telegram, texts_for("ru")
    user, chat = live.call(lambda: fake.new_user("Olga", "ru"))
    photos = [live.call(lambda n=n: fake.push_photo(jpeg(scene(n)), chat, sender=user)) for n in (1, 2, 5)]
    one, two, five = answer(live, *photos)
    assert sure_of(ru, "Eileen").fullmatch(one), one
    assert two.splitlines()[0] == ru.ngettext("I found {n} face:", "I found {n} faces:", 2), two
    assert five.splitlines()[0] == ru.ngettext("I found {n} face:", "I found {n} faces:", 5), five
    assert [len(two.splitlines()), len(five.splitlines())] == [3, 6]
    assert two.splitlines()[0].replace("2", "") != five.splitlines()[0].replace("5", ""), "no Russian plurals yet"


def test_in_a_group_the_answer_is_in_the_askers_language(live: LiveBot) -> None:
    fake = live.telegram
    poster, _ = live.call(lambda: fake.new_user("Pat", "en"))
    asker, _ = live.call(lambda: fake.new_user("Olga", "ru"))
    photo = live.call(lambda: fake.push_group_photo(jpeg(scene(1)), caption="look who I met", sender=poster))
    live.call(lambda: fake.push_reply(photo, "/whois", sender=asker))
    (text,) = answer(live, photo)
    assert sure_of(texts_for("ru"), "Eileen").fullmatch(text), text


def test_the_command_menu_is_set_for_every_language(live: LiveBot) -> None:
    """The menu, the description and the short description for each language's users (pt_BR's for every Portuguese
    app), and in English for the rest. Awaits the filled catalogs for its last assertion."""
    fake = live.telegram
    menus, descriptions, shorts = live.call(lambda: (fake.menus, fake.descriptions, fake.short_descriptions))
    codes = {code.split("_")[0]: code for code in LANGUAGES}
    assert set(menus) == set(descriptions) == set(shorts) == {"", *codes}
    for telegram_code, code in [("", ENGLISH), *codes.items()]:
        tr = texts_for(code)
        assert {c["command"]: c["description"] for c in menus[telegram_code]} == command_descriptions(tr), code
        assert all(len(c["description"]) <= MAX_COMMAND_DESCRIPTION for c in menus[telegram_code]), code
        assert descriptions[telegram_code] == bot_description(tr) and shorts[telegram_code] == short_description(tr)
    assert not live.call(lambda: [c.error for c in fake.calls if c.method.startswith("setMy") and c.error])
    untranslated = [code for code in codes if code != "en" and menus[code] == menus["en"]]
    assert not untranslated, f"menus still in English: {untranslated}"
