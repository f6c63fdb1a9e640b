"""The real `python -m bot` process when the network misbehaves: flood control, 502s, dropped connections,
a gateway disconnect, and SIGTERM in the middle of a burst. What users see must stay the same: every
question answered exactly once, with the right name.

The tests share one bot process, in file order: the last one stops it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.e2e import DISCORD_TOKEN, LiveBot, discord_replies_to, model_folder, telegram_replies_to, telegram_text
from testkit.fake_telegram import DOWNLOAD, FakeTelegram
from testkit.imagery import jpeg, scene

EILEEN = re.compile(r"Eileen, (9\d|100)% sure")
TWIN = re.compile(r"Twin, (9\d|100)% sure")


@pytest.fixture(scope="module")
def live(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    """Both adapters in one process, default settings."""
    folder = tmp_path_factory.mktemp("e2e_faults")
    with LiveBot(model_folder(exported, folder / "model"), folder) as bot:
        yield bot
    assert DISCORD_TOKEN not in bot.log and FakeTelegram().token not in bot.log, "the bot logged a token"


def photos_from_new_users(live: LiveBot, n: int, prefix: str) -> list[tuple[dict, bool]]:
    """`n` users each send one photo in their private chat (alternately of Eileen and of her twin)."""
    fake = live.telegram
    sent = []
    for i in range(n):
        twin = i % 2 == 1
        user, chat = live.call(lambda i=i: fake.new_user(f"{prefix}{i}"))
        data = jpeg(scene(1, twins=(twin,)))
        sent.append((live.call(lambda data=data, chat=chat, user=user: fake.push_photo(data, chat, sender=user)), twin))
    return sent


def assert_each_answered_once_by_name(live: LiveBot, sent: list[tuple[dict, bool]]) -> None:
    fake = live.telegram
    live.run(live.eventually(lambda: all(telegram_replies_to(fake, m) for m, _ in sent), what="a reply to each"))
    live.run(live.quiet())
    for message, twin in sent:
        replies = live.call(lambda message=message: [telegram_text(c) for c in telegram_replies_to(fake, message)])
        assert len(replies) == 1, f"message {message['message_id']}: {replies}"
        assert (TWIN if twin else EILEEN).fullmatch(replies[0]), replies


def test_flood_control_on_send_message_then_the_reply_arrives_exactly_once(live: LiveBot) -> None:
    fake = live.telegram
    live.call(lambda: fake.flood_next("sendMessage", retry_after=2))
    [(message, twin)] = photos_from_new_users(live, 1, "flood")
    assert_each_answered_once_by_name(live, [(message, twin)])
    attempts = live.call(
        lambda: [c for c in fake.called("sendMessage") if c.params["chat_id"] == message["chat"]["id"]]
    )
    # One refused with 429, then one delivered: the bot waited as told instead of hammering the API.
    assert [c.error is None for c in attempts] == [False, True], [c.error for c in attempts]
    assert attempts[0].error.startswith("Too Many Requests: retry after")


def test_a_burst_of_502s_from_get_updates_loses_and_repeats_nothing(live: LiveBot) -> None:
    fake = live.telegram
    # The proxy fails after the Bot API answered: the updates were fetched but never reached the bot, so
    # they stay unconfirmed and must be fetched again once the proxy recovers.
    live.call(lambda: fake.bad_gateway_next("getUpdates", times=3, after=True))
    sent = photos_from_new_users(live, 4, "gateway")
    assert_each_answered_once_by_name(live, sent)
    faults = live.call(lambda: [c.fault for c in fake.called("getUpdates") if c.fault])
    assert faults == ["bad_gateway after"] * 3
    # Each update reached the bot in exactly one getUpdates answer, and each photo was fetched once.
    ids = [live.call(lambda m=m: fake.update_id_of(m)) for m, _ in sent]
    delivered = live.call(lambda: list(fake.delivered))
    assert [delivered.count(i) for i in ids] == [1] * len(sent), (ids, delivered)
    paths = [live.call(lambda m=m: fake.files[m["photo"][-1]["file_id"]].file_path) for m, _ in sent]
    downloads = live.call(lambda: fake.downloads)
    assert [downloads.count(p) for p in paths] == [1] * len(sent)


def test_dropped_connections_and_slow_answers_are_ridden_out(live: LiveBot) -> None:
    fake = live.telegram

    def arm() -> None:
        fake.drop_next("getUpdates", after=True)  # the long poll's answer is lost with its connection
        fake.drop_next("getFile")  # refused outright: the bot tells the user to send it again
        fake.slow_next(DOWNLOAD, 2.0)  # within the bot's download timeout: it just takes longer

    live.call(arm)
    sent = photos_from_new_users(live, 2, "drop")
    live.run(live.eventually(lambda: all(telegram_replies_to(fake, m) for m, _ in sent), what="a reply to each"))
    live.run(live.quiet())
    texts = sorted(telegram_text(c) for m, _ in sent for c in live.call(lambda m=m: telegram_replies_to(fake, m)))
    assert len(texts) == 2, texts
    assert "I couldn't download that file; please send it again." in texts
    assert any(EILEEN.fullmatch(t) or TWIN.fullmatch(t) for t in texts), texts
    assert live.call(lambda: [c.fault for c in fake.called("getUpdates") if c.fault]).count("drop after") == 1


def test_a_gateway_disconnect_is_resumed_and_missed_mentions_are_answered(live: LiveBot) -> None:
    fake = live.discord
    identifies = live.call(lambda: len(fake.identifies))
    missed = live.call(
        lambda: fake.compose_message(fake.user("fay"), attachments=[fake.attachment(jpeg(scene(1, twins=(True,))))])
    )
    live.run(fake.disconnect(missed=[("MESSAGE_CREATE", missed)]))
    live.run(live.eventually(lambda: bool(fake.resumes), what="a RESUME"))
    [resume] = live.call(lambda: fake.resumes)
    session = live.call(lambda: fake.sessions[-1])
    assert resume["session_id"] == session.session_id and resume["token"] == DISCORD_TOKEN
    assert live.call(lambda: fake.connections[-1].path) == "/resume-gateway"
    answer = _one_discord_reply(live, missed)
    assert TWIN.fullmatch(answer), answer
    assert live.call(lambda: len(session.replayed)) == 1, "the missed message should come by replay"
    # And the bot goes on answering on the resumed connection, in the same session.
    after = live.run(
        fake.send_message(fake.user("gil"), attachments=[live.call(lambda: fake.attachment(jpeg(scene(1))))])
    )
    assert EILEEN.fullmatch(_one_discord_reply(live, after))
    assert live.call(lambda: len(fake.identifies)) == identifies, "the bot identified again instead of resuming"


def _one_discord_reply(live: LiveBot, message: dict) -> str:
    fake = live.discord
    live.run(live.eventually(lambda: bool(discord_replies_to(fake, message)), what="a Discord reply"))
    live.run(live.quiet(0.5))
    replies = live.call(lambda: discord_replies_to(fake, message))
    assert len(replies) == 1, [r.content for r in replies]
    return replies[0].content


def test_sigterm_during_a_burst_delivers_the_replies_in_progress_and_exits_0(live: LiveBot) -> None:
    telegram, discord = live.telegram, live.discord

    def slow_networks() -> None:
        telegram.download_delay = 1.5
        discord.cdn_delay = 1.5

    live.call(slow_networks)
    sent = photos_from_new_users(live, 6, "burst")
    mentions = [
        live.run(
            discord.send_message(
                discord.user(f"user{i}"), attachments=[live.call(lambda: discord.attachment(jpeg(scene(1))))]
            )
        )
        for i in range(2)
    ]
    # Every photo is being downloaded (the bot has taken them all) when the signal comes.
    paths = [live.call(lambda m=m: telegram.files[m["photo"][-1]["file_id"]].file_path) for m, _ in sent]
    live.run(
        live.eventually(
            lambda: (
                set(paths) <= set(telegram.downloads) and all(discord.downloads(m["attachments"][0]) for m in mentions)
            ),
            what="every download to start",
        )
    )
    code = live.run(live.stop_and_wait())
    assert code == 0, live.log[-3000:]
    for message, twin in sent:
        replies = live.call(lambda message=message: [telegram_text(c) for c in telegram_replies_to(telegram, message)])
        assert len(replies) == 1 and (TWIN if twin else EILEEN).fullmatch(replies[0]), replies
    for message in mentions:
        replies = live.call(lambda message=message: [r.content for r in discord_replies_to(discord, message)])
        assert len(replies) == 1 and EILEEN.fullmatch(replies[0]), replies
    assert live.log.rstrip().endswith("doppelbot: stopped"), live.log[-2000:]
