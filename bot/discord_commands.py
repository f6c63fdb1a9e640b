"""Discord's commands for photos: `/whois` with a photo attached, and "Who is this?" in a message's Apps menu, which
answers the photos already posted in that message. Both are answered like a mention, through `ChatCore.answer`, in
the user's language.

Discord waits 3 seconds for an interaction's first answer. A refusal known at once (not an image, too large, too
many photos a minute) is that answer, for the user alone; once a photo is to be downloaded, "thinking..." is
shown first (`Thinking`), and the answer follows for the channel to see, with the photo asked about (a followup
cannot reply to a message, so the feedback buttons take the face again from the answer itself). A refusal that
comes later (the download failed, the photo was larger than announced) still goes to the user alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import discord
from discord import app_commands
from discord.app_commands import locale_str

from .core import COMMAND_DESCRIPTIONS, WHOIS_PHOTO_DESCRIPTION, ChatCore, Indicator, Photo, Reply, Request, is_image
from .discord_feedback import FeedbackButtons, asked_name, shown_to_all, tell_privately, think
from .discord_i18n import MENU, SLASH, WHO_IS_THIS, WHOIS, command_name, texts_of
from .i18n import Texts

__all__ = ["PhotoCommands", "Thinking"]

# How often the core asks to show "working" again: "thinking..." is shown once and stays until the answer.
_THINKING_REFRESH_S = 8.0


class Deliver(Protocol):
    """How the client sends a reply in messages: `send`, the reply, the buttons under it, the files beside it."""

    def __call__(
        self,
        send: Callable[..., Awaitable[object]],
        reply: Reply,
        view: discord.ui.View | None = None,
        attach: Sequence[tuple[str, bytes]] = (),
    ) -> Awaitable[None]: ...


class Thinking:
    """An interaction's "thinking...": shown once, when the first photo is about to be downloaded, however many
    times it is asked for (the core's "working" indicator, and each download); never after another answer."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self._interaction = interaction
        self._shown: asyncio.Future[None] | None = None

    async def show(self) -> None:
        if self._shown is None:
            self._shown = asyncio.ensure_future(self._defer())
        await asyncio.shield(self._shown)  # a caller cancelled (the indicator, at the answer) leaves it be

    async def _defer(self) -> None:
        if not self._interaction.response.is_done():
            await think(self._interaction)


class PhotoCommands:
    """`/whois` and "Who is this?" for one client. `track()` counts the running task as work a stop waits for
    (False once the client is stopping); `download(attachment, tr)` fetches a photo or raises `Refused`;
    `deliver` sends a reply in messages."""

    def __init__(
        self,
        core: ChatCore,
        buttons: FeedbackButtons,
        track: Callable[[], bool],
        download: Callable[[discord.Attachment, Texts], Awaitable[bytes]],
        deliver: Deliver,
    ) -> None:
        self.core = core
        self._buttons = buttons
        self._track = track
        self._download = download
        self._deliver = deliver

    def commands(self) -> list[app_commands.Command | app_commands.ContextMenu]:
        @app_commands.command(name=locale_str(WHOIS, name=SLASH), description=COMMAND_DESCRIPTIONS["whois"])
        @app_commands.describe(photo=WHOIS_PHOTO_DESCRIPTION)
        async def whois(interaction: discord.Interaction, photo: discord.Attachment) -> None:
            """Answer about the attached photo."""
            if self._track():
                await self.answer(interaction, [photo])

        async def who_is_this(interaction: discord.Interaction, message: discord.Message) -> None:
            """Answer about the photos already posted in `message`; say so, to the user alone, if it has none."""
            if not self._track():
                return
            photos = [a for a in message.attachments if is_image(a.content_type, a.filename)]
            if photos:
                await self.answer(interaction, photos)
            else:
                await tell_privately(interaction, self.no_photo(texts_of(self.core, interaction)))

        menu = app_commands.ContextMenu(name=locale_str(WHO_IS_THIS, name=MENU), callback=who_is_this)
        return [whois, menu]

    @staticmethod
    def no_photo(tr: Texts) -> str:
        """What "Who is this?" says of a message without a photo."""
        return tr.gettext(
            'There is no photo in that message. Use "{command}" on a message with a photo attached, or send one '
            "with /{whois}.",
            command=command_name(tr, WHO_IS_THIS, MENU),
            whois=command_name(tr, WHOIS),
        )

    async def answer(self, interaction: discord.Interaction, attachments: Sequence[discord.Attachment]) -> None:
        """Answer `interaction` about each of `attachments`, in its user's language."""
        tr = texts_of(self.core, interaction)
        chat = "guild" if interaction.guild_id else "dm"
        request = Request("discord", chat, str(interaction.user.id), language=tr.code)
        thinking = Thinking(interaction)
        for attachment in attachments:
            await self._answer_one(interaction, attachment, request, tr, thinking)

    async def _answer_one(
        self,
        interaction: discord.Interaction,
        attachment: discord.Attachment,
        request: Request,
        tr: Texts,
        thinking: Thinking,
    ) -> None:
        kept: list[bytes] = []

        async def download() -> bytes:
            await thinking.show()  # before the download, which with the model's look may take longer than 3 s
            kept.append(await self._download(attachment, tr))
            return kept[-1]

        photo = Photo(download, attachment.size, attachment.content_type, attachment.filename)
        # "Thinking..." also while a photo waits for its turn to be downloaded (seconds, when many come at once).
        reply = await self.core.answer(photo, request, Indicator(thinking.show, _THINKING_REFRESH_S))
        if reply.refused is not None:
            await tell_privately(interaction, reply.text or "")
            return
        await thinking.show()  # shown already: every answer but a refusal comes after a download
        # The photo lives only in the interaction: the answer carries it, for the channel to see what was asked
        # and for a press to take the face again.
        view = self._buttons.view(reply, 0, tr) if kept else None
        if view is not None and len(kept[-1]) + len(reply.image or b"") > interaction.filesize_limit:
            view = None  # Discord would refuse the upload: the answer goes without the photo, so without buttons
        attach: list[tuple[str, bytes]] = []
        if view is not None:
            attach = [(asked_name(attachment.filename, attachment.content_type), kept[-1])]
        shown_to_all(interaction)
        await self._deliver(interaction.followup.send, reply, view, attach)
