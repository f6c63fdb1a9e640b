"""Discord's side of users' feedback: the buttons under an answer, what a press does, `/privacy` and `/forget`.

The buttons are discord.py dynamic items (`FeedbackButton`): a press is handled from its custom_id alone, by
whichever process of the bot gets it, however long after the answer and however many restarts later. The
custom_id is the button's data (`bot.feedback.Button.data`), followed by `/<n>` when the answer was about the
n-th (from 0) photo of the message asked about, so that the press finds that photo and not its neighbour.

Nothing of an answer is kept until a press; then the photo is taken again from Discord: for a mention's answer,
from the message the answer replies to (or from the photo that message replied to); for `/whois`, whose photo
lives only in the command, from the bot's answer itself, which carries the photo asked about as `asked.<ext>`.
A Why? press takes the photo again the same way, and is answered to the presser alone with the face's evidence:
its line and its picture (`why.jpg`).

Every press is answered in the presser's language (their Discord's `locale`), the buttons it redraws included.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import mimetypes
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.app_commands import locale_str

from .core import COMMAND_DESCRIPTIONS, DISCORD, IMAGE_SUFFIXES, ChatCore, Refused, Reply, reply_messages
from .discord_i18n import FORGET, PRIVACY, SLASH, texts_of, with_command_names
from .feedback import slow_down

if TYPE_CHECKING:
    from .feedback import Action, Keyboard
    from .i18n import Texts

__all__ = [
    "ASKED_STEM",
    "MAX_BUTTON_ROWS",
    "MAX_ROW_BUTTONS",
    "FeedbackButton",
    "FeedbackButtons",
    "asked_name",
    "custom_id",
    "feedback_view",
    "shown_to_all",
    "tell_privately",
    "think",
]

log = logging.getLogger("doppelbot.discord")

# Discord draws at most 5 rows of 5 buttons under a message, each label up to 80 characters.
MAX_BUTTON_ROWS = MAX_ROW_BUTTONS = 5
_MAX_LABEL = 80
# The photo a `/whois` answer carries, so that a press can take its face again: `asked.jpg`, `asked.png`...
ASKED_STEM = "asked"
# The custom_id of a feedback button: the keyboard's data (`fb1:...`, no "/" in it), then the photo's number.
_CUSTOM_ID = re.compile(r"(?P<data>fb1:[^/]*)(?:/(?P<photo>[0-9]{1,2}))?")
# Discord waits 3 s for a press to be answered: a press not done by then is acknowledged first, then finished.
_QUICK_S = 1.5
_LEAVE: Any = object()  # "leave the message's buttons as they are"
# In an interaction's extras: its "thinking..." is shown to the whole channel and no answer has replaced it yet.
_THINKING_PUBLICLY = "doppelbot.thinking_publicly"


async def think(interaction: discord.Interaction) -> None:
    """Answer `interaction` with "thinking..." for the whole channel to see; its answer follows."""
    await interaction.response.defer(thinking=True)
    interaction.extras[_THINKING_PUBLICLY] = True


def shown_to_all(interaction: discord.Interaction) -> None:
    """Say that the answer about to follow `interaction` is for the channel: it takes the place of "thinking..."."""
    interaction.extras.pop(_THINKING_PUBLICLY, None)


async def tell_privately(interaction: discord.Interaction, text: str) -> None:
    """`text` to the user of `interaction` alone: as its response, or as a followup once it has one.

    Discord makes the first followup after "thinking..." take its place, seen by all if the thinking was: that
    thinking is deleted first, so that a refusal or an apology stays the user's.
    """
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    if interaction.extras.pop(_THINKING_PUBLICLY, False):
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as e:
            log.warning('could not take back a "thinking..." (%s): the reply to it is seen by all', e.status)
    await interaction.followup.send(text, ephemeral=True)


def custom_id(data: str, photo: int = 0) -> str:
    """A button's custom_id: its data, and which photo of the message asked about (0, the first, says nothing)."""
    return data if photo == 0 else f"{data}/{photo}"


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button], template=_CUSTOM_ID):
    """One feedback button, made again from its custom_id at each press by whichever process receives it.

    The press is handed to the client's `feedback_buttons` (a `FeedbackButtons`): discord.py builds dynamic items
    itself, so that is how one reaches the chat core without a global.
    """

    def __init__(self, custom_id: str, label: str, row: int | None = None, chosen: bool = False) -> None:
        style = discord.ButtonStyle.primary if chosen else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label[:_MAX_LABEL], custom_id=custom_id, style=style), row=row)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> FeedbackButton:
        return cls(match.string, item.label or "?")

    async def callback(self, interaction: discord.Interaction) -> None:
        """Hand the press to the client's feedback buttons; a client without them only acknowledges it."""
        buttons = getattr(interaction.client, "feedback_buttons", None)
        if isinstance(buttons, FeedbackButtons):
            await buttons.press(interaction, self.custom_id)
        else:
            await interaction.response.defer()


def _rows(keyboard: Keyboard) -> list[list[Any]] | None:
    """The keyboard's rows as Discord takes them (rows of 5, 5 rows), or None when its buttons cannot all fit."""
    rows = [row[i : i + MAX_ROW_BUTTONS] for row in keyboard for i in range(0, len(row), MAX_ROW_BUTTONS)]
    if len(rows) > MAX_BUTTON_ROWS:  # many classes: one button a row no longer fits, so pack them
        flat = [button for row in keyboard for button in row]
        rows = [flat[i : i + MAX_ROW_BUTTONS] for i in range(0, len(flat), MAX_ROW_BUTTONS)]
    return rows if len(rows) <= MAX_BUTTON_ROWS else None


def feedback_view(keyboard: Keyboard | None, photo: int = 0) -> discord.ui.View | None:
    """The buttons of `keyboard` under a message about photo number `photo`; None for none."""
    rows = _rows(keyboard) if keyboard else None
    if not rows:
        if keyboard:
            log.warning("the feedback buttons do not fit under a Discord message: none shown")
        return None
    # Never timing out: a view that times out takes its dynamic items' registration with it in discord.py 2.7,
    # and the buttons are answered from their custom_id anyway.
    view = discord.ui.View(timeout=None)
    for r, row in enumerate(rows):
        for button in row:
            view.add_item(FeedbackButton(custom_id(button.data, photo), button.text, r, button.text.startswith("✓")))
    return view


def asked_name(name: str | None, content_type: str | None) -> str:
    """The file name a `/whois` answer gives the photo asked about: `asked` and the photo's own image suffix."""
    suffix = PurePosixPath(name or "").suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = mimetypes.guess_extension((content_type or "").split(";")[0].strip().lower()) or ""
    return ASKED_STEM + (suffix if suffix in IMAGE_SUFFIXES else ".jpg")


class FeedbackButtons:
    """One Discord client's feedback: the buttons under its answers, their presses, `/privacy` and `/forget`.

    `track()` counts the running task as work a stop waits for (False once the client is stopping).
    """

    def __init__(self, core: ChatCore, client: discord.Client, track: Callable[[], bool] = lambda: True) -> None:
        self.core = core
        self._client = client
        self._track = track

    def view(self, reply: Reply, photo: int = 0, tr: Texts | None = None) -> discord.ui.View | None:
        """The buttons under `reply`, an answer about photo number `photo` of its message, in `tr`'s language; None
        for none."""
        feedback = self.core.feedback
        return feedback_view(feedback.keyboard(reply.answer, tr) if feedback is not None else None, photo)

    # -- presses -----------------------------------------------------------------------------

    async def press(self, interaction: discord.Interaction, pressed_id: str) -> None:
        """Do what a feedback button asks, and answer the press whatever happens: a press left unanswered reads
        "This interaction failed" to the user."""
        self._track()  # a press during a stop is still done: it takes a moment, and the vote is the user's
        tr = texts_of(self.core, interaction)
        try:
            await self._press(interaction, pressed_id, tr)
        except Exception:
            log.exception("a feedback press failed")
            await self._apologise(interaction, tr)

    async def _press(self, interaction: discord.Interaction, pressed_id: str, tr: Texts) -> None:
        match = _CUSTOM_ID.fullmatch(pressed_id)
        feedback = self.core.feedback
        action = feedback.parse(match["data"]) if feedback is not None and match is not None else None
        answer = interaction.message
        if action is None or answer is None or match is None:
            await interaction.response.defer()  # not a keyboard this bot draws: nothing to do, nothing to say
            return
        photo = int(match["photo"] or 0)
        if action.kind == "why":
            await self._explain(interaction, action, answer, photo, tr)
            return
        channel_id, message_id = interaction.channel_id, answer.id

        def key_of(face: int) -> str:
            return f"discord:{channel_id}:{message_id}:{face}"

        work = asyncio.ensure_future(
            feedback.act(
                action,
                key_of,
                functools.partial(self._asked_photo, answer, photo, tr),
                "discord",
                "guild" if interaction.guild_id else "dm",
                str(interaction.user.id),
                tr=tr,
            )
        )
        done, _ = await asyncio.wait({work}, timeout=_QUICK_S)
        if not done:  # a face to take again from its photo: say "received" now, the rest follows
            try:
                await interaction.response.defer()
            except discord.HTTPException as e:
                log.warning("could not acknowledge a feedback press (%s); recording it anyway", e.status)
        pressed = await work
        view = _LEAVE if pressed.keyboard is None else feedback_view(pressed.keyboard, photo)
        if not interaction.response.is_done():
            if view is not _LEAVE:
                await interaction.response.edit_message(view=view)
            elif pressed.toast:
                await interaction.response.send_message(pressed.toast, ephemeral=True)
                return
            else:
                await interaction.response.defer()
                return
        elif view is not _LEAVE:
            await interaction.edit_original_response(view=view)
        if pressed.toast:
            await interaction.followup.send(pressed.toast, ephemeral=True)

    async def _explain(
        self, interaction: discord.Interaction, action: Action, answer: discord.Message, photo: int, tr: Texts
    ) -> None:
        """Why? for face `action.face` of photo `photo` of `answer`: the evidence (its line, and its picture as a
        file) to the presser alone; "thinking..." first when it takes longer than Discord waits."""
        if (wait := await self.core.limiter.take(f"discord:{interaction.user.id}")) > 0:
            await tell_privately(interaction, slow_down(wait, tr))  # a look again counts as a photo sent
            return
        asked = functools.partial(self._asked_photo, answer, photo, tr)
        work = asyncio.ensure_future(self.core.feedback.explain(action.face, asked, action.labels, tr=tr))
        done, _ = await asyncio.wait({work}, timeout=_QUICK_S)
        if not done:
            try:
                await interaction.response.defer(ephemeral=True, thinking=True)
            except discord.HTTPException as e:
                log.warning("could not acknowledge a Why? press (%s); answering it anyway", e.status)
        shown = await work
        text = shown.toast or shown.text or ""
        extra: dict[str, Any] = {}
        if shown.toast is None and shown.picture is not None:
            extra["file"] = discord.File(io.BytesIO(shown.picture), "why.jpg")
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, **extra)
        else:
            await interaction.response.send_message(text, ephemeral=True, **extra)

    async def _apologise(self, interaction: discord.Interaction, tr: Texts) -> None:
        try:
            await tell_privately(interaction, self.core.failed(tr).text)
        except Exception:  # best effort: the press is lost either way
            log.warning("could not tell the user that a feedback press failed", exc_info=True)

    async def _asked_photo(self, answer: discord.Message, photo: int, tr: Texts) -> bytes:
        """The bytes of the photo `answer` (the bot's message) was about, from Discord again; `Refused` if gone."""
        try:
            attachment = await self._asked_attachment(answer, photo)
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
            log.info("the photo of a feedback press could not be found again: %s", type(e).__name__)
            attachment = None
        if attachment is None:
            raise Refused(self.core.download_failed(tr))
        if (refused := self.core.refuse_size(attachment.size, tr)) is not None:
            raise Refused(refused)
        try:
            return await attachment.read()
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
            log.info("the photo of a feedback press could not be downloaded again: %s", type(e).__name__)
            raise Refused(self.core.download_failed(tr)) from None

    async def _asked_attachment(self, answer: discord.Message, photo: int) -> discord.Attachment | None:
        """The attachment `answer` was about: its own `asked.*` (a `/whois` answer), else number `photo` of the
        message it replies to, or of the message that one replied to (a mention answering a photo above it)."""
        for attachment in answer.attachments:
            if PurePosixPath(attachment.filename).stem == ASKED_STEM:
                return attachment
        ref = answer.reference
        if ref is None or ref.message_id is None:
            return None
        # Fetched, not taken from the press: a CDN link Discord handed out with the message expires.
        channel = self._client.get_partial_messageable(ref.channel_id or answer.channel.id)
        question = await channel.fetch_message(ref.message_id)
        attachments = question.attachments
        if not attachments and question.reference is not None and question.reference.message_id is not None:
            attachments = (await channel.fetch_message(question.reference.message_id)).attachments
        return attachments[photo] if photo < len(attachments) else None

    # -- the user's rights -------------------------------------------------------------------

    def commands(self) -> list[app_commands.Command]:
        """`/privacy` (what is kept, in plain words) and `/forget` (delete what this user marked), both answered
        to the user alone, in their language."""

        @app_commands.command(name=locale_str(PRIVACY, name=SLASH), description=COMMAND_DESCRIPTIONS["privacy"])
        async def privacy(interaction: discord.Interaction) -> None:
            """Say what the bot keeps, when, for how long, who sees it and how to delete it."""
            tr = texts_of(self.core, interaction)
            pieces = reply_messages(Reply(with_command_names(self.core.privacy_text(tr), tr)), DISCORD)
            await interaction.response.send_message(pieces[0].text, ephemeral=True)
            for piece in pieces[1:]:
                await interaction.followup.send(piece.text, ephemeral=True)

        @app_commands.command(name=locale_str(FORGET, name=SLASH), description=COMMAND_DESCRIPTIONS["forget"])
        async def forget(interaction: discord.Interaction) -> None:
            """Delete every face this user marked, and say how many."""
            self._track()
            await interaction.response.defer(ephemeral=True, thinking=True)  # the database may take a moment
            tr = texts_of(self.core, interaction)
            reply = await self.core.forget("discord", str(interaction.user.id), tr)
            for piece in reply_messages(Reply(with_command_names(reply.text, tr)), DISCORD):
                await interaction.followup.send(piece.text, ephemeral=True)

        return [privacy, forget]
