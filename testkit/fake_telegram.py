"""A fake Telegram Bot API server on 127.0.0.1, enough for python-telegram-bot's polling bot.

Tests push updates (`fake.push_private_photo(...)`), the real bot fetches them with `getUpdates`, and
tests read what it answered (`await fake.wait_for("sendMessage")`). Every request is recorded as a
`Call`. The update JSON follows the Bot API's shapes: per-chat message ids, `from`, photo sizes
from small to large, caption entities with UTF-16 offsets, files the bot can `getFile` and download.
It is as strict as the Bot API where a kinder fake would hide a lost reply: a text over 4,096 or a
caption over 1,024 characters, or an empty text, is refused with the Bot API's own 400.

The bot's profile per language, as the Bot API keeps it: setMyCommands (1 to 32 characters of a-z, 0-9 and _ per
command, descriptions of 1 to 256 characters, 100 commands at most), setMyDescription (512 characters at most) and
setMyShortDescription (120), each for a `language_code` of two lowercase letters or for everyone else (none given);
`menus`, `descriptions` and `short_descriptions` hold them by language ("" for the default). Users carry the
`language_code` their app sends (`new_user(..., language_code="es")`).

Inline keyboards too: `reply_markup` on sendMessage/sendPhoto is checked as Telegram checks it (callback_data
of 1 to 64 bytes, no empty button text, 100 buttons at most) and kept with the message; `push_callback` presses
a button that is there, as a user can, and the callback query carries the message with its `reply_to_message`
one level deep, as the Bot API sends it; each query is answered once (answerCallbackQuery), within 15 s;
editMessageReplyMarkup changes a message of the bot's, and refuses a keyboard that would not change. Updates
are delivered by getUpdates only of the kinds its `allowed_updates` asked for.

Faults are injected per method at one dispatch point (`_api`): a Bot API error (`fail_next`), flood
control with `retry_after` (`flood_next`), a proxy's 502 (`bad_gateway_next`), a slow answer
(`slow_next`) and a dropped connection (`drop_next`). A fault strikes either before the method is
done (the bot's request is lost) or after it (done, but the answer is lost on the way back).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web

__all__ = [
    "CALLBACK_ANSWER_S",
    "DOWNLOAD",
    "MAX_CAPTION",
    "MAX_COMMAND",
    "MAX_COMMANDS",
    "MAX_COMMAND_DESCRIPTION",
    "MAX_DESCRIPTION",
    "MAX_SHORT_DESCRIPTION",
    "MAX_TEXT",
    "NOT_MODIFIED",
    "BotApiError",
    "Call",
    "FakeTelegram",
    "Fault",
    "Pressed",
    "StoredFile",
]

# The method name under which a file download is recorded; no Bot API method has a space in its name.
DOWNLOAD = "file download"
# Telegram's Bot API serves no file over 20 MB: getFile answers "file is too big" instead.
MAX_DOWNLOAD = 20 * 1024 * 1024
# The Bot API's longest message text and photo caption, counted in UTF-16 code units as Telegram counts.
MAX_TEXT = 4096
MAX_CAPTION = 1024
# Inline keyboards: each button's callback_data is 1 to 64 bytes, a keyboard 100 buttons at most; a callback
# query's answer (its toast) 200 characters at most, and it must come within about 15 s of the press.
MAX_CALLBACK_DATA = 64
MAX_BUTTONS = 100
MAX_TOAST = 200
CALLBACK_ANSWER_S = 15.0
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
_BAD_BUTTON = "Bad Request: can't parse inline keyboard button: "
# An inline button does one of these; one with text only is refused.
_BUTTON_ACTIONS = frozenset(
    {"callback_data", "url", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat", "pay"}
)
_QUERY_GONE = "Bad Request: query is too old and response timeout expired or query ID is invalid"
# The bot's menu and profile, as TDLib checks them (td/telegram/BotCommand.cpp, misc.cpp) and Telegram's servers
# after it: a command is 1 to 32 of a-z, 0-9 and _ (a leading "/" and spaces around it are dropped), a description
# 1 to 256 characters once trimmed; 100 commands at most; a language code is two lowercase letters, or none.
MAX_COMMANDS = 100
MAX_COMMAND = 32
MAX_COMMAND_DESCRIPTION = 256
MAX_DESCRIPTION = 512  # setMyDescription: what an empty chat with the bot shows
MAX_SHORT_DESCRIPTION = 120  # setMyShortDescription: the bot's profile page, and links to it
_COMMAND = re.compile(r"[a-z0-9_]+")
_LANGUAGE_CODE = re.compile(r"[a-z]{2}")
# What getUpdates sends when no allowed_updates was ever given: every kind but these.
_NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Parameters the Bot API takes as plain strings; python-telegram-bot JSON-encodes every other value.
_TEXT_PARAMS = frozenset(
    {
        "text",
        "caption",
        "file_id",
        "action",
        "parse_mode",
        "emoji",
        "description",
        "short_description",
        "language_code",
        "callback_query_id",
    }
)
# Long polls are capped so a test that forgets to stop its bot cannot hold the server for long.
_MAX_POLL = 30.0
_PHOTO_WIDTHS = (90, 320, 800)  # Telegram's thumbnail sizes below the full photo
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# What nginx in front of the Bot API answers when the server behind it fails.
_BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


@dataclass
class Call:
    """One request the bot made: the method, its decoded parameters, uploaded files, and when."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    error: str | None = None  # the Bot API error the fake answered with; None when the call was done
    fault: str | None = None  # the fault injected into this call ("502", "dropped", "slow", ...), if any
    result: Any = None  # what the method returned, when it was done

    @property
    def keyboard(self) -> list[list[dict[str, Any]]] | None:
        """The inline keyboard this call sent (rows of buttons), or None."""
        markup = self.params.get("reply_markup")
        return markup.get("inline_keyboard") if isinstance(markup, dict) else None

    @property
    def reply_to(self) -> int | None:
        """The message id this call answers, from `reply_parameters` (or the old `reply_to_message_id`)."""
        reply = self.params.get("reply_parameters")
        if isinstance(reply, dict):
            return reply.get("message_id")
        return self.params.get("reply_to_message_id")


@dataclass
class StoredFile:
    """A file the fake serves: what getFile says of it, and its bytes."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    file_size: int  # as announced; may differ from len(data) to test size limits without 20 MB in memory


@dataclass
class Fault:
    """One injected failure of a method: an error answer, a 502, a slow answer or a dropped connection."""

    kind: str  # "error", "bad_gateway", "slow" or "drop"
    error: BotApiError | None = None  # for "error"
    delay: float = 0.0  # for "slow"
    after: bool = False  # strike once the method is done (its answer lost), not before


@dataclass
class Pressed:
    """A callback query pushed by `push_callback`: when, and whether the bot answered it."""

    query: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    answered: bool = False


class BotApiError(Exception):
    """Raised by a method handler to answer `{"ok": false, ...}` as the Bot API does."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters  # ResponseParameters, e.g. {"retry_after": 3}


@cache
def tiny_jpeg() -> bytes:
    """An 8x8 grey JPEG: the stand-in for the small photo sizes, useless to a face finder."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def utf16_len(text: str) -> int:
    """Telegram counts entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def entities_of(text: str) -> list[dict[str, Any]]:
    """The `mention` and `bot_command` entities Telegram would find in `text`."""
    found = []
    for match in re.finditer(r"(?<![\w@/])(@\w{3,})|(?<![\w/])(/\w+(?:@\w+)?)", text):
        kind = "mention" if match.group(1) else "bot_command"
        offset = utf16_len(text[: match.start()])
        found.append({"type": kind, "offset": offset, "length": utf16_len(match.group(0))})
    return found


class FakeTelegram:
    """`async with FakeTelegram() as fake:` serves the Bot API at `fake.base_url` and files at `fake.base_file_url`."""

    def __init__(
        self, token: str = "123456789:AAFakeTokenForTestsOnly_0123456789ab", username: str = "doppel_test_bot"
    ):
        self.token = token
        self.bot_user = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Doppelbot",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,  # privacy mode, as bots start
            "supports_inline_queries": False,
        }
        self.user = {"id": 1001, "is_bot": False, "first_name": "Ada", "username": "ada", "language_code": "en"}
        self.other_user = {"id": 1002, "is_bot": False, "first_name": "Grace", "username": "grace"}
        self.private_chat = {"id": 1001, "type": "private", "first_name": "Ada", "username": "ada"}
        self.group_chat = {"id": -1001234567890, "type": "supergroup", "title": "Who is who"}
        self.chats: dict[int, dict[str, Any]] = {c["id"]: c for c in (self.private_chat, self.group_chat)}
        self.calls: list[Call] = []
        self.files: dict[str, StoredFile] = {}
        self.pushed: list[dict[str, Any]] = []  # every update ever pushed
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by the bot
        self.delivered: list[int] = []  # update ids in every getUpdates answer that reached the bot, in order
        self.download_delay = 0.0  # seconds each file download waits before its bytes come
        self.base_url = ""
        self.base_file_url = ""
        self._faults: dict[str, list[Fault]] = {}
        self._flood_until: dict[str, float] = {}  # method -> when its flood control ends (monotonic)
        self._methods: dict[str, Callable[[Call], Awaitable[Any]]] = {
            "getme": self._get_me,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates,
            "getfile": self._get_file,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendchataction": self._send_chat_action,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "setmydescription": self._set_my_description,
            "getmydescription": self._get_my_description,
            "setmyshortdescription": self._set_my_short_description,
            "getmyshortdescription": self._get_my_short_description,
            "answercallbackquery": self._answer_callback_query,
            "editmessagereplymarkup": self._edit_message_reply_markup,
        }
        # Every message of every chat as Telegram holds it now (a user's, or the bot's with its keyboard), by
        # (chat id, message id); a message its sender deleted is gone from here.
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.callbacks: dict[str, Pressed] = {}  # the callback queries pushed, by id
        self.callback_answer_s = CALLBACK_ANSWER_S  # how long a callback query may wait for its answer
        self.allowed_updates: list[str] | None = None  # as getUpdates last set it; None: the Bot API's default
        # The command menu, description and short description per language_code ("": everyone else's), as last set.
        self.menus: dict[str, list[dict[str, Any]]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        # As setWebhook left it: url, secret_token, allowed_updates, max_connections; None while the bot may poll.
        self.webhook: dict[str, Any] | None = None
        self._update_ids = itertools.count(100_000)
        self._message_ids: dict[int, itertools.count] = {}
        self._file_ids = itertools.count(1)
        self._media_groups = itertools.count(13_000_000_000_000_000)
        self._callback_ids = itertools.count(4_382_000_000_000_000_000)
        self._changed = asyncio.Event()  # set and replaced whenever an update or a call arrives
        self._closing = False
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        # A short shutdown timeout: a long poll still open when the test ends must not hold it up.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        self.base_file_url = f"http://127.0.0.1:{port}/file/bot"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the bot did --------------------------------------------------------------------

    def called(self, method: str) -> list[Call]:
        """The calls of `method` so far, oldest first."""
        return [c for c in self.calls if c.method == method]

    @property
    def downloads(self) -> list[str]:
        """The file paths the bot downloaded, in order."""
        return [c.params["file_path"] for c in self.called(DOWNLOAD)]

    @property
    def replies(self) -> list[Call]:
        """Every message the bot delivered (text or photo), oldest first; calls that were refused are left out."""
        return [c for c in self.calls if c.method in ("sendMessage", "sendPhoto") and c.error is None]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 20.0) -> list[Call]:
        """The first `count` calls of `method`, once there are that many; AssertionError after `timeout`."""
        await self.wait_until(lambda: len(self.called(method)) >= count, timeout, f"{count} x {method}")
        return self.called(method)[:count]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "a condition") -> None:
        """Return once `condition()` holds, checked after every call and update; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"waited {timeout}s for {what}; the bot called: {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The default command menu (for users whose language has none of its own), as last set."""
        return self.menus.get("", [])

    def buttons(self, message: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """The inline keyboard under `message` now (rows of buttons: text, callback_data); [] for none."""
        held = self.messages.get((message["chat"]["id"], message["message_id"])) or {}
        return held.get("reply_markup", {}).get("inline_keyboard", [])

    def answer_to(self, query: dict[str, Any]) -> Call | None:
        """The bot's answer (answerCallbackQuery that was done) to the callback query `query`, if it came."""
        for call in self.called("answerCallbackQuery"):
            if call.error is None and call.params.get("callback_query_id") == query["id"]:
                return call
        return None

    def update_id_of(self, message: dict[str, Any]) -> int:
        """The id of the update that brought `message`."""
        for update in self.pushed:
            pushed = update.get("message") or {}
            if pushed.get("message_id") == message["message_id"] and pushed.get("chat") == message["chat"]:
                return update["update_id"]
        raise KeyError(f"no update brought message {message['message_id']}")

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self, method: str, error_code: int = 400, description: str = "Bad Request: test failure", times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` with a Bot API error instead of doing them."""
        self._add_faults(method, times, Fault("error", BotApiError(error_code, description)))

    def flood_next(self, method: str, retry_after: int = 1) -> None:
        """Flood control: refuse the next call of `method` with 429 and `retry_after`, as Telegram does.

        Until `retry_after` seconds have passed, every further call of `method` is refused the same way, so
        a bot that retries too early is refused again (and the test sees it in `called(method)`).
        """
        self._add_faults(method, 1, Fault("error", _flood_error(retry_after)))

    def bad_gateway_next(self, method: str, times: int = 1, after: bool = False) -> None:
        """Answer the next `times` calls of `method` with a proxy's "502 Bad Gateway" page (not JSON).

        With `after`, the method is done first (for getUpdates: the long poll waits for updates) and only its
        answer is lost, so the updates stay unconfirmed and must come again.
        """
        self._add_faults(method, times, Fault("bad_gateway", after=after))

    def slow_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before doing the next `times` calls of `method`."""
        self._add_faults(method, times, Fault("slow", delay=seconds))

    def drop_next(self, method: str, times: int = 1, after: bool = False) -> None:
        """Close the connection instead of answering the next `times` calls of `method` (done first with `after`)."""
        self._add_faults(method, times, Fault("drop", after=after))

    def _add_faults(self, method: str, times: int, fault: Fault) -> None:
        self._faults.setdefault(method.lower(), []).extend([fault] * times)

    def _take_fault(self, key: str, after: bool) -> Fault | None:
        """The next fault armed for method `key` that strikes at this point (before or after doing it)."""
        if not after and time.monotonic() < self._flood_until.get(key, 0.0):
            remaining = max(1, math.ceil(self._flood_until[key] - time.monotonic()))
            return Fault("error", _flood_error(remaining))
        queue = self._faults.get(key, [])
        if queue and queue[0].after == after:
            fault = queue.pop(0)
            if fault.error is not None and fault.error.error_code == 429:
                self._flood_until[key] = time.monotonic() + fault.error.parameters["retry_after"]
            return fault
        return None

    # -- what the user does ------------------------------------------------------------------

    def add_file(
        self, data: bytes, suffix: str = "jpg", folder: str = "photos", file_size: int | None = None
    ) -> StoredFile:
        """Store `data` as a file the bot can fetch; `file_size` overrides the size getFile announces."""
        n = next(self._file_ids)
        stored = StoredFile(
            file_id=f"AgACAgIAAxkBAAI{n:06d}fakefileid",
            file_unique_id=f"AQAD{n:06d}",
            file_path=f"{folder}/file_{n}.{suffix}",
            data=data,
            file_size=len(data) if file_size is None else file_size,
        )
        self.files[stored.file_id] = stored
        return stored

    def photo_sizes(self, data: bytes, width: int = 1280, height: int = 853, small: bytes | None = None) -> list[dict]:
        """PhotoSize objects from the smallest to `data` itself; the smaller ones serve `small` (a tiny JPEG)."""
        sizes = []
        thumb = tiny_jpeg() if small is None else small
        for w in (w for w in _PHOTO_WIDTHS if w < width):
            stored = self.add_file(thumb)
            sizes.append(self._size(stored, w, round(height * w / width)))
        sizes.append(self._size(self.add_file(data), width, height))
        return sizes

    def new_user(self, first_name: str, language_code: str | None = "en") -> tuple[dict[str, Any], dict[str, Any]]:
        """Another person who talks to the bot: their User and their private chat with it. `language_code`: the
        IETF tag their app's language gives ("es", "pt-br"); None for a user whose app sends none."""
        user_id = 2000 + len(self.chats)
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code is not None:
            user["language_code"] = language_code
        chat = {"id": user_id, "type": "private", "first_name": first_name}
        self.chats[user_id] = chat
        return user, chat

    def push_message(self, chat: dict | None = None, sender: dict | None = None, **fields: Any) -> dict[str, Any]:
        """Deliver a new message (any Message fields) to the bot; returns the message as sent."""
        chat = chat or self.private_chat
        message = {
            "message_id": self._next_message_id(chat["id"]),
            "from": sender or self.user,
            "chat": chat,
            "date": int(time.time()),
            **fields,
        }
        self.push_update({"message": message})
        return message

    def push_callback(self, message: dict[str, Any], data: str, sender: dict | None = None) -> dict[str, Any]:
        """`sender` (by default `user`) presses the button with `data` under the bot's `message` (e.g. a sendMessage
        call's `result`); returns the callback query. As in Telegram, only a button shown there now can be pressed.
        The query's message is the message as it is now, with the message it replied to one level deep (absent
        if that one was deleted)."""
        chat = message["chat"]
        held = self.messages.get((chat["id"], message["message_id"]))
        if held is None or held["from"]["id"] != self.bot_user["id"]:
            raise ValueError(f"no message {message['message_id']} of the bot's in chat {chat['id']}")
        shown = [b.get("callback_data") for row in self.buttons(held) for b in row]
        if data not in shown:
            raise ValueError(f"message {message['message_id']} has no button {data!r} now; it has {shown}")
        query_message = {k: v for k, v in held.items() if k != "reply_to_message"}
        replied = held.get("reply_to_message") or {}
        if (original := self.messages.get((chat["id"], replied.get("message_id")))) is not None:
            query_message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        query = {
            "id": str(next(self._callback_ids)),
            "from": sender or self.user,
            "message": query_message,
            "chat_instance": str(-(abs(chat["id"]) * 7919 % 10**18)),
            "data": data,
        }
        self.callbacks[query["id"]] = Pressed(query)
        self.push_update({"callback_query": query})
        return query

    def delete_message(self, message: dict[str, Any]) -> None:
        """Its sender deletes `message`: the bot can no longer see it, nor a press bring it."""
        self.messages.pop((message["chat"]["id"], message["message_id"]), None)

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (its update_id is added) for the bot's next getUpdates."""
        update = {"update_id": next(self._update_ids), **update}
        if isinstance(message := update.get("message"), dict) and "chat" in message and "message_id" in message:
            self.messages[(message["chat"]["id"], message["message_id"])] = message
        self.pushed.append(update)
        self.updates.append(update)
        self._wake()
        return update

    def push_private_photo(self, data: bytes, caption: str | None = None, **fields: Any) -> dict[str, Any]:
        """A photo sent to the bot in a private chat."""
        return self.push_photo(data, self.private_chat, caption, **fields)

    def push_group_photo(self, data: bytes, caption: str | None = None, **fields: Any) -> dict[str, Any]:
        """A photo posted in the group; mention the bot in `caption` (e.g. "@doppel_test_bot") to address it."""
        return self.push_photo(data, self.group_chat, caption, **fields)

    def push_photo(
        self,
        data: bytes,
        chat: dict | None = None,
        caption: str | None = None,
        width: int = 1280,
        height: int = 853,
        small: bytes | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A compressed photo (several sizes) in `chat`."""
        fields["photo"] = self.photo_sizes(data, width, height, small)
        return self.push_message(chat, **_with_caption(caption, fields))

    def push_document(
        self,
        data: bytes,
        file_name: str = "photo.jpg",
        mime_type: str | None = "image/jpeg",
        file_size: int | None = None,
        chat: dict | None = None,
        caption: str | None = None,
        sender: dict | None = None,
    ) -> dict[str, Any]:
        """A file sent uncompressed; `file_size` may announce more than `data` holds."""
        suffix = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.add_file(data, suffix, "documents", file_size)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "file_size": stored.file_size,
        }
        if mime_type is not None:
            document["mime_type"] = mime_type
        return self.push_message(chat, sender, **_with_caption(caption, {"document": document}))

    def push_text(self, text: str, chat: dict | None = None, reply_to: dict | None = None, **fields: Any) -> dict:
        """A text message, with its entities; `reply_to` is an earlier message it replies to."""
        fields["text"] = text
        if entities := entities_of(text):
            fields["entities"] = entities
        if reply_to is not None:
            # Telegram nests the replied-to message once, without its own reply.
            fields["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
        return self.push_message(chat, **fields)

    def push_command(
        self, command: str, chat: dict | None = None, reply_to: dict | None = None, sender: dict | None = None
    ) -> dict[str, Any]:
        """A command such as "/start" or "/whois@doppel_test_bot", sent by `sender` (by default `user`)."""
        return self.push_text(command, chat, reply_to, sender=sender)

    def push_reply(self, to: dict[str, Any], text: str, sender: dict | None = None) -> dict[str, Any]:
        """A text reply to the message `to`, in that message's chat (e.g. "@doppel_test_bot" or "/whois"), sent by
        `sender` (by default `user`)."""
        return self.push_text(text, to["chat"], reply_to=to, sender=sender)

    def push_media_group(self, photos: list[bytes], chat: dict | None = None, caption: str | None = None) -> list[dict]:
        """An album: one message per photo, sharing a media_group_id; the caption rides on the first."""
        group = str(next(self._media_groups))
        return [
            self.push_photo(data, chat, caption if i == 0 else None, media_group_id=group)
            for i, data in enumerate(photos)
        ]

    # -- the HTTP side -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params, files = await _read_params(request)
        call = Call(request.match_info["method"], params, files)
        self._record(call)
        # Fault injection: this one place sees every method before it is done and after.
        key = call.method.lower()
        handler = self._methods.get(key)
        try:
            if (fault := self._take_fault(key, after=False)) is not None:
                call.fault = fault.kind
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
                else:
                    call.error = _fault_description(fault)
                    return _answer_fault(request, fault)
            result = await handler(call) if handler else True
        except BotApiError as e:
            call.error = e.description
            return _error(e.error_code, e.description, e.parameters)
        call.result = result
        if (fault := self._take_fault(key, after=True)) is not None:
            call.fault = f"{fault.kind} after"  # done, but the bot never hears of it
            return _answer_fault(request, fault)
        if key == "getupdates":
            self.delivered += [u["update_id"] for u in result]
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        call = Call(DOWNLOAD, {"file_path": path})
        self._record(call)
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if stored is None:
            call.error = "Not Found"
            return web.Response(status=404, text="Not Found")
        if self.download_delay:
            await asyncio.sleep(self.download_delay)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- methods -----------------------------------------------------------------------------

    async def _get_me(self, call: Call) -> dict[str, Any]:
        return self.bot_user

    async def _delete_webhook(self, call: Call) -> bool:
        self.webhook = None
        self._drop_pending(call)
        return True

    async def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url") or ""
        if not url:  # as the Bot API: setWebhook with an empty url removes the webhook
            return await self._delete_webhook(call)
        if not url.startswith(("https://", "http://")):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = call.params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise BotApiError(400, "Bad Request: bad webhook: secret token contains unallowed characters")
        connections = int(call.params.get("max_connections") or 40)
        if not 1 <= connections <= 100:
            raise BotApiError(400, "Bad Request: bad webhook: max_connections must be between 1 and 100")
        allowed = call.params.get("allowed_updates")
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": json.loads(allowed) if isinstance(allowed, str) else allowed,
            "max_connections": connections,
        }
        self._drop_pending(call)
        return True

    async def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        # The Bot API's WebhookInfo: an empty url while none is set; the secret token is never shown.
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook is not None:
            info.update(url=self.webhook["url"], max_connections=self.webhook["max_connections"])
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _drop_pending(self, call: Call) -> None:
        if call.params.get("drop_pending_updates") in (True, "true", "True", 1, "1"):
            self.updates = []

    async def _send_chat_action(self, call: Call) -> bool:
        self._chat(call.params.get("chat_id"))
        if call.params.get("action") not in _CHAT_ACTIONS:
            raise BotApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _set_my_commands(self, call: Call) -> bool:
        language = _language_code(call)
        commands = call.params.get("commands", [])  # none given: the menu is emptied, as in the Bot API
        if not isinstance(commands, list):
            raise BotApiError(400, "Bad Request: expected an Array of BotCommand")
        menu = []
        for command in commands:
            if not isinstance(command, dict):
                raise BotApiError(400, "Bad Request: can't parse BotCommand: expected an Object")
            for key in ("command", "description"):
                if not isinstance(command.get(key), str):
                    raise BotApiError(400, f"Bad Request: can't parse BotCommand: Can't find field \"{key}\"")
            name = command["command"].strip().removeprefix("/")
            description = command["description"].strip()
            if not name:
                raise BotApiError(400, "Bad Request: command must be non-empty")
            if len(name) > MAX_COMMAND:
                raise BotApiError(400, f"Bad Request: command length must not exceed {MAX_COMMAND}")
            if not description:
                raise BotApiError(400, "Bad Request: command description must be non-empty")
            if len(description) > MAX_COMMAND_DESCRIPTION:
                raise BotApiError(
                    400, f"Bad Request: command description length must not exceed {MAX_COMMAND_DESCRIPTION}"
                )
            if not _COMMAND.fullmatch(name):  # Telegram's servers, past TDLib: "Start", "who-is", "кто"
                raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            menu.append({"command": name, "description": description})
        if len(menu) > MAX_COMMANDS:
            raise BotApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        if menu:
            self.menus[language] = menu
        else:  # an empty list deletes the language's menu: its users see the default one again
            self.menus.pop(language, None)
        return True

    async def _get_my_commands(self, call: Call) -> list[dict[str, Any]]:
        return self.menus.get(_language_code(call), [])

    async def _set_my_description(self, call: Call) -> bool:
        _set_text(call, "description", self.descriptions, MAX_DESCRIPTION)
        return True

    async def _get_my_description(self, call: Call) -> dict[str, str]:
        return {"description": self.descriptions.get(_language_code(call), "")}

    async def _set_my_short_description(self, call: Call) -> bool:
        _set_text(call, "short_description", self.short_descriptions, MAX_SHORT_DESCRIPTION)
        return True

    async def _get_my_short_description(self, call: Call) -> dict[str, str]:
        return {"short_description": self.short_descriptions.get(_language_code(call), "")}

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        if self.webhook is not None:  # as the Bot API refuses polling while a webhook is set
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook")
        offset = int(call.params.get("offset") or 0)
        if (allowed := call.params.get("allowed_updates")) is not None:  # kept for later calls, as in the Bot API
            self.allowed_updates = list(allowed)
        # As in the Bot API, asking from `offset` confirms (forgets) every update before it.
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + min(float(call.params.get("timeout") or 0), _MAX_POLL)
        while not self._keep_allowed() and not self._closing and (remaining := deadline - time.monotonic()) > 0:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
        limit = int(call.params.get("limit") or 100)
        return self.updates[:limit]

    def _keep_allowed(self) -> list[dict[str, Any]]:
        """The updates waiting, less those of a kind the bot did not ask for (Telegram never sends those)."""
        allowed = self.allowed_updates

        def wanted(update: dict[str, Any]) -> bool:
            kind = next(k for k in update if k != "update_id")
            return kind in allowed if allowed else kind not in _NOT_BY_DEFAULT

        self.updates = [u for u in self.updates if wanted(u)]
        return self.updates

    async def _get_file(self, call: Call) -> dict[str, Any]:
        stored = self.files.get(str(call.params.get("file_id")))
        if stored is None:
            raise BotApiError(400, "Bad Request: invalid file_id")
        if stored.file_size > MAX_DOWNLOAD:
            raise BotApiError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _send_message(self, call: Call) -> dict[str, Any]:
        text = str(call.params.get("text") or "")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise BotApiError(400, "Bad Request: message is too long")
        message = self._bot_message(call)
        message["text"] = text
        return self._keep(message, call)

    async def _send_photo(self, call: Call) -> dict[str, Any]:
        if utf16_len(str(call.params.get("caption") or "")) > MAX_CAPTION:
            raise BotApiError(400, "Bad Request: message caption is too long")
        photo = call.params.get("photo")
        data = call.files.get("photo")
        if data is None and isinstance(photo, str) and photo.startswith("attach://"):
            data = call.files.get(photo.removeprefix("attach://"))
        if data is None:  # a file_id or URL: resend a stored file
            stored = self.files.get(str(photo))
            if stored is None:
                raise BotApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            data = stored.data
        call.files.setdefault("photo", data)
        message = self._bot_message(call)
        message["photo"] = [self._size(self.add_file(data), 1280, 853)]
        if "caption" in call.params:
            message["caption"] = call.params["caption"]
        return self._keep(message, call)

    def _keep(self, message: dict[str, Any], call: Call) -> dict[str, Any]:
        """The bot's new message, with its keyboard, held as Telegram holds it."""
        if keyboard := _inline_keyboard(call.params.get("reply_markup")):
            message["reply_markup"] = {"inline_keyboard": keyboard}
        self.messages[(message["chat"]["id"], message["message_id"])] = message
        return message

    async def _answer_callback_query(self, call: Call) -> bool:
        pressed = self.callbacks.get(str(call.params.get("callback_query_id") or ""))
        if pressed is None or pressed.answered or time.monotonic() - pressed.at > self.callback_answer_s:
            raise BotApiError(400, _QUERY_GONE)
        if utf16_len(str(call.params.get("text") or "")) > MAX_TOAST:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        pressed.answered = True
        return True

    async def _edit_message_reply_markup(self, call: Call) -> dict[str, Any]:
        if "inline_message_id" in call.params:  # no inline mode here: no message was sent so
            raise BotApiError(400, "Bad Request: message to edit not found")
        chat = self._chat(call.params.get("chat_id"))
        try:
            held = self.messages.get((chat["id"], int(call.params.get("message_id"))))
        except (TypeError, ValueError):
            raise BotApiError(400, "Bad Request: message identifier is not specified") from None
        if held is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        if held["from"]["id"] != self.bot_user["id"]:
            raise BotApiError(400, "Bad Request: message can't be edited")
        keyboard = _inline_keyboard(call.params.get("reply_markup"))
        if keyboard == held.get("reply_markup", {}).get("inline_keyboard", []):
            raise BotApiError(400, NOT_MODIFIED)
        if keyboard:
            held["reply_markup"] = {"inline_keyboard": keyboard}
        else:  # none, or an empty one: the keyboard is removed
            held.pop("reply_markup", None)
        held["edit_date"] = int(time.time())
        return held

    def _bot_message(self, call: Call) -> dict[str, Any]:
        chat = self._chat(call.params.get("chat_id"))
        _inline_keyboard(call.params.get("reply_markup"))  # refused before a message is made, as in the Bot API
        message = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        if (reply_to := call.reply_to) is not None:
            # The message replied to, one level deep; one the fake never saw (an update a test made up) is
            # stood in for by its id.
            original = self.messages.get((chat["id"], reply_to)) or {"message_id": reply_to, "chat": chat}
            message["reply_to_message"] = {"date": int(time.time()), **original}
            message["reply_to_message"].pop("reply_to_message", None)
        return message

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        try:
            return self.chats[int(chat_id)]
        except (KeyError, TypeError, ValueError):
            raise BotApiError(400, "Bad Request: chat not found") from None

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    @staticmethod
    def _size(stored: StoredFile, width: int, height: int) -> dict[str, Any]:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "width": width,
            "height": height,
        }


def _language_code(call: Call) -> str:
    """The call's `language_code`, checked as TDLib checks it (two lowercase letters); "" for none (the default)."""
    code = call.params.get("language_code") or ""
    if code and not (isinstance(code, str) and _LANGUAGE_CODE.fullmatch(code)):
        raise BotApiError(400, "Bad Request: invalid language code specified")
    return code


def _set_text(call: Call, name: str, held: dict[str, str], limit: int) -> None:
    """setMyDescription and setMyShortDescription: `name` for the call's language, at most `limit` characters; an
    empty one removes the language's own (its users see the default again)."""
    language = _language_code(call)
    text = call.params.get(name) or ""
    if not isinstance(text, str):
        raise BotApiError(400, f'Bad Request: parameter "{name}" must be of type String')
    if len(text) > limit:
        raise BotApiError(400, f"Bad Request: {name.replace('_', ' ')} is too long (at most {limit} characters)")
    if text:
        held[language] = text
    else:
        held.pop(language, None)


def _inline_keyboard(markup: Any) -> list[list[dict[str, Any]]]:
    """The inline keyboard of a `reply_markup`, checked as the Bot API checks it; [] for none."""
    if markup is None or (isinstance(markup, dict) and "inline_keyboard" not in markup):
        return []  # none, or a reply keyboard (this fake keeps only inline keyboards)
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BotApiError(400, f"{_BAD_BUTTON}InlineKeyboardButton must be an Object")
    buttons = [button for row in rows for button in row]
    if len(buttons) > MAX_BUTTONS:
        raise BotApiError(400, "Bad Request: reply markup is too long")
    for button in buttons:
        if not isinstance(button, dict):
            raise BotApiError(400, f"{_BAD_BUTTON}InlineKeyboardButton must be an Object")
        if not str(button.get("text") or "").strip():
            raise BotApiError(400, "Bad Request: BUTTON_TEXT_INVALID")
        data = button.get("callback_data")
        if not button.keys() & _BUTTON_ACTIONS:
            raise BotApiError(400, f"{_BAD_BUTTON}Text buttons are unallowed in the inline keyboard")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
            raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return [[dict(button) for button in row] for row in rows if row]


def _with_caption(caption: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    if caption is not None:
        fields["caption"] = caption
        if entities := entities_of(caption):
            fields["caption_entities"] = entities
    return fields


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def _flood_error(retry_after: int) -> BotApiError:
    return BotApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def _fault_description(fault: Fault) -> str:
    if fault.error is not None:
        return fault.error.description
    return {"bad_gateway": "502 Bad Gateway", "drop": "connection dropped"}[fault.kind]


def _answer_fault(request: web.Request, fault: Fault) -> web.Response:
    """The response a fault gives: a Bot API error, a proxy's HTML 502, or none at all (a dropped connection)."""
    if fault.error is not None:
        return _error(fault.error.error_code, fault.error.description, fault.error.parameters)
    if fault.kind == "bad_gateway":
        return web.Response(status=502, text=_BAD_GATEWAY_PAGE, content_type="text/html")
    # A closed transport sends nothing: the client reads "server disconnected" (aiohttp skips the response).
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=499)


def _decode(name: str, value: str) -> Any:
    if name in _TEXT_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Query, form, multipart or JSON parameters, decoded; uploaded files separately."""
    params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.filename is not None:
                files[part.name] = bytes(await part.read())
            else:
                params[part.name] = _decode(part.name, await part.text())
    elif request.can_read_body:
        form = await request.post()
        params.update({k: _decode(k, v) for k, v in form.items() if isinstance(v, str)})
    return params, files
