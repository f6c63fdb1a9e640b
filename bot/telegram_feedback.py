"""Telegram's side of users' feedback: the inline keyboard under an answer, and what a press on it does.

The keyboard comes from `bot.feedback`, which knows no chat service; here it is drawn as Telegram's inline
keyboard and a press (a callback query) is answered: the toast first, then the keyboard edited in place to show
what was said. Everything a press needs comes with it, so any replica answers it, after any restart: the button's
data, the chat and message ids (the face's key), and the answer's `reply_to_message`, which is the photo asked
about (the answer quotes it), fetched again only for a face the store does not hold yet.

A Why? press fetches that photo again too, and is answered with the face's evidence: a photo (the picture, the
line as its caption) replying to the answer, for the chat to see beside it.

A press is answered in the presser's language (their app's `language_code`): the toast, and the keyboard as it is
redrawn; in a private chat that is the asker's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, TelegramError

from bot.core import ChatCore, Photo
from bot.feedback import slow_down
from bot.i18n import N_, Texts

if TYPE_CHECKING:
    from bot.feedback import Action

__all__ = ["LOOKING", "Presses", "inline_markup"]

log = logging.getLogger("doppelbot.telegram")

ADAPTER = "telegram"
# editMessageReplyMarkup with the keyboard the message already has: two presses drew the same one.
_NOT_MODIFIED = "message is not modified"  # not for users: Telegram's words
# A Why? press not answered by then is told "Looking…" at once (Telegram's spinner stops after ~15 s anyway);
# one that fails sooner (the photo deleted) says so in the toast instead.
_QUICK_S = 1.5
LOOKING = N_("Looking…")  # English; shown as `tr.gettext(LOOKING)`
_CAPTION = 1024  # Telegram's limit on a photo's caption

Deliver = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


def inline_markup(keyboard: list | None) -> InlineKeyboardMarkup | None:
    """`bot.feedback`'s rows of buttons as Telegram's inline keyboard; None for no buttons (or to remove them)."""
    if not keyboard:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(button.text, callback_data=button.data) for button in row] for row in keyboard]
    )


def _face_key(message: Message, face: int) -> str:
    """The key of face `face` of the answer `message`: the same for every press on it, on any replica."""
    return f"{ADAPTER}:{message.chat.id}:{message.message_id}:{face}"


class Presses:
    """Answers presses on the buttons under answers.

    `photo_of(message, bot, tr)`: the photo `message` holds, as the adapter fetches it for an answer (refusals in
    `tr`'s language); `deliver(send)`: the adapter's way of sending (again after flood control or a 5xx).
    """

    def __init__(self, core: ChatCore, photo_of: Callable[[Message, Bot, Texts], Photo], deliver: Deliver) -> None:
        self.core, self.photo_of, self.deliver = core, photo_of, deliver

    async def press(self, query: CallbackQuery, bot: Bot) -> None:
        """Do what a press asks, say so in a toast, then redraw the keyboard with the votes.

        A failure to answer that a redelivery could mend (5xx, flood control) is raised: the webhook answers 500
        for it, and the vote, kept once per user and face, is simply kept again.
        """
        feedback, message = self.core.feedback, query.message
        action = feedback.parse(query.data) if feedback is not None else None
        # Not one of ours, or under a message Telegram no longer shows the bot: the button's spinner still stops.
        if action is None or not isinstance(message, Message):
            await self._answer(query, None)
            return
        tr = self._texts(query)
        source = message.reply_to_message  # the photo the answer quoted; absent once its sender deleted it
        photo = None
        if source is not None and (source.photo or source.document):
            photo = self.photo_of(source, bot, tr).download
        presser = str(query.from_user.id)
        if action.kind == "why":
            await self._explain(query, message, action, photo, presser, tr)
            return
        pressed = await feedback.act(
            action, lambda face: _face_key(message, face), photo, ADAPTER, message.chat.type, presser, tr=tr
        )
        # Telegram shows the spinner until the query is answered (for ~15 s at most): the toast first.
        await self._answer(query, pressed.toast)
        if pressed.keyboard is not None:
            await self._redraw(query, pressed.keyboard)

    async def _explain(
        self,
        query: CallbackQuery,
        message: Message,
        action: Action,
        photo: Callable[[], Awaitable[bytes]] | None,
        presser: str,
        tr: Texts,
    ) -> None:
        """Why? for face `action.face`: the callback answered within its deadline, then the evidence sent as a
        photo replying to the answer `message` (or, once "Looking…" was shown, what went wrong, as text), in the
        presser's language `tr`. A look at the photo again counts against the presser's rate limit, as a photo
        sent does."""
        if (wait := await self.core.limiter.take(f"{ADAPTER}:{presser}")) > 0:
            await self._answer(query, slow_down(wait, tr))
            return
        work = asyncio.ensure_future(self.core.feedback.explain(action.face, photo, action.labels, tr=tr))
        done, _ = await asyncio.wait({work}, timeout=_QUICK_S)
        if not done:
            await self._answer(query, tr.gettext(LOOKING))
        shown = await work
        if done:
            await self._answer(query, shown.toast)
        elif shown.toast:
            await self._send(message, shown.toast)
        if shown.text is None:
            return
        if shown.picture is None:  # a model that keeps no training faces: the line alone
            await self._send(message, shown.text)
            return
        options = {"do_quote": True, "allow_sending_without_reply": True}
        caption = shown.text[:_CAPTION]
        await self.deliver(lambda: message.reply_photo(shown.picture, caption=caption, filename="why.jpg", **options))

    async def _send(self, message: Message, text: str) -> None:
        await self.deliver(lambda: message.reply_text(text, do_quote=True, allow_sending_without_reply=True))

    async def failed(self, query: CallbackQuery) -> None:
        """Tell the presser that something of ours broke (the error handler calls this)."""
        await query.answer(self.core.failed(self._texts(query)).text)

    def _texts(self, query: CallbackQuery) -> Texts:
        """The presser's words, in the language their app names."""
        return self.core.texts(query.from_user.language_code)

    async def _answer(self, query: CallbackQuery, toast: str | None) -> None:
        try:
            await self.deliver(lambda: query.answer(toast, show_alert=False))
        except BadRequest as e:  # answered too late, or already: what the press did stands
            log.warning("could not answer a button press: %s", e.message)

    async def _redraw(self, query: CallbackQuery, keyboard: list) -> None:
        """The message's keyboard replaced in place (an empty one removed); what was said shows there."""
        try:
            await self.deliver(lambda: query.edit_message_reply_markup(inline_markup(keyboard)))
        except BadRequest as e:
            if _NOT_MODIFIED not in e.message.lower():
                log.warning("could not redraw the buttons under an answer: %s", e.message)
        except TelegramError as e:  # the press was kept and answered: the next press redraws them
            log.warning("could not redraw the buttons under an answer (%s)", type(e).__name__)
