"""Users' feedback on Telegram, end to end: the real `python -m bot`, the fake Bot API (inline keyboards, callback
queries, answerCallbackQuery and editMessageReplyMarkup, with Telegram's limits) and the feedback store read back
with `feedback.store`; the Why? button's evidence, sent as a photo replying to the answer. One polling bot serves
the module (restarted by the last two tests); then two webhook replicas sharing Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.error import BadRequest

from bot.core import ChatCore, RateLimiter, read_model_info
from bot.feedback import GONE, NOT_SAVED, THANKS, WHY, WHY_GONE, Feedback
from bot.telegram_feedback import LOOKING
from feedback.keys import feedback_key
from feedback.store import FeedbackStore, ReviewItem
from testkit.e2e import LiveBot, model_folder, telegram_replies_to, telegram_text
from testkit.fake_telegram import Call, FakeTelegram
from testkit.imagery import jpeg, scene
from testkit.postgres_server import PostgresServer
from testkit.redis_server import RedisServer
from testkit.webhook_harness import WebhookBot, deliver

EILEEN = re.compile(r"Eileen, (9\d|100)% sure")
TRAINED_AT = "2025-01-31T12:00:00"  # model_folder's export.json: the model's date a press keeps
ONE_FACE = ["✓ Eileen", "Twin", "Neither of them", WHY]


@pytest.fixture(scope="module")
def model(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(exported, tmp_path_factory.mktemp("feedback-model"))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite file the polling bot keeps presses in (its key beside it, made by the bot: no FEEDBACK_KEY)."""
    return tmp_path_factory.mktemp("feedback-db") / "feedback.sqlite3"


@pytest.fixture(scope="module")
def live(model: Path, database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    env = {"FEEDBACK_DB": f"sqlite:///{database}", "RATE_LIMIT_PER_MINUTE": "1000"}
    with LiveBot(model, tmp_path_factory.mktemp("e2e-feedback"), discord=False, env=env) as bot:
        yield bot
    assert FakeTelegram().token not in bot.log, "the bot logged its token"


@contextmanager
def opened(database: Path) -> Iterator[FeedbackStore]:
    """The bot's store, as `python -m training review` opens it (the key from the file the bot made)."""
    url = f"sqlite:///{database}"
    store = FeedbackStore(url, feedback_key(None, url))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def wording(live: LiveBot, database: Path) -> Iterator[ChatCore]:
    """The chat core's sentences, reading the bot's own store (for /about's tally), to compare replies with."""
    with opened(database) as store:
        feedback = Feedback(store, examine=None, classes=lambda: ["Eileen", "Twin"], model_date=lambda: TRAINED_AT)
        yield ChatCore(None, RateLimiter(1), lambda: read_model_info(live.model), feedback=feedback, keep_days=90)


def someone(live: LiveBot, name: str, user_id: int) -> tuple[dict, dict]:
    """A Telegram user with an id unlike any other number in the store, and their private chat with the bot."""
    user = {"id": user_id, "is_bot": False, "first_name": name, "language_code": "en"}
    chat = {"id": user_id, "type": "private", "first_name": name}
    live.call(lambda: _join(live.telegram, chat))
    return user, chat


def _join(fake: FakeTelegram, chat: dict) -> None:
    fake.chats[chat["id"]] = chat


def answered(live: LiveBot, photo: dict) -> Call:
    """The bot's answer quoting `photo` (its last message: the one with the buttons), once it came."""
    fake = live.telegram
    live.run(live.eventually(lambda: telegram_replies_to(fake, photo), what="the answer to a photo"))
    return live.call(lambda: telegram_replies_to(fake, photo))[-1]


def texts(rows: list[list[dict]] | None) -> list[str]:
    return [button["text"] for row in rows or [] for button in row]


def press(live: LiveBot, answer: Call, label: str, user: dict, redrawn: bool = True) -> tuple[str | None, list[str]]:
    """`user` presses the button under `answer` whose text begins with `label`; the toast they were shown, and the
    buttons under the answer once the bot redrew them (when `redrawn`)."""
    fake, message = live.telegram, answer.result

    def push() -> dict:
        data = [b["callback_data"] for row in fake.buttons(message) for b in row if b["text"].startswith(label)]
        return fake.push_callback(message, data[0], user)

    query = live.call(push)

    def done() -> bool:
        answer = fake.answer_to(query)
        if answer is None or not redrawn:
            return answer is not None
        after = fake.calls[fake.calls.index(answer) :]
        return any(
            c.method == "editMessageReplyMarkup" and c.params.get("message_id") == message["message_id"] for c in after
        )

    live.run(live.eventually(done, what=f"the press on {label!r} answered"))
    toast = live.call(lambda: fake.answer_to(query)).params.get("text")
    return toast, texts(live.call(lambda: fake.buttons(message)))


def why(live: LiveBot, answer: Call, user: dict) -> tuple[str | None, Call]:
    """`user` presses Why? under `answer`: the toast they were shown, and the bot's next message replying to the
    answer (the evidence, once it came)."""
    fake, message = live.telegram, answer.result
    before = len(live.call(lambda: telegram_replies_to(fake, message)))
    toast, _ = press(live, answer, WHY, user, redrawn=False)
    live.run(
        live.eventually(lambda: len(telegram_replies_to(fake, message)) > before, what="the evidence under an answer")
    )
    return toast, live.call(lambda: telegram_replies_to(fake, message))[before]


def new_items(database: Path, before: set[int]) -> list[ReviewItem]:
    """The faces kept since `before` (ids), oldest first, whatever their review."""
    with opened(database) as store:
        return [item for item in store.items(None) if item.id not in before]


def ids(database: Path) -> set[int]:
    with opened(database) as store:
        return {item.id for item in store.items(None)}


def assert_nothing_raw(database: Path, *user_ids: int, photo: bytes = b"") -> None:
    """No user id (nor a private chat's, which is the same number) is in the database file, as text or as an
    integer; nor any run of the photo's bytes (only the face's chip is kept)."""
    kept = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.suffix != ".key")
    for user_id in user_ids:
        assert str(user_id).encode() not in kept and user_id.to_bytes(6, "big") not in kept, user_id
    if photo:
        assert photo[len(photo) // 2 : len(photo) // 2 + 48] not in kept


def test_the_fake_bot_api_holds_keyboards_and_presses_to_telegrams_rules() -> None:
    """The fake these tests stand on refuses what Telegram refuses (python-telegram-bot's own Bot, no bot process)."""

    def keyboard(*data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[InlineKeyboardButton(f"b{i}", callback_data=d) for i, d in enumerate(data)]])

    async def scenario() -> None:
        async with FakeTelegram() as fake, Bot(fake.token, base_url=fake.base_url) as bot:
            chat = fake.private_chat["id"]
            with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):  # 33 characters, 66 bytes
                await bot.send_message(chat, "hi", reply_markup=keyboard("é" * 33))
            with pytest.raises(BadRequest, match=r"(?i)too long"):
                await bot.send_message(chat, "hi", reply_markup=keyboard(*(str(i) for i in range(101))))
            photo = fake.push_private_photo(b"\xff\xd8\xff a photo")
            quoted = ReplyParameters(photo["message_id"])
            sent = (
                await bot.send_message(chat, "hi", reply_markup=keyboard("a", "b"), reply_parameters=quoted)
            ).to_dict()

            # A press carries the message with the one it replied to, one level deep; only a shown button presses.
            query = fake.push_callback(sent, "a")
            replied = query["message"]["reply_to_message"]
            assert replied["photo"] == photo["photo"] and "reply_to_message" not in replied
            with pytest.raises(ValueError):
                fake.push_callback(sent, "c")
            # Polling for messages only: the press is never delivered, as Telegram drops it.
            assert [u.callback_query for u in await bot.get_updates(allowed_updates=["message"])] == [None]
            later = fake.push_callback(sent, "b")
            (update,) = await bot.get_updates(offset=fake.delivered[-1] + 1, allowed_updates=["callback_query"])
            assert update.callback_query.id == later["id"] and update.callback_query.data == "b"

            with pytest.raises(BadRequest):
                await bot.answer_callback_query(later["id"], "x" * 201)
            assert await bot.answer_callback_query(later["id"], "Thanks")
            with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # answered once only
                await bot.answer_callback_query(later["id"], "Thanks")
            fake.callback_answer_s = 0.0
            with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # too late
                await bot.answer_callback_query(fake.push_callback(sent, "b")["id"])

            with pytest.raises(BadRequest, match=r"(?i)not modified"):
                await bot.edit_message_reply_markup(chat, sent["message_id"], reply_markup=keyboard("a", "b"))
            await bot.edit_message_reply_markup(chat, sent["message_id"], reply_markup=keyboard("c"))
            assert fake.buttons(sent) == [[{"text": "b0", "callback_data": "c"}]]
            with pytest.raises(BadRequest, match=r"(?i)can.t be edited"):
                await bot.edit_message_reply_markup(chat, photo["message_id"], reply_markup=keyboard("c"))
            with pytest.raises(BadRequest, match=r"(?i)not found"):
                await bot.edit_message_reply_markup(chat, 9999, reply_markup=keyboard("c"))
            await bot.edit_message_reply_markup(chat, sent["message_id"])  # no keyboard: removed
            assert fake.buttons(sent) == []
            fake.delete_message(photo)
            assert (
                "reply_to_message"
                not in fake.push_callback(
                    (await bot.send_message(chat, "x", reply_markup=keyboard("d"), reply_parameters=quoted)).to_dict(),
                    "d",
                )["message"]
            )

    asyncio.run(scenario())


def test_a_private_photo_gets_buttons_and_a_press_is_kept_for_review_without_the_users_id(
    live: LiveBot, database: Path
) -> None:
    fake, before = live.telegram, ids(database)
    ada, chat = someone(live, "Ada", 7_391_004_218)
    data = jpeg(scene(1))
    photo = live.call(lambda: fake.push_photo(data, chat, sender=ada))
    answer = answered(live, photo)
    assert EILEEN.fullmatch(telegram_text(answer)) and answer.reply_to == photo["message_id"]
    assert texts(answer.keyboard) == ONE_FACE

    assert press(live, answer, "✓ Eileen", ada) == (THANKS, ["✓ Eileen · 1", "Twin", "Neither of them", WHY])
    (item,) = new_items(database, before)
    assert (item.model_label, item.model, item.label, item.votes) == ("Eileen", TRAINED_AT, "Eileen", {"Eileen": 1})
    assert (item.status, item.platform, item.chat_kind, item.model_known) == ("waiting", "telegram", "private", True)
    assert item.model_confidence > 0.9
    with opened(database) as store:
        assert store.chip(item.id)[:3] == b"\xff\xd8\xff"  # the face, as a small JPEG

    # She thinks again: her second press replaces the first, and counts once.
    assert press(live, answer, "Twin", ada) == (THANKS, ["✓ Eileen", "Twin · 1", "Neither of them", WHY])
    (item,) = new_items(database, before)
    assert (item.label, item.votes) == ("Twin", {"Twin": 1})
    assert_nothing_raw(database, ada["id"], photo=data)


def test_a_press_after_the_photo_was_deleted_keeps_nothing_and_says_so(live: LiveBot, database: Path) -> None:
    fake, before = live.telegram, ids(database)
    bo, chat = someone(live, "Bo", 7_391_004_219)
    photo = live.call(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=bo))
    answer = answered(live, photo)
    live.call(lambda: fake.delete_message(photo))
    assert press(live, answer, "✓ Eileen", bo, redrawn=False) == (GONE, ONE_FACE)
    assert new_items(database, before) == []


def test_in_a_group_members_vote_face_by_face_and_forget_removes_exactly_their_own(
    live: LiveBot, database: Path
) -> None:
    fake, before = live.telegram, ids(database)
    group = live.call(lambda: fake.group_chat)
    ann, ben, cy = (
        someone(live, n, i)[0] for n, i in (("Ann", 5_550_301_117), ("Ben", 5_550_302_229), ("Cy", 5_550_303_331))
    )
    # Ann posts a crowd without a word; Ben asks about it: the answer quotes her photo.
    crowd = live.call(lambda: fake.push_photo(jpeg(scene(3, twins=(True, False, True))), group, sender=ann))
    live.call(lambda: fake.push_text("/whois", group, reply_to=crowd, sender=ben))
    answer = answered(live, crowd)
    assert answer.method == "sendPhoto" and telegram_text(answer).startswith("I found 3 faces:")
    assert texts(answer.keyboard) == ["1", "2", "3"]

    back = "« Back (face 1 of 3)"
    assert press(live, answer, "1", ann) == (None, ["Eileen", "✓ Twin", "Neither of them", back, WHY])
    assert press(live, answer, "✓ Twin", ann) == (THANKS, ["Eileen", "✓ Twin · 1", "Neither of them", back, WHY])
    assert press(live, answer, "✓ Twin", ben) == (THANKS, ["Eileen", "✓ Twin · 2", "Neither of them", back, WHY])
    assert press(live, answer, "Neither", cy) == (
        THANKS,
        ["Eileen", "✓ Twin · 2", "Neither of them · 1", back, WHY],
    )
    assert press(live, answer, "« Back", cy) == (None, ["1", "2", "3"])
    assert press(live, answer, "2", ben)[1] == ["✓ Eileen", "Twin", "Neither of them", "« Back (face 2 of 3)", WHY]
    assert press(live, answer, "Twin", ben) == (
        THANKS,
        ["✓ Eileen", "Twin · 1", "Neither of them", "« Back (face 2 of 3)", WHY],
    )

    first, second = new_items(database, before)
    assert (first.model_label, first.votes, first.label, first.chat_kind) == (
        "Twin",
        {"Twin": 2, "neither": 1},
        "Twin",
        "supergroup",
    )
    assert (second.model_label, second.votes) == ("Eileen", {"Twin": 1})
    assert_nothing_raw(database, ann["id"], ben["id"], cy["id"], -group["id"])

    # Ben forgets: his two votes go, and the face only he had marked; Ann's and Cy's votes stay.
    asked = live.call(lambda: fake.push_text("/forget", group, sender=ben))
    live.run(live.eventually(lambda: telegram_replies_to(fake, asked), what="the answer to /forget"))
    (said,) = live.call(lambda: telegram_replies_to(fake, asked))
    assert telegram_text(said).startswith("Done: I deleted the 2 faces you marked"), telegram_text(said)
    (left,) = new_items(database, before)
    assert (left.id, left.votes) == (first.id, {"Twin": 1, "neither": 1})
    again = live.call(lambda: fake.push_text("/forget@doppel_test_bot", group, sender=ben))
    live.run(live.eventually(lambda: telegram_replies_to(fake, again), what="the answer to a second /forget"))
    assert telegram_text(live.call(lambda: telegram_replies_to(fake, again))[0]).startswith("You haven't marked any")


def test_why_sends_the_evidence_as_a_photo_replying_to_the_answer_and_keeps_nothing(
    live: LiveBot, database: Path
) -> None:
    fake, before = live.telegram, ids(database)
    ivy, chat = someone(live, "Ivy", 7_391_004_225)
    data = jpeg(scene(1))
    photo = live.call(lambda: fake.push_photo(data, chat, sender=ivy))
    answer = answered(live, photo)
    fetched = len(live.call(lambda: fake.downloads))
    toast, evidence = why(live, answer, ivy)
    assert toast in (None, LOOKING)  # a quick look is answered with the evidence, a slow one with "Looking…" first
    assert evidence.method == "sendPhoto" and evidence.reply_to == answer.result["message_id"]
    line = telegram_text(evidence)
    assert re.fullmatch(r"Closer to Eileen's photos \(0\.\d\d\) than to Twin's \(0\.\d\d\)\.", line), line
    picture = Image.open(io.BytesIO(evidence.files["photo"]))
    assert picture.format == "JPEG" and picture.width <= 700
    assert texts(live.call(lambda: fake.buttons(answer.result))) == ONE_FACE  # the buttons stay as they were
    # The photo was taken again from Telegram for the press, and nothing of it was kept.
    assert len(live.call(lambda: fake.downloads)) == fetched + 1
    assert new_items(database, before) == []

    # Telegram slow to hand the photo over again: the press is answered at once, within its deadline, and the
    # evidence follows.
    live.call(lambda: fake.slow_next("getFile", 2.5))
    toast, again = why(live, answer, ivy)
    assert toast == LOOKING and telegram_text(again) == line and again.method == "sendPhoto"
    query = live.call(lambda: fake.called("answerCallbackQuery"))[-1]
    assert query.at < again.at

    # The photo deleted meanwhile: the toast says so, and nothing is sent.
    live.call(lambda: fake.delete_message(photo))
    sent = len(live.call(lambda: fake.replies))
    assert press(live, answer, WHY, ivy, redrawn=False)[0] == WHY_GONE
    live.run(live.quiet(0.5))
    assert len(live.call(lambda: fake.replies)) == sent


def test_why_under_a_crowd_explains_the_face_picked(live: LiveBot) -> None:
    fake = live.telegram
    group = live.call(lambda: fake.group_chat)
    jo = someone(live, "Jo", 5_550_304_443)[0]
    crowd = live.call(lambda: fake.push_photo(jpeg(scene(3, twins=(True, False, True))), group, sender=jo))
    live.call(lambda: fake.push_text("/whois", group, reply_to=crowd, sender=jo))
    answer = answered(live, crowd)
    assert press(live, answer, "3", jo)[1][-2:] == ["« Back (face 3 of 3)", WHY]
    _, evidence = why(live, answer, jo)
    assert evidence.method == "sendPhoto" and evidence.params["chat_id"] in (group["id"], str(group["id"]))
    assert telegram_text(evidence).startswith("Face 3: Closer to Twin's photos ("), telegram_text(evidence)


def test_privacy_says_what_is_kept_and_about_counts_the_users_marks(live: LiveBot, wording: ChatCore) -> None:
    fake = live.telegram
    _, chat = someone(live, "Dee", 7_391_004_220)
    eve, eve_chat = someone(live, "Eve", 7_391_004_221)
    answer = answered(live, live.call(lambda: fake.push_photo(jpeg(scene(1)), eve_chat, sender=eve)))
    assert press(live, answer, "✓ Eileen", eve)[0] == THANKS  # one answer marked right, at least
    live.call(lambda: fake.push_command("/privacy", chat))
    live.call(lambda: fake.push_command("/about", eve_chat))

    def said(chat: dict) -> list[str]:  # a private chat's command is answered without quoting it
        return [telegram_text(c) for c in fake.replies if c.params["chat_id"] == chat["id"] and c.reply_to is None]

    live.run(live.eventually(lambda: said(chat) and said(eve_chat), what="/privacy and /about answered"))
    [policy], [about] = live.call(lambda: said(chat)), live.call(lambda: said(eve_chat))
    assert policy == wording.privacy_text()
    assert "never your whole photo" in policy and "/forget" in policy and "90 days" in policy
    assert about == asyncio.run(wording.about())  # the tally read from the same store
    assert about.startswith(wording.about_text()) and " Users marked " in about, about


def test_a_press_after_a_restart_is_kept(live: LiveBot, database: Path) -> None:
    fake, before = live.telegram, ids(database)
    fay, chat = someone(live, "Fay", 7_391_004_222)
    photo = live.call(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=fay))
    answer = answered(live, photo)
    live.relaunch()
    assert press(live, answer, "Neither", fay) == (THANKS, ["✓ Eileen", "Twin", "Neither of them · 1", WHY])
    (item,) = new_items(database, before)
    assert (item.model_label, item.votes, item.label) == ("Eileen", {"neither": 1}, None)


def test_with_feedback_off_only_why_is_offered_and_nothing_kept(live: LiveBot, database: Path) -> None:
    fake, before = live.telegram, ids(database)
    gus, chat = someone(live, "Gus", 7_391_004_223)
    earlier = answered(live, live.call(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=gus)))
    live.relaunch({"FEEDBACK": "off"})
    photo = live.call(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=gus))
    answer = answered(live, photo)
    assert EILEEN.fullmatch(telegram_text(answer)) and texts(answer.keyboard) == [WHY]
    toast, evidence = why(live, answer, gus)
    assert evidence.method == "sendPhoto" and telegram_text(evidence).startswith("Closer to Eileen's photos (")
    # A keyboard drawn before: its press is answered, and only its Why? stays.
    toast, buttons = press(live, earlier, "✓ Eileen", gus)
    assert toast and "off" in toast and buttons == [WHY]
    assert new_items(database, before) == []


# -- webhook replicas ----------------------------------------------------------------------------------------

KEY = "telegram-feedback-test-key"  # replicas sharing a database share its key


def test_a_press_on_the_other_replica_is_kept_and_a_database_down_costs_the_press_not_the_answer(
    model: Path, tmp_path: Path
) -> None:
    with RedisServer() as redis, PostgresServer() as postgres:
        url = postgres.create_database()
        env = {"REDIS_URL": redis.url, "FEEDBACK_DB": url, "FEEDBACK_KEY": KEY}
        with WebhookBot(model, tmp_path / "a", None, env) as first:
            second = WebhookBot(model, tmp_path / "b", None, env).start_beside(first)
            try:
                _replicas(first, second, postgres, url)
            finally:
                second.stop_beside()


def _replicas(first: WebhookBot, second: WebhookBot, postgres: PostgresServer, url: str) -> None:
    fake = first.telegram
    user = {"id": 7_391_004_224, "is_bot": False, "first_name": "Hal"}
    chat = {"id": user["id"], "type": "private", "first_name": "Hal"}
    first.call(lambda: _join(fake, chat))

    def sent(update_of, to: WebhookBot) -> dict:
        """Push what `update_of()` makes; Telegram delivers its update to replica `to` (and retries there)."""
        made = first.call(update_of)
        update = first.call(lambda: fake.pushed[-1])
        first.run(deliver(update, [to.hook]))
        return made

    def answer_on(to: WebhookBot) -> Call:
        photo = sent(lambda: fake.push_photo(jpeg(scene(1)), chat, sender=user), to)
        (answer,) = first.call(lambda: telegram_replies_to(fake, photo))  # sent before the 2xx
        assert texts(answer.keyboard) == ONE_FACE
        return answer

    def pressing(answer: Call, label: str, to: WebhookBot) -> str | None:
        def push() -> dict:
            data = [b["callback_data"] for r in fake.buttons(answer.result) for b in r if b["text"].startswith(label)]
            return fake.push_callback(answer.result, data[0], user)

        query = sent(push, to)
        return first.call(lambda: fake.answer_to(query)).params.get("text")

    answer = answer_on(first)
    assert pressing(answer, "✓ Eileen", second) == THANKS  # the replica that never saw the photo
    assert first.call(lambda: texts(fake.buttons(answer.result))) == ["✓ Eileen · 1", "Twin", "Neither of them", WHY]
    store = FeedbackStore(url, KEY.encode())
    try:
        (item,) = store.items()
        assert (item.model_label, item.votes, item.chat_kind) == ("Eileen", {"Eileen": 1}, "private")

        # Telegram's answer to the toast lost twice (a proxy's 502): the webhook answers 500, Telegram delivers
        # the press again, and it is answered and counted once.
        first.call(lambda: fake.bad_gateway_next("answerCallbackQuery", times=2))
        assert pressing(answer, "Twin", first) == THANKS
        assert [c.fault for c in first.call(lambda: fake.called("answerCallbackQuery"))][-3:] == [
            "bad_gateway",
            "bad_gateway",
            None,
        ]
        (item,) = store.items()
        assert item.votes == {"Twin": 1}

        # The database goes down: photos are still answered (with their buttons); a press is lost, and said so.
        postgres.stop()
        down = answer_on(second)
        assert EILEEN.fullmatch(telegram_text(down))
        assert pressing(down, "✓ Eileen", first) == NOT_SAVED
        postgres.start()
        assert pressing(down, "✓ Eileen", second) == THANKS
        assert [i.votes for i in store.items()] == [{"Twin": 1}, {"Eileen": 1}]
    finally:
        store.close()
