"""The Discord adapter (discord.py 2): mentions and replies to photos in, the chat core's replies out; the
application commands (`/whois`, "Who is this?") are `discord_commands.py`'s, the buttons `discord_feedback.py`'s.

A thin translation: every sentence the user reads comes from `ChatCore`; this module only decides which
attachments to look at, shows that the bot is working, and sends the answer back where it was asked, with the
feedback buttons under it. A mention is answered in its server's language (`discord_i18n.py`), and the commands
are published with their names and descriptions in every language of ours.

The client is always discord.py's `AutoShardedClient`: over the shards it is given (`shard_count` in all,
`shard_ids` here), or over Discord's recommended count, all in this process. A small bot gets one shard.
Discord takes `max_concurrency` IDENTIFYs per 5 seconds, one per bucket (shard id % max_concurrency): each
shard waits for its bucket's turn at an `IdentifyGate`, which the processes of a bot share through Redis.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .core import DISCORD, ChatCore, Indicator, Photo, Refused, Reply, Request, reply_messages
from .discord_commands import PhotoCommands
from .discord_feedback import FeedbackButton, FeedbackButtons, tell_privately
from .discord_i18n import message_texts, publish_commands, texts_of, with_command_names
from .i18n import Texts
from .supervisor import Failure, network_failure

__all__ = [
    "IDENTIFY_SECONDS",
    "IDENTIFY_TURN_SECONDS",
    "IdentifyGate",
    "SessionStartsUsedUp",
    "build_client",
    "connected",
    "failure_of",
    "run_discord",
]

log = logging.getLogger("doppelbot.discord")


_ANNOTATED_NAME = "faces.jpg"
# Discord shows "typing..." for 10 seconds; show it again a little sooner while a photo takes longer.
_TYPING_REFRESH_S = 8.0
# discord.py sends again by itself after a 500, 502, 504 or 524 (a few times, seconds apart), but not after a
# 503 or a dropped connection: those are sent once more here, so one transient fault never costs the answer.
_FAULT_PAUSE_S = 1.0
# How long a stop waits for replies already in progress; inference takes seconds, not minutes.
_DRAIN_SECONDS = 60.0

T = TypeVar("T")
# Discord's window for IDENTIFYs: `max_concurrency` of them (one per bucket) in any 5 seconds. A turn lasts a
# second longer: it is taken a moment before its IDENTIFY reaches Discord, and the one before may have arrived
# late (measured: a turn taken exactly 5 s after the last was refused by the fake, 1 ms short).
IDENTIFY_SECONDS = 5
IDENTIFY_TURN_SECONDS = IDENTIFY_SECONDS + 1


class SessionStartsUsedUp(RuntimeError):
    """Discord's daily session starts (1000 for most bots) would run out: the bot does not connect, until
    `retry_after` seconds from now, when Discord resets them."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdentifyGate(Protocol):
    """One turn per key in any IDENTIFY_TURN_SECONDS: `bot.ratelimit.RateLimiter(1, IDENTIFY_TURN_SECONDS, storage)`."""

    async def take(self, key: str) -> float:
        """0 and the turn is taken, or the seconds until the next turn."""
        ...


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


def _sending(
    send: Callable[..., Awaitable[T]], message: Reply, attach: Sequence[tuple[str, bytes]] = (), **extra: Any
) -> Callable[[], Awaitable[T]]:
    """What sends one message of a reply with `send` (and the files `attach`, as name and bytes), as often as
    called (new `discord.File`s each time: sending closes the files it was given)."""

    def again() -> Awaitable[T]:
        contents: dict[str, Any] = {"content": message.text or None, **extra}
        named = [(_ANNOTATED_NAME, message.image)] if message.image is not None else []
        if files := [discord.File(io.BytesIO(data), filename=name) for name, data in [*named, *attach]]:
            contents["files"] = files
        return send(**contents)

    return again


async def _delivering(send: Callable[[], Awaitable[T]]) -> T:
    """`send()`, once more after a 5xx or a dropped connection that discord.py did not ride out itself."""
    try:
        return await send()
    except (discord.DiscordServerError, aiohttp.ClientConnectionError) as e:
        # Not a timeout (Discord may have the message): a 5xx answer, or a connection closed before any answer.
        log.warning("sending failed (%s); sending once more", getattr(e, "status", type(e).__name__))
        await asyncio.sleep(_FAULT_PAUSE_S)
        return await send()


class _DoppelClient(discord.AutoShardedClient):
    """A discord.py client that answers photos through `core`, and finishes its answers before it closes."""

    def __init__(
        self,
        core: ChatCore,
        endpoints: _Endpoints,
        shard_count: int | None = None,
        shard_ids: Sequence[int] | None = None,
        identify_gate: IdentifyGate | None = None,
    ) -> None:
        # Our replies never ping anyone (whatever a class label or a future wording says); only the author
        # of the message we reply to is notified, as with any Discord reply.
        quiet = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)
        ids = list(shard_ids) if shard_ids is not None else None
        super().__init__(intents=_intents(), allowed_mentions=quiet, shard_count=shard_count, shard_ids=ids)
        self.core = core
        self._endpoints = endpoints
        self._identify_gate = identify_gate
        self._max_concurrency = 1  # IDENTIFY buckets, from GET /gateway/bot
        self._jobs: set[asyncio.Task] = set()
        self._stopping = False
        self.feedback_buttons = FeedbackButtons(core, self, self._track)  # FeedbackButton's presses go there
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_app_command_error)
        photos = PhotoCommands(core, self.feedback_buttons, self._track, self._download, self._deliver)
        [whois, who_is_this] = photos.commands()
        for command in (whois, *self.feedback_buttons.commands(), who_is_this):
            self.tree.add_command(command)

    # -- lifecycle ----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """Learn the shard count if none was given and the session starts left; listen for feedback buttons; publish
        the slash commands (a failed sync is only logged). Raises `SessionStartsUsedUp` rather than start more
        sessions than Discord allows today."""
        # Asked here rather than by discord.py, which would then open the gateway at the URL Discord names and
        # not at DISCORD_GATEWAY_URL.
        recommended, _, session_start = await self.http.get_bot_gateway()
        self._max_concurrency = max(1, int(session_start.get("max_concurrency") or 1))
        if self.shard_count is None:
            self.shard_count = recommended
        shards = list(self.shard_ids or range(self.shard_count))
        remaining = session_start.get("remaining")
        if isinstance(remaining, int) and remaining < len(shards):
            # Past the daily limit Discord ends every session of the bot: better not to start at all.
            seconds = (session_start.get("reset_after") or 0) / 1000
            raise SessionStartsUsedUp(
                f"Discord allows this bot {remaining} more session start(s) for {seconds / 3600:.1f} h and this "
                f"process would start {len(shards)}: not connecting. Something restarts the bot too often; wait, "
                "or run fewer shards.",
                seconds,
            )
        log.info("Discord shards %s of %d", shards, self.shard_count)
        # Presses on any answer's buttons, sent by this process or another, before or after a restart.
        self.add_dynamic_items(FeedbackButton)
        await publish_commands(self.tree)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's bucket to have its IDENTIFY turn (without a gate: discord.py's 5 s between shards)."""
        if self._identify_gate is None:
            return await super().before_identify_hook(shard_id, initial=initial)
        bot = self.user.id if self.user is not None else 0
        key = f"discord:{bot}:identify:{(shard_id or 0) % self._max_concurrency}"
        while (wait := await self._identify_gate.take(key)) > 0:
            await asyncio.sleep(wait)

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
        tr = message_texts(self.core, message)
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
            hint = self.core.mention_hint(tr)
            await self._send(message, Reply(with_command_names(hint.text, tr)), tr)
            return
        chat = "guild" if message.guild else "dm"
        request = Request("discord", chat, str(message.author.id), language=tr.code)
        # Typing shows while each photo is fetched and looked at, and a failure to show it is only logged:
        # discord.py's own `async with channel.typing()` raises when its first request fails.
        typing = Indicator(message.channel.typing, _TYPING_REFRESH_S)
        for i, attachment in enumerate(attachments):
            await self._send(message, await self.core.answer(self._photo(attachment, tr), request, typing), tr, i)

    def _photo(self, attachment: discord.Attachment, tr: Texts) -> Photo:
        """What Discord announces of an attachment, and how to fetch it."""
        download = functools.partial(self._download, attachment, tr)
        return Photo(download, attachment.size, attachment.content_type, attachment.filename)

    async def _download(self, attachment: discord.Attachment, tr: Texts) -> bytes:
        """The attachment's bytes from Discord's CDN; `Refused` (in `tr`'s words) when they cannot be had."""
        try:
            return await attachment.read()
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
            log.warning("could not download an attachment: %s", type(e).__name__)
            raise Refused(self.core.download_failed(tr)) from None

    async def _send(self, message: discord.Message, reply: Reply, tr: Texts, photo: int = 0) -> None:
        """`reply`, about photo number `photo` of `message`, as a Discord reply to it with the feedback buttons (in
        `tr`'s language) under its last message; still sent, unthreaded, if `message` was deleted meanwhile."""
        reference = message.to_reference(fail_if_not_exists=False)
        view = self.feedback_buttons.view(reply, photo, tr)
        await self._deliver(message.channel.send, reply, view, (), reference)

    async def _deliver(
        self,
        send: Callable[..., Awaitable[object]],
        reply: Reply,
        view: discord.ui.View | None = None,
        attach: Sequence[tuple[str, bytes]] = (),
        reference: discord.MessageReference | None = None,
    ) -> None:
        """`reply` in the messages Discord takes, the first a reply to `reference`; the last carries `view` and the
        files `attach`, and is sent again without them if Discord refuses them: the answer matters more."""
        pieces = reply_messages(reply, DISCORD)
        for i, piece in enumerate(pieces):
            # Only the first message is a reply: each reply would notify the asker again.
            plain: dict[str, Any] = {"reference": reference} if i == 0 and reference is not None else {}
            if i < len(pieces) - 1 or view is None:
                await _delivering(_sending(send, piece, **plain))
                continue
            # The last message, with the buttons, also says what it answers (a press finds the photo through
            # it), without notifying anyone again.
            extra = {"reference": reference, "mention_author": i == 0} if reference is not None else {}
            try:
                await _delivering(_sending(send, piece, attach, view=view, **extra))
            except discord.HTTPException as e:
                if not 400 <= e.status < 500:
                    raise
                log.warning("Discord refused an answer's buttons or photo (%s %s): sent without", e.status, e.code)
                await _delivering(_sending(send, piece, **plain))

    async def on_error(self, event_method: str, /, *args: object, **kwargs: object) -> None:
        """Log a failed event handler (no token, no photo: only the traceback) and apologise if a user waits."""
        log.exception("the %s handler failed", event_method)
        message = args[0] if args else None
        if event_method != "on_message" or not isinstance(message, discord.Message):
            return
        try:
            tr = message_texts(self.core, message)
            await self._send(message, self.core.failed(tr), tr)
        except Exception:  # the apology is best effort: this handler must never raise
            log.warning("could not tell the user that answering failed", exc_info=True)

    # -- application commands -----------------------------------------------------------------

    async def _on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Log a failed command and apologise to its user; never raise."""
        command = interaction.command
        name = f"/{command.name}" if isinstance(command, app_commands.Command) else f'"{getattr(command, "name", "?")}"'
        log.error("the %s command failed", name, exc_info=error)
        try:
            await tell_privately(interaction, self.core.failed(texts_of(self.core, interaction)).text)
        except Exception:
            log.warning("could not tell the user that %s failed", name, exc_info=True)


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


def build_client(
    core: ChatCore,
    api_base: str | None = None,
    gateway_url: str | None = None,
    shard_count: int | None = None,
    shard_ids: Sequence[int] | None = None,
    identify_gate: IdentifyGate | None = None,
) -> discord.AutoShardedClient:
    """A Discord client answering through `core`; `api_base` and `gateway_url` point it at another server.

    `api_base` replaces `https://discord.com/api/v10`, `gateway_url` replaces `wss://gateway.discord.gg/`
    (process-wide class attributes of discord.py, restored when the client closes). It runs `shard_ids` of
    `shard_count` shards (all of them when `shard_ids` is None; Discord's recommended count when both are).
    Its shards IDENTIFY when `identify_gate` gives their bucket a turn.
    """
    # The bot joins no voice channel: discord.py's warnings that voice needs PyNaCl and davey would only
    # worry whoever reads the log at each start.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    return _DoppelClient(core, _Endpoints(api_base, gateway_url), shard_count, shard_ids, identify_gate)


def failure_of(error: BaseException) -> Failure:
    """What a failed Discord run means: a refused token or gateway is not retried, an outage or a used-up day is.
    The reasons are the operator's (logs, /readyz), in English."""
    if isinstance(error, SessionStartsUsedUp):
        # A second past the reset Discord names, so that the first start of the new day is not refused.
        reason = "Discord's session starts for today are used up"  # not for users
        return Failure(reason, retry=True, after=error.retry_after + 1)
    if isinstance(error, discord.LoginFailure):
        reason = "Discord refused the token (401: check DISCORD_TOKEN and DISCORD_API_BASE)"  # not for users
        return Failure(reason, retry=False)
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return Failure("Discord refused the gateway intents (4014)", retry=False)  # not for users
    if isinstance(error, discord.ConnectionClosed):
        # discord.py resumes by itself after every close code that allows it; what reaches here does not.
        if error.code == 4004:
            return Failure("Discord refused the token (4004: check DISCORD_TOKEN)", retry=False)  # not for users
        why = error.reason or "no reason given"  # not for users
        return Failure(f"Discord closed the gateway ({error.code}: {why})", retry=False)  # not for users
    if isinstance(error, discord.DiscordServerError | discord.GatewayNotFound):
        status = getattr(error, "status", None) or "no gateway"  # not for users
        return Failure(f"Discord is failing ({status})", retry=True)  # not for users
    return network_failure(error)


def connected(client: discord.AutoShardedClient) -> bool:
    """Whether every shard of `client` is connected and has been sent its servers."""
    shards = client.shards.values()
    return client.is_ready() and not client.is_closed() and bool(shards) and not any(s.is_closed() for s in shards)


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
