"""What a Discord user sees, through the real `python -m bot` process and a fake Discord (REST and gateway)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core import COMMAND_DESCRIPTIONS, ChatCore, RateLimiter
from bot.discord_i18n import WHO_IS_THIS
from bot.i18n import Texts, texts_for
from testkit.e2e import DISCORD_TOKEN, LiveBot, discord_replies_to, model_folder
from testkit.fake_discord import EPHEMERAL, RestCall
from testkit.imagery import jpeg, scene
from testkit.redis_server import RedisServer

EILEEN = re.compile(r"Eileen, (9\d|100)% sure")
TWIN = re.compile(r"Twin, (9\d|100)% sure")
# The Discord locales of each language of ours.
OURS = {"es-ES": "es", "es-419": "es", "pt-BR": "pt_BR", "ru": "ru", "de": "de", "fr": "fr"}


def sure_of(name: str, tr: Texts) -> re.Pattern[str]:
    """The answer about one face of `name`'s, 90% sure or more, as `tr`'s catalog words it ("97 %" in German)."""
    line = tr.gettext("{name}, {confidence} sure", name=name, confidence="\0")
    line = line[:1].upper() + line[1:]  # as a reply of its own begins
    return re.compile(re.escape(line).replace("\x00", r"(9\d|100)\W?%"))


@pytest.fixture(scope="module")
def live(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    """The bot with Discord only; a one-second heartbeat, so the module sees many beats and ACKs."""
    folder = tmp_path_factory.mktemp("e2e_discord")
    with LiveBot(model_folder(exported, folder / "model"), folder, telegram=False, heartbeat_interval_ms=1000) as bot:
        yield bot
        # The connection stayed up all along: beats were answered, so the bot never had to reconnect.
        ops = bot.call(lambda: bot.discord.gateway_ops)
        assert ops.count("IDENTIFY") == 1 and "RESUME" not in ops, ops
        assert ops.count("HEARTBEAT") >= 2, ops
    assert DISCORD_TOKEN not in bot.log, "the bot logged its token"
    assert bot.log_lines(" WARNING | ERROR ") == [], "a healthy run logged warnings or errors"


def reply(live: LiveBot, message: dict) -> RestCall:
    """The one reply to `message`; fails if there are two."""
    fake = live.discord
    live.run(live.eventually(lambda: bool(discord_replies_to(fake, message)), what="a reply"))
    replies = live.call(lambda: discord_replies_to(fake, message))
    assert len(replies) == 1, [r.content for r in replies]
    return replies[0]


def test_a_mention_with_a_photo_gets_one_reply_naming_the_right_person(live: LiveBot) -> None:
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1, twins=(True,))), "her.jpg"))
    message = live.run(fake.send_message(fake.user("ana"), "who is this?", attachments=[photo]))
    answer = reply(live, message)
    assert TWIN.fullmatch(answer.content), answer.content
    # The channel showed "doppelbot is typing..." before the answer.
    typing = live.call(lambda: fake.calls_where(lambda c: c.path == f"/api/v10/channels/{fake.channel_id}/typing"))
    assert typing and live.call(lambda: fake.calls.index(typing[0]) < fake.calls.index(answer))


def test_a_mention_replying_to_a_photo_answers_about_that_photo(live: LiveBot) -> None:
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    posted = live.run(fake.send_message(fake.user("ben"), "look at her", mention_bot=False, attachments=[photo]))
    question = live.run(fake.send_message(fake.user("cat"), "who is that?", reply_to=posted))
    answer = reply(live, question)
    assert EILEEN.fullmatch(answer.content), answer.content
    assert live.call(lambda: discord_replies_to(fake, posted)) == []
    assert len(live.call(lambda: fake.downloads(photo))) == 1


def test_the_whois_slash_command_thinks_then_answers(live: LiveBot) -> None:
    fake = live.discord
    # Synced at start, with the users' rights beside it.
    commands = live.call(lambda: fake.commands)
    assert [c["name"] for c in commands] == ["whois", "privacy", "forget", "Who is this?"]
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    interaction = live.run(fake.slash_command(fake.user("dan"), "whois", {"photo": photo}))
    followup_path = f"/api/v10/webhooks/{fake.application_id}/{interaction['token']}"
    callback_path = f"/api/v10/interactions/{interaction['id']}/{interaction['token']}/callback"
    live.run(live.eventually(lambda: bool(fake.calls_where(lambda c: c.path == followup_path)), what="the followup"))
    [callback] = live.call(lambda: fake.calls_where(lambda c: c.path == callback_path))
    [followup] = live.call(lambda: fake.calls_where(lambda c: c.path == followup_path))
    assert callback.json["type"] == 5, "the bot should show it is thinking first"
    assert EILEEN.fullmatch(followup.content), followup.content


def test_a_message_without_a_mention_gets_no_reply(live: LiveBot) -> None:
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    chatter = live.run(fake.send_message(fake.user("eva"), "nice photo", mention_bot=False, attachments=[photo]))
    # Gateway events are handled in order: once a later mention is answered, the earlier message was passed over.
    later = live.run(
        fake.send_message(fake.user("eva"), attachments=[live.call(lambda: fake.attachment(jpeg(scene(1))))])
    )
    assert EILEEN.fullmatch(reply(live, later).content)
    live.run(live.quiet())
    assert live.call(lambda: discord_replies_to(fake, chatter)) == []
    assert live.call(lambda: fake.downloads(photo)) == []


def test_two_processes_split_the_shards_and_each_message_is_answered_once(exported: Path, tmp_path: Path) -> None:
    """DISCORD_SHARD_COUNT=2 in both, DISCORD_SHARD_IDS=0 in one and 1 in the other, started at the same moment
    and sharing Redis: they take turns to IDENTIFY (Discord refuses a second one within 5 s); a mention in the
    server on shard 1 is answered once, by the second process; the server on shard 0 and direct messages by the
    first."""
    model = model_folder(exported, tmp_path / "model")
    with RedisServer() as redis:
        env = {"DISCORD_SHARD_COUNT": "2", "REDIS_URL": redis.url}
        first = LiveBot(model, tmp_path / "s0", telegram=False, env={**env, "DISCORD_SHARD_IDS": "0"}, guilds=2)
        second = LiveBot(model, tmp_path / "s1", telegram=False, env={**env, "DISCORD_SHARD_IDS": "1"})
        try:
            first.start(wait=False)
            second.start_beside(first, wait=False)
            first.wait_up()
            second.wait_up()
            fake = first.discord
            assert sorted(first.call(lambda: fake.identified_shards)) == [[0, 2], [1, 2]]

            async def ask(**where) -> dict:
                return await fake.send_message(
                    fake.user(), "who?", attachments=[fake.attachment(jpeg(scene(1)))], **where
                )

            on_shard_1, on_shard_0, direct = first.run(ask(guild=1)), first.run(ask(guild=0)), first.run(ask(dm=True))
            answers = [reply(first, message) for message in (on_shard_1, on_shard_0, direct)]
            first.run(first.quiet())
            assert [
                len(first.call(lambda m=m: discord_replies_to(fake, m))) for m in (on_shard_1, on_shard_0, direct)
            ] == [1, 1, 1]
            assert all(EILEEN.fullmatch(answer.content) for answer in answers), [a.content for a in answers]
            # Each process answered the messages of its own shard only (one log line per photo answered).
            assert [len(bot.log_lines(r"request adapter=discord")) for bot in (first, second)] == [2, 1]
            assert len(second.log_lines(r"request adapter=discord chat=guild")) == 1
            assert "Discord shards [0] of 2" in first.log and "Discord shards [1] of 2" in second.log
            assert first.call(lambda: fake.identifies_too_early) == []
        finally:
            second.stop_beside()
            first.close()


def test_with_redis_out_of_reach_one_processs_shards_still_take_their_identify_turns(
    exported: Path, tmp_path: Path
) -> None:
    """The shared gate cannot be reached, so the process's own memory keeps the turns: back to back, Discord would
    answer the second shard's IDENTIFY "invalid session"."""
    from testkit.processes import free_port

    env = {"DISCORD_SHARD_COUNT": "2", "REDIS_URL": f"redis://127.0.0.1:{free_port()}", "FACE_WORKERS": "0"}
    with LiveBot(model_folder(exported, tmp_path / "model"), tmp_path, telegram=False, env=env, guilds=2) as live:
        fake = live.discord
        assert sorted(live.call(lambda: fake.identified_shards)) == [[0, 2], [1, 2]]
        assert live.call(lambda: fake.identifies_too_early) == []
        assert live.log_lines("rate limits counted in this process")


def interaction_calls(live: LiveBot, interaction: dict) -> list[RestCall]:
    """The bot's answers to `interaction`, once one of them is a message (its followup, or a message callback)."""
    fake = live.discord

    def said() -> bool:
        calls = fake.responses(interaction)
        return any(c.status == 200 and (c.method == "POST" and not c.path.endswith("/callback")) for c in calls) or any(
            c.path.endswith("/callback") and c.json["type"] == 4 for c in calls
        )

    live.run(live.eventually(said, what="an answer to the interaction"))
    live.run(live.quiet(0.5))
    return live.call(lambda: fake.responses(interaction))


def test_a_german_user_gets_german_and_the_commands_speak_every_language(live: LiveBot) -> None:
    """/whois from a Discord in German: "thinking...", then the answer in German; a PDF is refused in German, to
    the user alone. The commands were published with their descriptions in each of our languages, as the catalogs
    word them, and Discord took them. Awaits the German catalog: its refusal is not the English."""
    fake, de = live.discord, texts_for("de")
    assert live.call(lambda: fake.refused_syncs) == []
    [whois] = [c for c in live.call(lambda: fake.commands) if c["name"] == "whois"]
    english = COMMAND_DESCRIPTIONS["whois"]
    for locale, code in OURS.items():
        assert whois["description_localizations"].get(locale, english) == texts_for(code).gettext(english), locale

    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    interaction = live.run(fake.slash_command(fake.user("greta"), "whois", {"photo": photo}, locale="de"))
    calls = interaction_calls(live, interaction)
    assert calls[0].path.endswith("/callback") and calls[0].json["type"] == 5
    [answer] = [c for c in calls if c.method == "POST" and not c.path.endswith("/callback")]
    assert sure_of("Eileen", de).fullmatch(answer.content), answer.content

    pdf = live.call(lambda: fake.attachment(b"%PDF-1.7 minutes", "notes.pdf", "application/pdf"))
    refused = live.run(fake.slash_command(fake.user("greta"), "whois", {"photo": pdf}, locale="de"))
    [callback] = interaction_calls(live, refused)
    refusal = ChatCore(None, RateLimiter(1)).not_an_image
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == refusal(de).text
    assert refusal(de).text != refusal(texts_for("en")).text, "awaits the German catalog"


def test_a_mention_in_a_french_server_is_answered_in_french(live: LiveBot) -> None:
    fake = live.discord
    live.run(fake.set_preferred_locale("fr"))
    try:
        photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
        message = live.run(fake.send_message(fake.user("amélie"), "qui est-ce ?", attachments=[photo]))
        answer = reply(live, message)
        assert sure_of("Eileen", texts_for("fr")).fullmatch(answer.content), answer.content
    finally:
        live.run(fake.set_preferred_locale("en-US"))


def test_who_is_this_answers_a_photo_already_posted(live: LiveBot) -> None:
    """Apps > "Who is this?" on a photo posted without a mention, by a user whose Discord is in Portuguese."""
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    posted = live.run(fake.send_message(fake.user("ana"), "olha ela", mention_bot=False, attachments=[photo]))
    interaction = live.run(fake.message_command(fake.user("bia"), WHO_IS_THIS, posted, locale="pt-BR"))
    calls = interaction_calls(live, interaction)
    assert calls[0].path.endswith("/callback") and calls[0].json["type"] == 5
    [answer] = [c for c in calls if c.method == "POST" and not c.path.endswith("/callback")]
    assert sure_of("Eileen", texts_for("pt_BR")).fullmatch(answer.content), answer.content
    assert not answer.response["flags"] & EPHEMERAL  # for the channel to see
    assert live.call(lambda: discord_replies_to(fake, posted)) == []  # answered once, through the interaction
