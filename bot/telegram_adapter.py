"""The Telegram adapter: python-telegram-bot updates in, `ChatCore` replies out. Knows no model.

Private chats: every photo or image file is answered. Groups (bots run in privacy mode there):
only a photo whose caption mentions the bot, or a reply to a photo that mentions it or says /whois.
An answer quotes the photo and carries the feedback buttons; their presses are `bot.telegram_feedback`'s.

Every reply is in the language of the user it answers, as their Telegram app names it (`language_code`): in a
group, the user who asked, not the photo's sender. The command menu and the bot's descriptions are published in
every language the bot speaks, so each user's app shows them in theirs.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import functools
import logging
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, BotCommand, InlineKeyboardMarkup, Message, MessageEntity, Update, User
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.core import (
    TELEGRAM,
    ChatCore,
    Indicator,
    Photo,
    Refused,
    Reply,
    Request,
    bot_description,
    command_descriptions,
    reply_messages,
    short_description,
    showing,
)
from bot.i18n import ENGLISH, LANGUAGES, Texts, texts_for
from bot.telegram_feedback import Presses, inline_markup

__all__ = [
    "ALLOWED_UPDATES",
    "Outcome",
    "WebhookIsSet",
    "build_application",
    "handle_update",
    "menu_languages",
    "run_telegram",
    "set_commands",
]

log = logging.getLogger("doppelbot.telegram")


# Telegram shows a chat action for five seconds; refresh it a little sooner while a photo takes longer.
ACTION_REFRESH_S = 4.5
# A 20 MB file over a slow link needs longer than python-telegram-bot's five-second default read timeout.
DOWNLOAD_TIMEOUT_S = 60.0
# Edited messages would answer the same photo twice; only new messages are asked for and handled.
NEW = filters.UpdateType.MESSAGE
# What Telegram is asked to send, polling or by webhook: new messages, and presses on the buttons under answers.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
# Flood control (429) means the message was not sent: sending it again after the wait Telegram names
# delivers it exactly once. A few times at most, and not for waits longer than a user would sit through.
# (python-telegram-bot's AIORateLimiter would hold every chat's requests for the whole wait, however long.)
FLOOD_RETRIES = 3
MAX_FLOOD_WAIT_S = 60.0
# A proxy's 5xx or a dropped connection is sent once more, after a moment, so that one transient fault never
# costs the answer; once only, since a fault after Telegram took the message would show the reply twice.
FAULT_RETRIES = 1
FAULT_PAUSE_S = 1.0
# Where the application keeps the chat core's default language: the menu for users of other languages is in it.
_DEFAULT_LANGUAGE = "doppelbot.default_language"

T = TypeVar("T")


class Outcome(enum.Enum):
    """What came of handling one update, for whoever must tell Telegram (the webhook answers by it)."""

    REPLIED = "replied"  # the answer (or an apology for a failure of ours) went out
    NOTHING = "nothing"  # the update needed no reply (a group message not meant for the bot)
    FAILED = "failed"  # the reply could not be sent (5xx, timeout, flood control): a redelivery may get it out


class WebhookIsSet(RuntimeError):
    """Polling refused: a webhook is set for this bot, and polling would delete it (PTB's start_polling does)."""


def build_application(
    token: str, core: ChatCore, base_url: str | None = None, base_file_url: str | None = None, polling: bool = True
) -> Application:
    """The one place the Telegram application is put together: where it connects and who answers what.

    `polling=False`: updates come to a webhook (`bot.telegram_webhook`), so the application has no updater.
    """
    # httpx logs every request at INFO with its URL, and Bot API URLs carry the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Concurrent updates: one slow photo must not hold up every other chat's answer.
    builder = ApplicationBuilder().token(token).concurrent_updates(True)
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    if not polling:
        builder = builder.updater(None)
    app = builder.build()
    app.bot_data[_DEFAULT_LANGUAGE] = core.default_language

    answers = _Handlers(core)
    private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
    app.add_handlers(
        [
            CommandHandler("start", answers.start, filters=NEW),
            CommandHandler("help", answers.help, filters=NEW),
            CommandHandler("about", answers.about, filters=NEW),
            CommandHandler("whois", answers.whois, filters=NEW),
            CommandHandler("privacy", answers.privacy, filters=NEW),
            CommandHandler("forget", answers.forget, filters=NEW),
            CallbackQueryHandler(answers.pressed),
            MessageHandler(NEW & private & (filters.PHOTO | filters.Document.ALL), answers.private_photo),
            MessageHandler(NEW & private & filters.TEXT, answers.private_text),
            MessageHandler(NEW & private & ~filters.StatusUpdate.ALL, answers.private_other),
            MessageHandler(NEW & groups & (filters.PHOTO | filters.Document.ALL), answers.group_photo),
            MessageHandler(NEW & groups & filters.TEXT & ~filters.COMMAND, answers.group_text),
        ]
    )
    app.add_error_handler(answers.on_error)
    return app


async def run_telegram(app: Application, stop: asyncio.Event) -> None:
    """Poll Telegram until `stop` is set, then deliver the replies in progress and shut down."""
    if app.updater is None:
        raise ValueError("run_telegram polls, so the application needs its updater")
    async with app:
        # Before start_polling, which deletes any webhook: a replica started without TELEGRAM_WEBHOOK_URL must
        # not take the fleet's updates away from its webhook.
        if url := (await app.bot.get_webhook_info()).url:
            raise WebhookIsSet(
                f"A webhook is set for this bot (Telegram posts its updates to {_redact(url, app.bot.token)}), so it "
                "does not poll: polling would delete the webhook. To poll instead, run `python -m bot "
                "--delete-webhook` first; to run as a webhook replica, set TELEGRAM_WEBHOOK_URL."
            )
        await app.start()
        try:
            await set_commands(app)
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            await stop.wait()
        finally:
            if app.updater.running:
                await app.updater.stop()
            # Application.stop waits for the updates being handled, so their replies still go out.
            await app.stop()


def menu_languages() -> dict[str, str]:
    """Telegram's `language_code` (ISO 639-1, two letters) for each language the bot speaks: "pt" for pt_BR.

    Telegram shows a user the menu set for their app's language, by its first two letters; so one menu per
    two-letter code, the first of `LANGUAGES` that has it.
    """
    codes: dict[str, str] = {}
    for code in LANGUAGES:
        codes.setdefault(code.split("_")[0].lower(), code)
    return codes


async def set_commands(app: Application) -> None:
    """Publish the command menu, the description and the short description in every language the bot speaks, and
    in the chat core's default language for users of any other; a failure is only logged."""
    bot = app.bot
    default = app.bot_data.get(_DEFAULT_LANGUAGE, ENGLISH)
    # The default first: it is what every user sees whose language has no menu of its own.
    for language_code, code in [(None, default), *menu_languages().items()]:
        tr = texts_for(code)
        commands = [BotCommand(name, text) for name, text in command_descriptions(tr).items()]
        short = short_description(tr)
        set_menu = functools.partial(bot.set_my_commands, commands, language_code=language_code)
        set_short = functools.partial(bot.set_my_short_description, short, language_code)
        steps = [  # each step's label names it in the operator's log
            ("command menu", set_menu),  # not for users
            ("description", functools.partial(bot.set_my_description, bot_description(tr), language_code)),
            ("short description", set_short),  # not for users
        ]
        for what, step in steps:
            try:
                await step()
            except BadRequest as e:  # this language's text was refused (too long?): the others may still go
                log.warning("could not set the %s for %s: %s", what, language_code or "everyone", e.message)
            except TelegramError as e:  # the menu is a nicety: answer photos without it
                # Unreachable, timed out or flood-controlled: the rest would fail alike, each after its timeout.
                log.warning("could not set the %s: %s", what, _redact(str(e), bot.token))
                return


class _Handlers:
    """The handlers, holding the chat core they answer with."""

    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self.presses = Presses(core, self._photo, _delivering)

    def _texts(self, user: User | None) -> Texts:
        """The words for `user`, in the language their app names (a channel's post has no user: the default)."""
        return self.core.texts(user.language_code if user is not None else None)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Say what the bot does."""
        return await _text(update.effective_message, self.core.start_text(self._texts(update.effective_user)))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Say how to ask, in private and in groups."""
        return await _text(update.effective_message, self.core.help_text(self._texts(update.effective_user)))

    async def about(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Describe the model, and how users marked its answers."""
        return await _text(update.effective_message, await self.core.about(self._texts(update.effective_user)))

    async def privacy(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Say what is kept, when, for how long, who sees it and how to delete it."""
        return await _text(update.effective_message, self.core.privacy_text(self._texts(update.effective_user)))

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Delete every face the sender marked, and say how many."""
        message = update.effective_message
        user = message.from_user.id if message.from_user else message.chat.id
        tr = self._texts(message.from_user)
        return await _reply(message, await self.core.forget("telegram", str(user), tr))

    async def pressed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """A press on a button under an answer: answered with a toast, the buttons redrawn with the votes."""
        await self.presses.press(update.callback_query, context.bot)
        return Outcome.REPLIED

    async def whois(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Answer about the photo this command replies to, or explain how to ask."""
        message = update.effective_message
        return await self._answer_about(message, message.reply_to_message, context)

    async def private_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Answer every photo or file sent in a private chat."""
        message = update.effective_message
        return await self._answer_about(message, message, context)

    async def private_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Point a private chat's text (or unknown command) at what the bot does."""
        return await _text(update.effective_message, self.core.help_text(self._texts(update.effective_user)))

    async def private_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Tell a private chat that stickers, videos, voice notes and the like are not photos."""
        return await _reply(update.effective_message, self.core.not_an_image(self._texts(update.effective_user)))

    async def group_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Answer a group photo only when its caption mentions the bot or says /whois."""
        message = update.effective_message
        if not _addresses(message, context.bot):
            return Outcome.NOTHING
        return await self._answer_about(message, message, context)

    async def group_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Answer a group message that mentions the bot about the photo it replies to."""
        message = update.effective_message
        if not _addresses(message, context.bot):
            return Outcome.NOTHING
        return await self._answer_about(message, message.reply_to_message, context)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log a handler's failure, without the token or the update's content, and tell the user."""
        error = context.error
        detail = "".join(traceback.format_exception(error)) if error else "no exception recorded"  # not for users
        kind = update.effective_chat.type if isinstance(update, Update) and update.effective_chat else "no"
        log.error("a Telegram handler failed in a %s chat: %s", kind, _redact(detail, context.bot.token))
        if isinstance(update, Update) and update.callback_query is not None:
            try:  # a press: the presser hears it in the toast, not in a message under someone's answer
                await self.presses.failed(update.callback_query)
            except TelegramError as e:
                log.warning("could not tell the presser about the failure: %s", _redact(str(e), context.bot.token))
            return
        message = update.effective_message if isinstance(update, Update) else None
        if message is None:
            return
        try:
            await _reply(message, self.core.failed(self._texts(update.effective_user)))
        except TelegramError as e:
            log.warning("could not tell the user about the failure: %s", _redact(str(e), context.bot.token))

    # -- the photo round trip ----------------------------------------------------------------

    async def _answer_about(self, ask: Message, source: Message | None, context: ContextTypes.DEFAULT_TYPE) -> Outcome:
        """Answer `ask` about the image in `source` (the same message, or the one `ask` replies to).

        The model's answer quotes `source` and carries the feedback buttons: a press then brings the photo along
        (a callback query's message holds the message it replied to), so nothing of the answer is kept anywhere.
        A refusal (rate limit, wrong type) is for the asker, so it quotes `ask`. Everything is in the asker's
        language: in a group, whoever mentioned the bot or said /whois, whoever sent the photo.
        """
        tr = self._texts(ask.from_user)
        if source is None or not (source.photo or source.document):
            return await _reply(ask, self.core.whois_without_photo(tr))
        user = ask.from_user.id if ask.from_user else ask.chat.id
        typing = Indicator(lambda: ask.reply_chat_action(ChatAction.TYPING), ACTION_REFRESH_S)
        request = Request("telegram", ask.chat.type, str(user), language=tr.code)
        reply = await self.core.answer(self._photo(source, context.bot, tr), request, typing)
        if reply.answer is None:
            return await _reply(ask, reply)
        feedback = self.core.feedback
        return await _reply(source, reply, feedback.keyboard(reply.answer, tr=tr) if feedback is not None else None)

    def _photo(self, source: Message, bot: Bot, tr: Texts) -> Photo:
        """What `source` announces of its image (a compressed photo's largest size, or a file), not yet fetched;
        a refusal on fetching it is in `tr`'s language."""
        if source.photo:
            largest = max(source.photo, key=lambda size: size.width * size.height)
            download = functools.partial(self._download, largest.file_id, bot, tr)
            return Photo(download, largest.file_size, "image/jpeg")
        document = source.document
        download = functools.partial(self._download, document.file_id, bot, tr)
        return Photo(download, document.file_size, document.mime_type, document.file_name)

    async def _download(self, file_id: str, bot: Bot, tr: Texts) -> bytes:
        """The file's bytes; `Refused` when Telegram will not serve them, or says only now that they are too many."""
        try:
            file = await bot.get_file(file_id)
            if refused := self.core.refuse_size(file.file_size, tr):
                raise Refused(refused)
            return bytes(await file.download_as_bytearray(read_timeout=DOWNLOAD_TIMEOUT_S))
        except (TelegramError, RuntimeError) as e:  # RuntimeError: Telegram gave no file_path
            log.warning("could not download a file: %s", _redact(f"{type(e).__name__}: {e}", bot.token))
            raise Refused(self.core.download_failed(tr)) from None


def _addresses(message: Message, bot: Bot) -> bool:
    """Whether a group message is meant for the bot: it mentions it, or begins with /whois."""
    me = f"@{bot.username}".lower()
    entities = message.parse_caption_entities() if message.caption else message.parse_entities()
    for entity, text in entities.items():
        if entity.type == MessageEntity.MENTION and text.lower() == me:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id:
            return True
        if (
            entity.type == MessageEntity.BOT_COMMAND
            and entity.offset == 0
            and text.lower() in ("/whois", f"/whois{me}")
        ):
            return True
    return False


async def handle_update(app: Application, update: Update) -> Outcome:
    """Handle `update` as `app.process_update` does, and say what came of it (the webhook answers Telegram by it).

    The first handler that takes the update answers it (the application has one group). A failure of ours goes
    to the error handler, which apologizes, as when polling. A reply that could not be sent is not apologized
    for (that would fail the same way, or reach the user before the answer does): it is `Outcome.FAILED`, so
    that Telegram delivers the update again, maybe to another replica. `app.process_update` hands every
    failure to the error handler and returns nothing, so the webhook could not tell the two apart.
    """
    for group in app.handlers.values():
        for handler in group:
            check = handler.check_update(update)
            if check is None or check is False:
                continue
            context = app.context_types.context.from_update(update, app)
            await context.refresh_data()
            try:
                return await handler.handle_update(update, app, check, context)
            except Exception as error:
                if _undelivered(error):
                    log.warning("a reply could not be sent (%s); Telegram will deliver the update again", _fault(error))
                    return Outcome.FAILED
                await app.process_error(update, error)
                return Outcome.REPLIED
    return Outcome.NOTHING


def _undelivered(error: Exception) -> bool:
    """Whether `error` says only that Telegram did not take a message now: a 5xx, a dropped connection, a timeout,
    flood control. BadRequest (a NetworkError to python-telegram-bot) would be refused again, however often."""
    return isinstance(error, RetryAfter) or (isinstance(error, NetworkError) and not isinstance(error, BadRequest))


def _fault(error: Exception) -> str:
    """ "Bad Gateway (502)" or "httpx.RemoteProtocolError": the kind of fault, never a URL (it holds the token)."""
    return str(error).split(":")[0].split(". ")[0][:80]


async def _text(ask: Message, text: str) -> Outcome:
    """Answer `ask` with one text message."""
    await _delivering(lambda: ask.reply_text(text))
    return Outcome.REPLIED


async def _reply(to: Message, reply: Reply, keyboard: list | None = None) -> Outcome:
    """Send `reply` quoting `to`, in as many messages as Telegram's limits need (the boxed photo first), with
    `keyboard` (`bot.feedback`'s buttons) under the last."""
    messages = reply_messages(reply, TELEGRAM)
    for i, message in enumerate(messages):
        await _send(to, message, inline_markup(keyboard) if i == len(messages) - 1 else None)
    return Outcome.REPLIED


async def _send(to: Message, message: Reply, markup: InlineKeyboardMarkup | None = None) -> None:
    """One message of a reply: text, or the boxed photo with its caption."""
    # Each message quotes the photo (or the question), so a long reply still reads as one answer in a busy group;
    # and is still sent, unquoted, when the photo was deleted meanwhile.
    options = {"do_quote": True, "allow_sending_without_reply": True, "reply_markup": markup}
    if message.image is None:
        await _delivering(lambda: to.reply_text(message.text, **options))
        return
    uploading = Indicator(lambda: to.reply_chat_action(ChatAction.UPLOAD_PHOTO), ACTION_REFRESH_S)
    caption = message.text or None
    async with showing(uploading):
        await _delivering(lambda: to.reply_photo(message.image, caption=caption, filename="faces.jpg", **options))


async def _delivering(send: Callable[[], Awaitable[T]]) -> T:
    """`send()`, done again after the wait Telegram names on 429, and once more after a 5xx or a dropped connection."""
    floods = faults = 0
    while True:
        try:
            return await send()
        except RetryAfter as e:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PTBDeprecationWarning)  # an int now, a timedelta from v23
                wait = e.retry_after
            seconds = wait.total_seconds() if isinstance(wait, datetime.timedelta) else float(wait)
            floods += 1
            if floods > FLOOD_RETRIES or seconds > MAX_FLOOD_WAIT_S:
                raise
            log.warning("Telegram flood control: sending again in %.0f s", seconds)
            await asyncio.sleep(seconds + 0.5)  # the slack python-telegram-bot's own retry loop adds
        except NetworkError as e:
            # Exactly NetworkError: python-telegram-bot's word for a 5xx or a broken connection. Its subclasses
            # say otherwise: BadRequest (sending again cannot help), TimedOut (Telegram may have the message).
            if type(e) is not NetworkError or faults >= FAULT_RETRIES:
                raise
            faults += 1
            log.warning("sending failed (%s); sending once more", _fault(e))
            await asyncio.sleep(FAULT_PAUSE_S)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text
