"""A fake Discord on 127.0.0.1 for tests: the REST API, a CDN for attachments, and the gateway WebSocket.

The real discord.py client talks to it as it would to Discord. Tests play the users: they post messages,
run slash commands, use a message's context menu and press buttons with `send_message`, `slash_command`,
`message_command` and `press` (each in the user's `locale`), which arrive over the gateway, and they see what
the bot did in `calls`, every REST request it made, in order of arrival, and in `messages`, every message as it
is now (buttons edited in place included). Each guild has a language, its `preferred_locale`
(`set_preferred_locale`).

Kept small on purpose, with one method per route and one per gateway opcode. The gateway keeps sessions
as Discord does: every DISPATCH is numbered within its session and kept, `disconnect` closes the bot's
WebSocket from the server side (optionally with events the bot missed meanwhile), and a RESUME (op 6) with
a known session id gets the events after the bot's last sequence number replayed, then RESUMED.

Sharded as Discord is: `GET /gateway/bot` recommends `shards`; an IDENTIFY may carry `[shard_id, shard_count]`
(one outside its count is closed with 4010, Invalid Shard); guild g lies on shard (g >> 22) % shard_count,
gets its READY and GUILD_CREATE there, and its events go only to the session of that shard; direct messages
go to shard 0. With `guilds=N` there are N guilds, and guild k lies on shard k % shard_count. IDENTIFYs are
limited as Discord limits them: one per 5 seconds per bucket (shard_id % max_concurrency, which
`/gateway/bot` reports); one too early is answered INVALID_SESSION and kept in `identifies_too_early`. One with
another token than `token` is closed with 4004 (Authentication failed). The day's session starts
(`session_starts_left`) are back to 1000 `session_reset_after_ms` after the first `/gateway/bot`, as it reports.

As strict as Discord where a kinder fake would hide a lost reply: message content over 2,000 characters, and
buttons Discord would not draw (more than 5 rows of 5, a custom_id outside 1-100 characters or used twice, a
label over 80), are refused (400, Invalid Form Body) wherever a message is posted or edited. Commands are synced
as Discord takes them (`testkit.discord_rules`: names, descriptions and their localizations, in every locale) or
refused whole. An interaction is answered once (a second callback: 400, already acknowledged), within its own
token and within 3 seconds (later: 404, unknown interaction), and followups need that answer first; the first
followup after a deferred answer ("thinking...") takes its place, ephemeral if and only if the deferral was,
whatever the followup asks (Discord: it "functions the same as Edit Original Interaction Response"). Faults are
injected per route, by its handler's name ("create_message", "typing", "followup"): an error status
(`fail_next`) or a dropped connection (`drop_next`), before the route is done.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from .discord_rules import DISCORD_LOCALES, MESSAGE_COMMAND, command_errors

__all__ = ["DISCORD_LOCALES", "FakeDiscord", "RestCall", "Upload", "buttons"]

API = "/api/v10"
# Discord's gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 9, 10, 11
OP_NAMES = {HEARTBEAT: "HEARTBEAT", IDENTIFY: "IDENTIFY", RESUME: "RESUME"}
# A close code the client may resume after ("unknown error"); 4004 (bad token) and the like end the session.
RESUMABLE_CLOSE = 4000
# Interaction callback types: 4 answers at once, 5 shows "thinking" and answers later by followup; for a button,
# 6 acknowledges it (the message may be edited later) and 7 edits the button's message at once.
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 4, 5, 6, 7
APPLICATION_COMMAND, MESSAGE_COMPONENT = 2, 3  # interaction types
ACTION_ROW, BUTTON, LINK_STYLE = 1, 2, 5  # component types, and the button style that holds a URL, not an id
MAX_ROWS, MAX_ROW_BUTTONS, MAX_CUSTOM_ID, MAX_LABEL = 5, 5, 100, 80
EPHEMERAL = 64  # message flag: seen only by the user who pressed or ran the command
TEXT_CHANNEL = 0
DEFAULT_MESSAGE, REPLY_MESSAGE = 0, 19
ATTACHMENT_OPTION = 11
MAX_CONTENT = 2000  # characters of a message's content
DM_CHANNEL = 1
INVALID_SHARD = 4010
AUTHENTICATION_FAILED = 4004  # an IDENTIFY with another token than the bot's
IDENTIFY_SECONDS = 5.0  # Discord's window: one IDENTIFY per bucket in it
INTERACTION_DEADLINE_S = 3.0  # Discord's window for an interaction's first answer (a message or "thinking...")
# Guild ids are (GUILD_BASE + k) << 22: a multiple of 1..12's least common multiple puts guild k on shard
# k % shard_count for every count up to 12, at the size of a real snowflake.
GUILD_BASE = 27_720 * 9_000_000


@dataclass(frozen=True)
class Upload:
    """A file the bot sent in a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class RestCall:
    """One HTTP request the bot made, recorded when it arrived; `status` is set once it is answered."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: list[Upload] = field(default_factory=list)
    status: int | None = None
    response: Any = None  # the message Discord returned, for calls that create one
    fault: str | None = None  # the fault injected into this call ("503", "dropped"), if any
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def content(self) -> str | None:
        """The message text of a message create or followup."""
        return self.json.get("content") if isinstance(self.json, dict) else None

    @property
    def reply_to(self) -> int | None:
        """The id of the message this message replies to, if any."""
        ref = self.json.get("message_reference") if isinstance(self.json, dict) else None
        return int(ref["message_id"]) if ref and ref.get("message_id") else None

    def is_message_to(self, channel_id: int) -> bool:
        return self.method == "POST" and self.path == f"{API}/channels/{channel_id}/messages"


_CALL = web.RequestKey("call", RestCall)  # the recorded call, for the route's handler


@dataclass
class _Session:
    """A gateway session: its sequence numbers and every event dispatched in it, for replay on RESUME."""

    session_id: str
    token: str | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # DISPATCH payloads, in order of `s`
    connection: _Connection | None = None  # None while the bot is disconnected
    replayed: list[int] = field(default_factory=list)  # sequence numbers sent again on a RESUME
    shard: tuple[int, int] | None = None  # [shard_id, shard_count] from its IDENTIFY; None: unsharded

    def covers(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of `guild_id` (None: a direct message, which go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else (guild_id >> 22) % count)


@dataclass
class _Connection:
    """One gateway WebSocket: what it was opened with and the session it serves."""

    ws: web.WebSocketResponse
    path: str
    query: dict[str, str]
    session: _Session | None = None
    received: list[str] = field(default_factory=list)  # the opcodes the bot sent, by name


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json;
    # web.json_response would add "; charset=utf-8".
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _json_response({"message": message, "code": code}, status)


def _invalid_form(field: str, code: str, message: str) -> web.Response:
    return _invalid_body({field: {"_errors": [{"code": code, "message": message}]}})


def _invalid_body(errors: dict[str, Any]) -> web.Response:
    """Discord's 400 for a request it refuses, with where and why in `errors`."""
    return _json_response({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)


def _too_long(body: dict[str, Any]) -> web.Response | None:
    """Discord's answer to message content over 2,000 characters or buttons it would not draw; None when it fits."""
    if len(body.get("content") or "") > MAX_CONTENT:
        return _invalid_form("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
    if (problem := _component_problem(body.get("components"))) is not None:
        return _invalid_form("components", "COMPONENT_INVALID", problem)
    return None


def _component_problem(rows: Any) -> str | None:
    """What Discord would refuse in a message's `components` (action rows of buttons); None when it takes them."""
    if rows is None:
        return None
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        return f"at most {MAX_ROWS} action rows"
    seen: set[str] = set()
    for row in rows:
        buttons = row.get("components") if isinstance(row, dict) else None
        if not isinstance(buttons, list) or row.get("type") != ACTION_ROW or not 1 <= len(buttons) <= MAX_ROW_BUTTONS:
            return f"an action row holds 1 to {MAX_ROW_BUTTONS} buttons"
        for button in buttons:
            if not isinstance(button, dict) or button.get("type") != BUTTON:
                return "only buttons are drawn here"
            label, custom_id = button.get("label"), button.get("custom_id")
            if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
                return f"a button's label is at most {MAX_LABEL} characters"
            if not label and not button.get("emoji"):
                return "a button needs a label or an emoji"
            if button.get("style") == LINK_STYLE:
                if custom_id is not None or not button.get("url"):
                    return "a link button has a url and no custom_id"
                continue
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                return f"a button's custom_id is 1 to {MAX_CUSTOM_ID} characters"
            if custom_id in seen:
                return "Component custom id cannot be duplicated"
            seen.add(custom_id)
    return None


def buttons(message: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The buttons of a message payload, row by row ([] for none)."""
    return [list(row.get("components") or []) for row in message.get("components") or []]


@dataclass
class _Interaction:
    """An interaction the fake dispatched, and how the bot has answered it so far."""

    payload: dict[str, Any]
    response: int | None = None  # the callback type, once answered
    original: int | None = None  # the id of the message its @original names, once there is one
    # A deferred answer ("thinking...") that no followup or edit has replaced yet, and whether it is ephemeral.
    loading: bool = False
    loading_flags: int = 0
    at: float = field(default_factory=time.monotonic)  # when it was dispatched


class FakeDiscord:
    """`async with FakeDiscord() as fake:` serves Discord at `fake.api_base` and `fake.gateway_url`."""

    def __init__(
        self, token: str | None = None, heartbeat_interval_ms: int = 41_250, shards: int = 1, guilds: int = 1
    ) -> None:
        self.token = token  # when set, REST calls with another bot token are refused as by Discord
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.shards = shards  # what GET /gateway/bot recommends
        self.max_concurrency = 1  # IDENTIFY buckets, as for every bot outside Discord's large-bot programme
        self.session_starts_left = 999  # of the day's 1000: each IDENTIFY takes one, as `/gateway/bot` reports
        # When they are back to 1000, from the first `/gateway/bot` on: Discord's "reset_after".
        self.session_reset_after_ms = 14_400_000
        self._session_reset_at: float | None = None  # time.monotonic()
        self.identifies_too_early: list[dict[str, Any]] = []  # refused with INVALID_SESSION
        self._identified_at: dict[int, float] = {}  # bucket -> time.monotonic() of its last IDENTIFY
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self.application_id = self.new_id()
        self.bot_user = self._user_payload(self.application_id, "doppelbot", bot=True)
        self.guild_ids = [(GUILD_BASE + k) << 22 for k in range(guilds)]
        self.channel_ids = {guild_id: self.new_id() for guild_id in self.guild_ids}  # one text channel each
        self.guild_id, self.channel_id = self.guild_ids[0], self.channel_ids[self.guild_ids[0]]
        self.dm_channel_id = self.new_id()  # the bot's direct messages with every user, as one channel
        # Each guild's language (its "Community" setting), as GUILD_CREATE and interactions' guild_locale say it.
        self.preferred_locales = dict.fromkeys(self.guild_ids, "en-US")
        self.refused_syncs: list[dict[str, Any]] = []  # the errors of every command sync refused
        self.base_url = self.api_base = self.gateway_url = self.resume_gateway_url = ""

        self.calls: list[RestCall] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []  # the RESUME payloads the bot sent (token, session_id, seq)
        self.sessions: list[_Session] = []
        self.commands: list[dict[str, Any]] = []  # as last synced
        self.interactions: dict[str, _Interaction] = {}  # by interaction id
        self.messages: dict[int, dict[str, Any]] = {}  # every message we know, posted by users or the bot
        self.connections: list[_Connection] = []
        self.cdn_delay = 0.0  # seconds before an attachment download is answered
        # Discord's wait for an interaction's first answer: a callback later than this finds it gone (10062).
        self.interaction_deadline_s = INTERACTION_DEADLINE_S
        self._faults: dict[str, list[int | None]] = {}  # route -> statuses to answer with (None: drop)
        self._cdn: dict[str, tuple[bytes, str | None]] = {}
        self._changed = asyncio.Condition()
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume-gateway", self._gateway)  # READY's resume_gateway_url
        app.router.add_get("/attachments/{path:.+}", self._download)
        for method, path, handler in self._routes():
            app.router.add_route(method, API + path, handler)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]  # a free port, chosen by the system
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_base = self.base_url + API
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        self.resume_gateway_url = f"ws://127.0.0.1:{port}/resume-gateway"
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for connection in self.connections:
            if not connection.ws.closed:
                await connection.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    def _routes(self) -> list[tuple[str, str, Callable]]:
        return [
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._application),
            ("GET", "/gateway", self._gateway_info),
            ("GET", "/gateway/bot", self._gateway_info),
            ("GET", "/applications/{app_id}/commands", self._list_commands),
            ("PUT", "/applications/{app_id}/commands", self._put_commands),
            ("POST", "/applications/{app_id}/commands", self._post_command),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback),
            ("POST", "/webhooks/{app_id}/{token}", self._followup),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._edit_followup),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._delete_followup),
        ]

    # -- what tests use -----------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    @property
    def is_ready(self) -> bool:
        """Whether the bot has identified and been sent its guilds (by all its shards together)."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float = 20) -> None:
        """Until the bot has identified and been sent its guilds, so that dispatched events reach it."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def shards_connected(self, shard_ids: Sequence[int]) -> bool:
        """Whether the bot has a connected session on each of `shard_ids`."""
        live = [s.shard for s in self.sessions if s.connection is not None and not s.connection.ws.closed]
        return all(any(shard is not None and shard[0] == i for shard in live) for i in shard_ids)

    @property
    def identified_shards(self) -> list[list[int] | None]:
        """The `shard` field of every IDENTIFY, in order (None where it had none)."""
        return [identify.get("shard") for identify in self.identifies]

    async def wait_for(self, predicate: Callable[[RestCall], bool], timeout: float = 20) -> RestCall:
        """The first REST call (already made or still to come) for which `predicate` is true."""

        def found() -> RestCall | None:
            return next((call for call in self.calls if predicate(call)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), timeout)
            call = found()
        assert call is not None
        return call

    def calls_where(self, predicate: Callable[[RestCall], bool]) -> list[RestCall]:
        return [call for call in self.calls if predicate(call)]

    def fail_next(self, route: str, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests to `route` (a handler's name, e.g. "typing") with `status`, undone.

        discord.py itself sends again after a 500, 502, 504 or 524 (up to five tries, seconds apart); not after
        another status.
        """
        self._faults.setdefault(route, []).extend([status] * times)

    def drop_next(self, route: str, times: int = 1) -> None:
        """Close the connection instead of answering the next `times` requests to `route`, undone."""
        self._faults.setdefault(route, []).extend([None] * times)

    def user(self, name: str = "alice") -> dict[str, Any]:
        """A new human user."""
        return self._user_payload(self.new_id(), name)

    def attachment(
        self,
        data: bytes,
        filename: str = "photo.jpg",
        content_type: str | None = "image/jpeg",
        size: int | None = None,
    ) -> dict[str, Any]:
        """An attachment payload served from the fake CDN; `size` is what Discord announces (default: the real one)."""
        attachment_id = self.new_id()
        path = f"/attachments/{self.channel_id}/{attachment_id}/{filename}"
        self._cdn[path] = (data, content_type)
        payload = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": self.base_url + path,
            "proxy_url": self.base_url + path,
        }
        if content_type is not None:
            payload["content_type"] = content_type
        return payload

    def downloads(self, attachment: dict[str, Any]) -> list[RestCall]:
        """The requests for `attachment`'s file."""
        path = attachment["url"].removeprefix(self.base_url)
        return self.calls_where(lambda call: call.method == "GET" and call.path == path)

    async def send_message(
        self,
        author: dict[str, Any],
        content: str = "",
        *,
        mention_bot: bool = True,
        attachments: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        reply_to: dict[str, Any] | None = None,
        reply_ping: bool = False,
        include_referenced: bool = True,
        guild: int = 0,
        dm: bool = False,
    ) -> dict[str, Any]:
        """A user posts in a guild's channel (a MESSAGE_CREATE); the message payload.

        `guild` is which guild (k of `guilds`); `dm` sends it to the bot as a direct message instead.

        `mention_bot` writes `@doppelbot` in the text; `reply_ping` notifies the author of `reply_to` the
        way a Discord reply does, by listing them in the mentions only. With `include_referenced=False` a
        reply comes without the message it answers, as Discord sometimes sends it, and must be fetched.
        """
        message = self.compose_message(
            author,
            content,
            mention_bot=mention_bot,
            attachments=attachments,
            reply_to=reply_to,
            reply_ping=reply_ping,
            guild=guild,
            dm=dm,
        )
        await self.dispatch("MESSAGE_CREATE", self.message_event(message, include_referenced))
        return message

    def compose_message(
        self,
        author: dict[str, Any],
        content: str = "",
        *,
        mention_bot: bool = True,
        attachments: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        reply_to: dict[str, Any] | None = None,
        reply_ping: bool = False,
        guild: int = 0,
        dm: bool = False,
    ) -> dict[str, Any]:
        """A user's message as `send_message` posts it, without sending it (for `disconnect(missed=...)`)."""
        mentions = [self.bot_user] if mention_bot else []
        if reply_to is not None and reply_ping and all(u["id"] != reply_to["author"]["id"] for u in mentions):
            mentions.append(reply_to["author"])
        if mention_bot:
            content = f"<@{self.application_id}> {content}".strip()
        guild_id = None if dm else self.guild_ids[guild]
        channel_id = self.dm_channel_id if guild_id is None else self.channel_ids[guild_id]
        return self._message_payload(author, content, list(attachments), mentions, reply_to, guild_id, channel_id)

    @staticmethod
    def message_event(message: dict[str, Any], include_referenced: bool = True) -> dict[str, Any]:
        """The MESSAGE_CREATE data for `message`."""
        return message if include_referenced else {k: v for k, v in message.items() if k != "referenced_message"}

    async def slash_command(
        self,
        user: dict[str, Any],
        name: str,
        attachments: dict[str, dict[str, Any]] | None = None,
        *,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """A user whose Discord is in `locale` runs `/name` with attachment options (option name to attachment), in
        the first guild; the interaction payload. `name` is the command's own name, as Discord sends it whatever
        the user's language."""
        attachments = attachments or {}
        command = next((c for c in self.commands if c["name"] == name), None)
        interaction = self._interaction_payload(APPLICATION_COMMAND, user, self.guild_id, self.channel_id, locale)
        interaction["data"] = {
            "id": command["id"] if command else str(self.new_id()),
            "name": name,
            "type": 1,
            "options": [
                {"name": option, "type": ATTACHMENT_OPTION, "value": a["id"]} for option, a in attachments.items()
            ],
            "resolved": {"attachments": {a["id"]: a for a in attachments.values()}},
        }
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def press(
        self, user: dict[str, Any], message: dict[str, Any] | int, custom_id: str, *, locale: str = "en-US"
    ) -> dict[str, Any]:
        """A user (in `locale`) presses the button `custom_id` of `message` (a MESSAGE_COMPONENT interaction, with
        the message as it is now); the interaction payload. Raises if the message shows no such button."""
        stored = self.messages[int(message if isinstance(message, int) else message["id"])]
        if all(b.get("custom_id") != custom_id for row in buttons(stored) for b in row):
            raise LookupError(f"message {stored['id']} has no button {custom_id!r}")
        guild_id = int(stored["guild_id"]) if stored.get("guild_id") else None
        interaction = self._interaction_payload(MESSAGE_COMPONENT, user, guild_id, int(stored["channel_id"]), locale)
        interaction["message"] = json.loads(json.dumps(stored))  # as it was when pressed
        interaction["data"] = {"custom_id": custom_id, "component_type": BUTTON}
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def message_command(
        self, user: dict[str, Any], name: str, message: dict[str, Any] | int, *, locale: str = "en-US"
    ) -> dict[str, Any]:
        """A user (in `locale`) picks the message context-menu command `name` (its own name, as Discord sends it)
        on `message`, as it is now (Apps > name); the interaction payload. Raises if no such command is synced."""
        command = next((c for c in self.commands if c["name"] == name and c.get("type") == MESSAGE_COMMAND), None)
        if command is None:
            raise LookupError(f"no message command {name!r} is synced: {[c['name'] for c in self.commands]}")
        stored = self.messages[int(message if isinstance(message, int) else message["id"])]
        guild_id = int(stored["guild_id"]) if stored.get("guild_id") else None
        payload = self._interaction_payload(APPLICATION_COMMAND, user, guild_id, int(stored["channel_id"]), locale)
        target = json.loads(json.dumps(stored))
        target.pop("referenced_message", None)  # Discord resolves the message alone
        payload["data"] = {
            "id": command["id"],
            "name": name,
            "type": MESSAGE_COMMAND,
            "target_id": stored["id"],
            "resolved": {"messages": {stored["id"]: target}},
        }
        if guild_id is not None:
            payload["data"]["guild_id"] = str(guild_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def set_preferred_locale(self, locale: str, guild: int = 0) -> None:
        """The owner of guild `guild` (k of `guilds`) sets its language to `locale`; a connected bot is told (a
        GUILD_UPDATE)."""
        if locale not in DISCORD_LOCALES:
            raise ValueError(f"{locale!r} is not a Discord locale")
        guild_id = self.guild_ids[guild]
        self.preferred_locales[guild_id] = locale
        session = next((s for s in reversed(self.sessions) if s.covers(guild_id)), None)
        if session is not None:
            created_only = {"channels", "threads", "members", "member_count", "voice_states", "presences", "large"}
            update = {k: v for k, v in self._guild_payload(guild_id).items() if k not in created_only}
            await self._dispatch(session, "GUILD_UPDATE", update)

    def responses(self, interaction: dict[str, Any]) -> list[RestCall]:
        """Every request the bot made with `interaction`'s token (its callback, followups and edits), in order."""
        token = interaction["token"]
        return self.calls_where(lambda call: f"/{token}/" in call.path or call.path.endswith(f"/{token}"))

    def button(self, message: dict[str, Any] | int, label: str) -> str:
        """The custom_id of `message`'s button whose label starts with `label`, as the message is now."""
        stored = self.messages[int(message if isinstance(message, int) else message["id"])]
        found = [b["custom_id"] for row in buttons(stored) for b in row if (b.get("label") or "").startswith(label)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} buttons of message {stored['id']} start with {label!r}")
        return found[0]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """A DISPATCH event in the newest session of the shard its guild lies on: sent at once if the bot is
        connected, else kept for its RESUME."""
        guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        session = next((s for s in reversed(self.sessions) if s.covers(guild_id)), None)
        if session is None:
            raise RuntimeError(f"the bot has no gateway session for guild {guild_id}")
        await self._dispatch(session, event, data)

    async def disconnect(self, code: int = RESUMABLE_CLOSE, missed: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Close the bot's gateway connection from the server side, as Discord does now and then.

        `missed` are events (name, data) that happen while the bot is away: they are numbered in its session
        before it can come back, so it gets them only if it RESUMEs from where it was.
        """
        session = self.sessions[-1]
        connection, session.connection = session.connection, None
        for event, data in missed:
            await self._dispatch(session, event, data)
        if connection is not None and not connection.ws.closed:
            await connection.ws.close(code=code, message=b"the fake Discord closed the connection")

    @property
    def gateway_ops(self) -> list[str]:
        """Every opcode the bot sent on any connection, by name, in order of connection."""
        return [op for connection in self.connections for op in connection.received]

    # -- payloads -----------------------------------------------------------------------------

    def _interaction_payload(
        self, kind: int, user: dict[str, Any], guild_id: int | None, channel_id: int, locale: str = "en-US"
    ) -> dict:
        """An interaction of `kind` by `user` (whose Discord is in `locale`) in a guild's channel, or in a direct
        message (`guild_id` None)."""
        if locale not in DISCORD_LOCALES:
            raise ValueError(f"{locale!r} is not a Discord locale")
        interaction_id = str(self.new_id())
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": str(self.application_id),
            "type": kind,
            "token": f"interaction-token-{self.new_id()}",
            "version": 1,
            "app_permissions": "2251799813685247",
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 25 * 1024 * 1024,
            "channel_id": str(channel_id),
        }
        if guild_id is None:
            dm = {"id": str(channel_id), "type": DM_CHANNEL, "recipients": [user], "last_message_id": None, "flags": 0}
            payload.update(channel=dm, user=user, context=1, authorizing_integration_owners={"0": str(user["id"])})
        else:
            payload.update(
                guild_id=str(guild_id),
                guild_locale=self.preferred_locales[guild_id],
                channel=self._channel_payload(guild_id),
                member=self._member_payload(user),
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
            )
        self.interactions[interaction_id] = _Interaction(payload)
        return payload

    @staticmethod
    def _user_payload(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "flags": 0,
        }

    @staticmethod
    def _member_payload(user: dict[str, Any]) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "2251799813685247",
        }

    def _channel_payload(self, guild_id: int | None = None) -> dict[str, Any]:
        guild_id = self.guild_id if guild_id is None else guild_id
        return {
            "id": str(self.channel_ids[guild_id]),
            "type": TEXT_CHANNEL,
            "guild_id": str(guild_id),
            "name": "photos",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }

    def _guild_payload(self, guild_id: int) -> dict[str, Any]:
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": "2251799813685247",
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": str(guild_id),
            "name": "Look-alikes" if guild_id == self.guild_id else f"Look-alikes {self.guild_ids.index(guild_id)}",
            "icon": None,
            "owner_id": str(self.new_id()),
            "features": [],
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "channels": [self._channel_payload(guild_id)],
            "threads": [],
            "members": [self._member_payload(self.bot_user)],
            "member_count": 2,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": self.preferred_locales[guild_id],
            "system_channel_flags": 0,
        }

    def _message_payload(
        self,
        author: dict[str, Any],
        content: str,
        attachments: list[dict[str, Any]],
        mentions: list[dict[str, Any]],
        reply_to: dict[str, Any] | None,
        guild_id: int | None,
        channel_id: int,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.new_id()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": DEFAULT_MESSAGE,
            "flags": 0,
        }
        if guild_id is not None:
            message["guild_id"] = str(guild_id)
        if guild_id is not None and not author.get("bot"):
            message["member"] = {k: v for k, v in self._member_payload(author).items() if k != "user"}
        if reply_to is not None:
            message["type"] = REPLY_MESSAGE
            message["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                "guild_id": reply_to.get("guild_id"),
            }
            message["referenced_message"] = reply_to
        self.messages[int(message["id"])] = message
        return message

    def _posted_message(self, channel_id: int, body: dict[str, Any], files: list[Upload]) -> dict[str, Any]:
        """The message the bot created in `channel_id` with `body` (and `files`), as Discord would return it."""
        attachments = [
            self.attachment(upload.data, upload.filename, upload.content_type or "application/octet-stream")
            for upload in files
        ]
        ref = body.get("message_reference") or {}
        replied = self.messages.get(int(ref["message_id"])) if ref.get("message_id") else None
        guild_id = next((g for g, c in self.channel_ids.items() if c == channel_id), None)
        content = body.get("content") or ""
        message = self._message_payload(self.bot_user, content, attachments, [], replied, guild_id, channel_id)
        message["components"] = body.get("components") or []
        message["flags"] = (body.get("flags") or 0) & EPHEMERAL
        return message

    def _edited(self, message: dict[str, Any], body: dict[str, Any], files: list[Upload]) -> dict[str, Any]:
        """`message` edited with `body` as Discord edits: only the fields given change; attachments kept are those
        the body lists, then the new files."""
        if "content" in body:
            message["content"] = body["content"] or ""
        if "components" in body:
            message["components"] = body["components"] or []
        if "attachments" in body:
            kept = {str(a.get("id")) for a in body["attachments"] or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        for upload in files:
            kind = upload.content_type or "application/octet-stream"
            message["attachments"].append(self.attachment(upload.data, upload.filename, kind))
        message["edited_timestamp"] = _now()
        return message

    # -- REST ---------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Record every request as it arrives, then its status once answered."""
        if request.path == "/gateway":
            return await handler(request)
        call = RestCall(request.method, request.path, dict(request.query))
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    upload = Upload(name, value.filename, value.content_type, value.file.read())
                    call.files.append(upload)
                elif name == "payload_json":
                    call.json = json.loads(value)
        elif request.can_read_body:
            raw = await request.read()
            call.json = json.loads(raw) if raw and request.content_type == "application/json" else None
        request[_CALL] = call
        await self._add(call)
        if (
            self.token is not None
            and self._needs_token(request)
            and request.headers.get("Authorization") != (f"Bot {self.token}")
        ):
            call.status = 401
            return _error(401, "401: Unauthorized")
        route = getattr(request.match_info.route.handler, "__name__", "").lstrip("_")
        if faults := self._faults.get(route):
            return self._fault(request, call, faults.pop(0))
        try:
            response = await handler(request)
        except web.HTTPException as e:
            call.status = e.status
            raise
        call.status = response.status
        return response

    @staticmethod
    def _fault(request: web.Request, call: RestCall, status: int | None) -> web.Response:
        if status is not None:
            call.fault, call.status = str(status), status
            return _error(status, f"{status}: the fake Discord failed on purpose")
        # A closed transport sends nothing: the client reads "server disconnected".
        call.fault = "dropped"
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=499)

    @staticmethod
    def _needs_token(request: web.Request) -> bool:
        # Interaction callbacks and followups are authorised by the interaction token in their path.
        return request.path.startswith(API) and not request.path.startswith(
            (f"{API}/webhooks/", f"{API}/interactions/")
        )

    async def _add(self, call: RestCall) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _me(self, request: web.Request) -> web.Response:
        return _json_response(self.bot_user)

    async def _application(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": "doppelbot",
                "icon": None,
                "description": "Who is in this photo?",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": self.bot_user,
                "owner": self._user_payload(self.new_id(), "owner"),
                "team": None,
                "summary": "",
                "verify_key": "0" * 64,
                "flags": 0,
                "interactions_endpoint_url": None,
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        if self._session_reset_at is None:
            self._session_reset_at = now + self.session_reset_after_ms / 1000
        if now >= self._session_reset_at:  # a new day for session starts, as Discord counts them
            self.session_starts_left, self._session_reset_at = 1000, now + 86_400
        limit = {
            "total": 1000,
            "remaining": self.session_starts_left,
            "reset_after": round((self._session_reset_at - now) * 1000),
            "max_concurrency": self.max_concurrency,
        }
        return _json_response({"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit})

    def _command_payload(self, command: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(self.new_id()),
            "application_id": str(self.application_id),
            "version": str(self.new_id()),
            "type": 1,
            "description": "",  # a context menu's: Discord returns one for every command
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **command,
        }

    async def _list_commands(self, request: web.Request) -> web.Response:
        return _json_response(self.commands)

    async def _put_commands(self, request: web.Request) -> web.Response:
        """Discord's bulk overwrite: the commands sent replace every command of the application, or none does."""
        commands = request[_CALL].json
        if (errors := command_errors(commands)) is not None:
            self.refused_syncs.append(errors)
            return _invalid_body(errors)
        self.commands = [self._command_payload(c) for c in commands]
        return _json_response(self.commands)

    async def _post_command(self, request: web.Request) -> web.Response:
        body = request[_CALL].json
        if not isinstance(body, dict):
            return _invalid_form("_", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        kind = body.get("type") or 1
        others = [c for c in self.commands if (c["name"], c.get("type") or 1) != (body.get("name"), kind)]
        if (errors := command_errors([body, *others])) is not None:
            self.refused_syncs.append(errors)
            return _invalid_body(errors.get("0", errors))
        command = self._command_payload(body)
        self.commands = [*others, command]
        return _json_response(command, 201)

    async def _typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        if channel_id not in (*self.channel_ids.values(), self.dm_channel_id):
            return _error(404, "Unknown Channel", 10003)
        call: RestCall = request[_CALL]
        body = call.json or {}
        if not body.get("content") and not call.files:
            return _error(400, "Cannot send an empty message", 50006)
        if (refused := _too_long(body)) is not None:
            return refused
        call.response = self._posted_message(channel_id, body, call.files)
        return _json_response(call.response)

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["message_id"]))
        if message is None or int(message["channel_id"]) != int(request.match_info["channel_id"]):
            return _error(404, "Unknown Message", 10008)
        return _json_response(message)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(request.match_info["interaction_id"])
        if interaction is None or interaction.payload["token"] != request.match_info["token"]:
            return _error(404, "Unknown interaction", 10062)
        if interaction.response is not None:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        if time.monotonic() - interaction.at > self.interaction_deadline_s:
            return _error(404, "Unknown interaction", 10062)  # answered too late: the user saw it fail
        call: RestCall = request[_CALL]
        body = call.json or {}
        kind, data = body.get("type"), body.get("data") or {}
        component = interaction.payload["type"] == MESSAGE_COMPONENT
        if kind not in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE) and not (
            component and kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE)
        ):
            return _error(400, "Interaction callback type is not valid for this interaction", 50035)
        if (refused := _too_long(data)) is not None:
            return refused
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction.payload["id"],
                "type": interaction.payload["type"],
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool((data.get("flags") or 0) & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        interaction.response = kind
        if kind == DEFERRED_CHANNEL_MESSAGE:
            interaction.loading, interaction.loading_flags = True, (data.get("flags") or 0) & EPHEMERAL
        if component and kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            interaction.original = int(interaction.payload["message"]["id"])  # @original: the button's message
        if kind == CHANNEL_MESSAGE:
            message = self._posted_message(int(interaction.payload["channel_id"]), data, call.files)
            interaction.original = int(message["id"])
            answer["resource"]["message"] = message
        elif kind == UPDATE_MESSAGE:
            answer["resource"]["message"] = self._edited(self.messages[interaction.original], data, call.files)
        return _json_response(answer)

    def _answered_interaction(self, request: web.Request) -> _Interaction | None:
        """The interaction a webhook request names by its token, once the bot has answered it (Discord knows no
        webhook for an interaction before)."""
        if request.match_info["app_id"] != str(self.application_id):
            return None
        token = request.match_info["token"]
        found = next((i for i in self.interactions.values() if i.payload["token"] == token), None)
        return found if found is not None and found.response is not None else None

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._answered_interaction(request)
        if interaction is None:
            return _error(404, "Unknown Webhook", 10015)
        call: RestCall = request[_CALL]
        if (refused := _too_long(call.json or {})) is not None:
            return refused
        call.response = self._replacing_loading(interaction, call)
        return _json_response(call.response)

    def _replacing_loading(self, interaction: _Interaction, call: RestCall) -> dict[str, Any]:
        """The message a followup (or an edit of @original) posts; the first after a deferral takes the place of
        "thinking...", as its @original, ephemeral as the deferral was."""
        body = dict(call.json or {})
        if interaction.loading:
            body["flags"] = ((body.get("flags") or 0) & ~EPHEMERAL) | interaction.loading_flags
        message = self._posted_message(int(interaction.payload["channel_id"]), body, call.files)
        if interaction.loading:
            interaction.loading, interaction.original = False, int(message["id"])
        return message

    async def _edit_followup(self, request: web.Request) -> web.Response:
        interaction = self._answered_interaction(request)
        if interaction is None:
            return _error(404, "Unknown Webhook", 10015)
        call: RestCall = request[_CALL]
        if (refused := _too_long(call.json or {})) is not None:
            return refused
        named = request.match_info["message_id"]
        target = interaction.original if named == "@original" else int(named) if named.isdigit() else None
        if target is None and named == "@original" and interaction.loading:
            # The answer to a deferred command ("thinking..."), edited into its first message.
            call.response = self._replacing_loading(interaction, call)
            return _json_response(call.response)
        if target not in self.messages:
            return _error(404, "Unknown Message", 10008)
        call.response = self._edited(self.messages[target], call.json or {}, call.files)
        return _json_response(call.response)

    async def _delete_followup(self, request: web.Request) -> web.Response:
        """Delete @original (a deferred "thinking..." included) or a followup; later followups post anew."""
        interaction = self._answered_interaction(request)
        if interaction is None:
            return _error(404, "Unknown Webhook", 10015)
        named = request.match_info["message_id"]
        if named == "@original" and interaction.loading:
            interaction.loading = False
            return web.Response(status=204)
        target = interaction.original if named == "@original" else int(named) if named.isdigit() else None
        if target is None or target not in self.messages:
            return _error(404, "Unknown Message", 10008)
        del self.messages[target]
        if target == interaction.original:
            interaction.original = None
        return web.Response(status=204)

    async def _download(self, request: web.Request) -> web.Response:
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        found = self._cdn.get(request.path)
        if found is None:
            return web.Response(status=404)
        data, content_type = found
        return web.Response(body=data, headers={"Content-Type": content_type or "application/octet-stream"})

    async def _unknown(self, request: web.Request) -> web.Response:
        return _error(404, f"the fake Discord has no route for {request.method} {request.path}")

    # -- gateway ------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        # discord.py asks for zlib/zstd-stream compression in the query, but reads text frames as plain
        # JSON (it decompresses only binary frames), so this fake always answers uncompressed.
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = _Connection(ws, request.path, dict(request.query))
        self.connections.append(connection)
        await self._send(connection, {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        handlers = {HEARTBEAT: self._on_heartbeat, IDENTIFY: self._on_identify, RESUME: self._on_resume}
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            connection.received.append(OP_NAMES.get(op, str(op)))
            handler = handlers.get(op)
            if handler is not None:
                await handler(connection, payload.get("d"))
            async with self._changed:
                self._changed.notify_all()
        if connection.session is not None and connection.session.connection is connection:
            connection.session.connection = None
        return ws

    async def _send(self, connection: _Connection, payload: dict[str, Any]) -> None:
        await connection.ws.send_str(json.dumps(payload))

    async def _dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        connection = session.connection
        if connection is not None and not connection.ws.closed:
            await self._send(connection, payload)

    async def _on_heartbeat(self, connection: _Connection, data: Any) -> None:
        await self._send(connection, {"op": HEARTBEAT_ACK})

    async def _on_identify(self, connection: _Connection, data: dict[str, Any]) -> None:
        if self.token is not None and data.get("token") != self.token:
            await connection.ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        shard = data.get("shard")
        if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
            await connection.ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return
        bucket, now = (shard[0] if shard else 0) % self.max_concurrency, time.monotonic()
        if now - self._identified_at.get(bucket, float("-inf")) < IDENTIFY_SECONDS:
            self.identifies_too_early.append(data)
            await self._send(connection, {"op": INVALID_SESSION, "d": False})
            return
        self._identified_at[bucket] = now
        self.session_starts_left = max(0, self.session_starts_left - 1)
        self.identifies.append(data)
        session = _Session(f"session-{self.new_id()}", data.get("token"), connection=connection)
        session.shard = tuple(shard) if shard is not None else None
        self.sessions.append(session)
        connection.session = session
        guilds = [guild_id for guild_id in self.guild_ids if session.covers(guild_id)]
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if shard is not None:
            ready["shard"] = shard
        await self._dispatch(session, "READY", ready)
        for guild_id in guilds:
            await self._dispatch(session, "GUILD_CREATE", self._guild_payload(guild_id))
        if all(self._live_session_for(guild_id) for guild_id in self.guild_ids):
            self._ready.set()

    def _live_session_for(self, guild_id: int) -> bool:
        return any(s.covers(guild_id) and s.connection is not None for s in self.sessions)

    async def _on_resume(self, connection: _Connection, data: dict[str, Any]) -> None:
        self.resumes.append(data)
        session = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        seq = data.get("seq")
        if session is None or session.token != data.get("token") or not isinstance(seq, int) or seq > session.seq:
            # Unknown or stale: the client must identify afresh, as Discord says for a session it cannot resume.
            await self._send(connection, {"op": INVALID_SESSION, "d": False})
            return
        connection.session = session
        session.connection = connection
        for payload in session.events:
            if payload["s"] > seq:
                session.replayed.append(payload["s"])
                await self._send(connection, payload)
        await self._dispatch(session, "RESUMED", {})
