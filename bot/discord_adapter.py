"""The Discord adapter (discord.py 2): mentions, replies to photos and `/whois` in, the chat core's replies out.

A thin translation: every sentence the user reads comes from `ChatCore`; this module only decides which
attachments to look at, shows that the bot is working, and sends the answer back where it was asked.
"""

from __future__ import annotations

import asyncio
import io
import logging

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .core import COMMAND_DESCRIPTIONS, WHOIS_PHOTO_DESCRIPTION, ChatCore, Reply, Request

__all__ = ["build_client", "run_discord"]

log = logging.getLogger("doppelbot.discord")


# Attachments whose uploader gave no image content type still count when their name says image.
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_MESSAGE_LIMIT = 2000  # Discord refuses longer message content
_ANNOTATED_NAME = "faces.jpg"
# How long a stop waits for replies already in progress; inference takes seconds, not minutes.
_DRAIN_SECONDS = 60.0


def _intents() -> discord.Intents:
    """The gateway events this bot needs, and no more."""
    intents = discord.Intents.none()
    # GUILD_CREATE fills the channel cache, so a guild message arrives with a channel we can reply in
    # (and the guild id that tells guild requests from direct messages).
    intents.guilds = True
    # MESSAGE_CREATE in server channels: mentions with photos, and replies to photos with a mention.
    intents.guild_messages = True
    # MESSAGE_CREATE in direct messages with the bot.
    intents.dm_messages = True
    # No privileged `message_content`: Discord sends content and attachments without it for messages that
    # mention the bot, direct messages and the bot's own messages, which are the only ones we act on.
    # Interactions (`/whois`) need no intent at all.
    return intents


def _is_image(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    return content_type.startswith("image/") or attachment.filename.lower().endswith(_IMAGE_SUFFIXES)


def _pieces(text: str, limit: int = _MESSAGE_LIMIT) -> list[str]:
    """`text` cut at line ends into messages Discord accepts (a crowd photo lists many faces)."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # no line of ours is this long, but Discord would refuse the whole reply
            pieces += [current, line[:limit]] if current else [line[:limit]]
            current, line = "", line[limit:]
        if current and len(current) + 1 + len(line) > limit:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    return [*pieces, current]


def _file(reply: Reply) -> discord.File | None:
    return discord.File(io.BytesIO(reply.image), filename=_ANNOTATED_NAME) if reply.image else None


class _DoppelClient(discord.Client):
    """A discord.py client that answers photos through `core`, and finishes its answers before it closes."""

    def __init__(self, core: ChatCore, endpoints: _Endpoints) -> None:
        # Our replies never ping anyone (whatever a class label or a future wording says); only the author
        # of the message we reply to is notified, as with any Discord reply.
        quiet = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)
        super().__init__(intents=_intents(), allowed_mentions=quiet)
        self.core = core
        self._endpoints = endpoints
        self._jobs: set[asyncio.Task] = set()
        self._stopping = False
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_app_command_error)
        self.tree.add_command(self._whois_command())

    # -- lifecycle ----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """Publish `/whois`; a failed sync leaves mentions working, so it is logged, not fatal."""
        try:
            await self.tree.sync()
        except discord.HTTPException as e:
            log.warning("could not sync the slash commands (%s %s); mentions still work", e.status, e.text)

    async def drain(self, timeout: float = _DRAIN_SECONDS) -> None:
        """Take no new work, and wait for the answers in progress to be sent."""
        self._stopping = True
        jobs = {job for job in self._jobs if job is not asyncio.current_task()}
        if jobs:
            log.info("waiting for %d answer(s) in progress before closing", len(jobs))
            _, late = await asyncio.wait(jobs, timeout=timeout)
            if late:
                log.warning("closing with %d answer(s) still unsent after %.0f s", len(late), timeout)

    async def close(self) -> None:
        await super().close()
        self._endpoints.restore()

    def _track(self) -> bool:
        """Count the running event task as work in progress; False once the client is stopping.

        The task is discord.py's wrapper around the handler *and* its error handler, so a stop also
        waits for an apology to be sent.
        """
        if self._stopping:
            return False
        task = asyncio.current_task()
        if task is not None:
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        return True

    # -- messages -----------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> bool:
        """Whether `message` mentions the bot (not just @everyone) and comes from a person."""
        me = self.user
        return me is not None and not message.author.bot and any(user.id == me.id for user in message.mentions)

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        """The message `message` replies to, fetched when the gateway did not include it."""
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        if ref.resolved is not None or ref.channel_id != message.channel.id:
            return None  # deleted, or in another channel
        try:
            return await message.channel.fetch_message(ref.message_id)
        except discord.HTTPException:
            return None

    async def on_message(self, message: discord.Message) -> None:
        """Answer a mention about the photos it carries, or about the photos of the message it replies to."""
        me = self.user
        if me is None or not self._addressed(message) or not self._track():
            return
        attachments = message.attachments
        if not attachments:
            referenced = await self._referenced(message)
            if referenced is not None and referenced.author.id == me.id:
                # A reply to one of our answers pings us by itself: "thanks!" is not a question. With an
                # explicit mention it gets the hint: our boxed photo is not worth another look.
                if me.id not in message.raw_mentions:
                    return
            elif referenced is not None:
                attachments = referenced.attachments
        if not attachments:
            await self._send(message, self.core.mention_hint())
            return
        request = Request("discord", "guild" if message.guild else "dm", str(message.author.id))
        async with message.channel.typing():
            for attachment in attachments:
                await self._send(message, await self._answer(attachment, request))

    async def _answer(self, attachment: discord.Attachment, request: Request) -> Reply:
        """The reply about one attachment; too large a file is refused from its announced size, unread."""
        if not _is_image(attachment):
            return self.core.not_an_image()
        refused = self.core.refuse_size(attachment.size)
        if refused is not None:
            return refused
        try:
            data = await attachment.read()
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
            log.warning("could not download an attachment: %s", type(e).__name__)
            return self.core.download_failed()
        return await self.core.answer_photo(data, request)

    async def _send(self, message: discord.Message, reply: Reply) -> None:
        """`reply` as a Discord reply to `message`; still sent, unthreaded, if `message` was deleted meanwhile."""
        reference = message.to_reference(fail_if_not_exists=False)
        first, *rest = _pieces(reply.text)
        file = _file(reply)
        if file is not None:
            await message.channel.send(first, file=file, reference=reference)
        else:
            await message.channel.send(first, reference=reference)
        for piece in rest:
            await message.channel.send(piece)

    async def on_error(self, event_method: str, /, *args: object, **kwargs: object) -> None:
        """Log a failed event handler (no token, no photo: only the traceback) and apologise if a user waits."""
        log.exception("the %s handler failed", event_method)
        message = args[0] if args else None
        if event_method != "on_message" or not isinstance(message, discord.Message):
            return
        try:
            await self._send(message, self.core.failed())
        except Exception:  # the apology is best effort: this handler must never raise
            log.warning("could not tell the user that answering failed", exc_info=True)

    # -- /whois -------------------------------------------------------------------------------

    def _whois_command(self) -> app_commands.Command:
        @app_commands.command(name="whois", description=COMMAND_DESCRIPTIONS["whois"])
        @app_commands.describe(photo=WHOIS_PHOTO_DESCRIPTION)
        async def whois(interaction: discord.Interaction, photo: discord.Attachment) -> None:
            """Answer about the attached photo: think first, since the model takes a moment."""
            if not self._track():
                return
            await interaction.response.defer(thinking=True)
            request = Request("discord", "guild" if interaction.guild_id else "dm", str(interaction.user.id))
            reply = await self._answer(photo, request)
            first, *rest = _pieces(reply.text)
            file = _file(reply)
            if file is not None:
                await interaction.followup.send(first, file=file)
            else:
                await interaction.followup.send(first)
            for piece in rest:
                await interaction.followup.send(piece)

        return whois

    async def _on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Log a failed slash command and apologise in the conversation; never raise."""
        name = interaction.command.name if interaction.command else "?"
        log.error("the /%s command failed", name, exc_info=error)
        text = self.core.failed().text
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except Exception:
            log.warning("could not tell the user that /%s failed", name, exc_info=True)


class _Endpoints:
    """Where discord.py sends REST calls and opens the gateway, for one client's lifetime.

    discord.py 2.7 builds every REST URL (webhooks and interaction callbacks included) from the class
    attribute `Route.BASE`, and opens the gateway at the class attribute `DiscordWebSocket.DEFAULT_GATEWAY`
    (it no longer asks `GET /gateway/bot` unless sharded). Neither can be set per client, so they are set
    when the client is built and put back when it closes: one client with custom endpoints at a time.
    """

    def __init__(self, api_base: str | None, gateway_url: str | None) -> None:
        self._saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        if api_base:
            Route.BASE = api_base.rstrip("/")
        if gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore(self) -> None:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved


def build_client(core: ChatCore, api_base: str | None = None, gateway_url: str | None = None) -> discord.Client:
    """A Discord client answering through `core`; `api_base` and `gateway_url` point it at another server.

    `api_base` replaces `https://discord.com/api/v10`, `gateway_url` replaces `wss://gateway.discord.gg/`
    (process-wide class attributes of discord.py, restored when the client closes).
    """
    return _DoppelClient(core, _Endpoints(api_base, gateway_url))


async def run_discord(client: discord.Client, token: str, stop: asyncio.Event) -> None:
    """Run `client` until `stop` is set, then send the answers in progress and close.

    Raises if the client stops by itself first (a bad token, a gateway that refuses us).
    """
    async with client:
        runner = asyncio.create_task(client.start(token), name="discord-client")
        stopped = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if runner.done():
            runner.result()  # it ended by itself: say why
            return
        if isinstance(client, _DoppelClient):
            await client.drain()
        if not client.is_ready():
            runner.cancel()  # still logging in or connecting: nothing to finish, and closing under it fails
        await client.close()
        # After close() the client's connect loop ends by itself; what it raises now is the echo of the close.
        await asyncio.wait({runner})
        if not runner.cancelled() and runner.exception() is not None:
            log.debug("the client ended with an error after the stop", exc_info=runner.exception())
