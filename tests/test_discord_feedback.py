"""Users' feedback on Discord, through the real `python -m bot` and a fake Discord: the buttons under answers,
presses by several users, `/whois`'s buttons, `/privacy` and `/forget`, a press after a restart, FEEDBACK=off, and
the Why? button's evidence (a picture and a line, for the presser alone).

One bot process serves the module (restarted twice by the last tests, as few starts as the behaviour needs);
what a press kept is read back from the bot's SQLite database with `feedback.store.FeedbackStore`. Where a
crowd's answer is needed (no test photo has a dozen faces), the adapter runs in this process on `CrowdWorker`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.core import ChatCore, RateLimiter
from bot.discord_adapter import build_client, run_discord
from bot.feedback import MAX_FEEDBACK_FACES, WHY, Feedback
from feedback.keys import feedback_key
from feedback.store import NEITHER, FeedbackStore, ReviewItem
from testkit.crowd import FOLDER_NAMES, CrowdWorker
from testkit.e2e import DISCORD_TOKEN, LiveBot, discord_replies_to, model_folder
from testkit.fake_discord import EPHEMERAL, MAX_ROW_BUTTONS, MAX_ROWS, FakeDiscord, RestCall, buttons
from testkit.imagery import jpeg, scene

THANKS = "Thanks: sent for review"
CHOICES = ["✓ Eileen", "Twin", "Neither of them"]  # what the session's model says of scene(1)'s one face
LINE = re.compile(r"Closer to Eileen's photos \(0\.\d\d\) than to Twin's \(0\.\d\d\)\.")


@pytest.fixture(scope="module")
def live(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    """The bot with Discord only and its feedback database in the test's folder.

    A one-second heartbeat: discord.py warns of a heartbeat "behind" when the fake's instant ACK beats its own
    bookkeeping, and the lag it then reports is one interval (under its 10 s threshold at 1 s).
    """
    folder = tmp_path_factory.mktemp("discord_feedback")
    env = {"FEEDBACK_DB": f"sqlite:///{folder / 'feedback.sqlite3'}"}
    model = model_folder(exported, folder / "model")
    with LiveBot(model, folder, telegram=False, env=env, heartbeat_interval_ms=1000) as bot:
        yield bot
    assert DISCORD_TOKEN not in bot.log, "the bot logged its token"
    assert bot.log_lines(" WARNING | ERROR ") == [], "a healthy run logged warnings or errors"


def items(live: LiveBot) -> list[ReviewItem]:
    """Every face the bot's database holds, as the owner's review lists them."""
    url = live.extra_env["FEEDBACK_DB"]
    store = FeedbackStore(url, feedback_key(None, url))
    try:
        return store.items(status=None)
    finally:
        store.close()


def labels(live: LiveBot, message: dict[str, Any]) -> list[list[str]]:
    """The labels of `message`'s buttons as the channel shows them now, row by row."""
    return live.call(lambda: [[b["label"] for b in row] for row in buttons(live.discord.messages[int(message["id"])])])


def answer_to(live: LiveBot, message: dict[str, Any]) -> dict[str, Any]:
    """The bot's one message answering `message` (as Discord returned it)."""
    fake = live.discord
    live.run(live.eventually(lambda: bool(discord_replies_to(fake, message)), what="an answer"))
    [answer] = live.call(lambda: discord_replies_to(fake, message))
    return answer.response


def ask(live: LiveBot, user: dict[str, Any], **where: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """`user` mentions the bot with a photo of one face; the photo's attachment and the bot's answer."""
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    message = live.run(fake.send_message(user, "who is this?", attachments=[photo], **where))
    return photo, answer_to(live, message)


def press(live: LiveBot, user: dict, message: dict, label: str, says: bool = True) -> list[RestCall]:
    """`user` presses `message`'s button labelled `label...`; every request the bot answered the press with, once
    it has said something to the presser (`says`) or else edited the buttons."""
    fake = live.discord
    interaction = live.run(fake.press(user, message, live.call(lambda: fake.button(message, label))))

    def done() -> bool:
        calls = fake.responses(interaction)
        if not calls or any(c.status is None for c in calls):
            return False
        return bool(said(calls)) if says else any(c.method == "PATCH" or _callback(c) == 7 for c in calls)

    live.run(live.eventually(done, what="the press to be answered"))
    live.run(live.quiet(0.5))  # anything more the bot was going to send about it
    calls = live.call(lambda: fake.responses(interaction))
    assert all(c.status in (200, 204) for c in calls), [(c.path, c.status) for c in calls]
    return calls


def _callback(call: RestCall) -> int | None:
    """The interaction callback type of `call`, None if it is no callback."""
    return call.json.get("type") if call.path.endswith("/callback") and isinstance(call.json, dict) else None


def said(calls: list[RestCall]) -> list[tuple[str, bool]]:
    """The messages the bot wrote in answer to an interaction: (text, whether only the user sees it) each."""
    texts = []
    for call in calls:
        if _callback(call) == 4:  # a message as the answer itself
            body = call.json.get("data") or {}
        elif call.method == "POST" and _callback(call) is None:  # a followup
            body = call.json or {}
        else:
            continue
        texts.append((body.get("content"), bool((body.get("flags") or 0) & EPHEMERAL)))
    return texts


def test_a_mention_is_answered_with_buttons_and_presses_by_two_users_are_kept_once_each(live: LiveBot) -> None:
    fake = live.discord
    photo, answer = ask(live, fake.user("ana"))
    assert labels(live, answer) == [[c] for c in [*CHOICES, WHY]]
    assert len(live.call(lambda: fake.downloads(photo))) == 1  # nothing taken again before a press
    before = len(items(live))

    ben, cat = fake.user("ben"), fake.user("cat")
    assert said(press(live, ben, answer, "Twin")) == [(THANKS, True)]  # for the presser's eyes only
    assert labels(live, answer) == [["✓ Eileen"], ["Twin · 1"], ["Neither of them"], [WHY]]
    # The face was taken again from the photo the answer replied to, once: the next press finds it kept.
    assert len(live.call(lambda: fake.downloads(photo))) == 2
    assert said(press(live, cat, answer, "✓ Eileen")) == [(THANKS, True)]
    assert labels(live, answer) == [["✓ Eileen · 1"], ["Twin · 1"], ["Neither of them"], [WHY]]
    # Ben changes his mind: his second press replaces his first.
    assert said(press(live, ben, answer, "Neither")) == [(THANKS, True)]
    assert labels(live, answer) == [["✓ Eileen · 1"], ["Twin"], ["Neither of them · 1"], [WHY]]
    assert len(live.call(lambda: fake.downloads(photo))) == 2

    [face] = items(live)[before:]
    assert face.votes == {"Eileen": 1, NEITHER: 1}
    assert (face.model_label, face.platform, face.chat_kind, face.status) == ("Eileen", "discord", "guild", "waiting")
    assert face.model == "2025-01-31T12:00:00"  # the model's date, from export.json


def test_whois_answers_with_the_asked_photo_and_its_buttons_pick_a_face_then_vote(live: LiveBot) -> None:
    fake = live.discord
    data = jpeg(scene(2))
    interaction = live.run(fake.slash_command(fake.user("dan"), "whois", {"photo": fake.attachment(data)}))
    path = f"/api/v10/webhooks/{fake.application_id}/{interaction['token']}"
    live.run(live.eventually(lambda: bool(fake.calls_where(lambda c: c.path == path)), what="the answer"))
    [followup] = live.call(lambda: fake.calls_where(lambda c: c.path == path))
    assert followup.content.startswith("I found 2 faces:"), followup.content
    # The channel sees which photo was asked about, beside the boxed one.
    files = {upload.filename: upload.data for upload in followup.files}
    assert sorted(files) == ["asked.jpg", "faces.jpg"] and files["asked.jpg"] == data
    answer = followup.response
    assert labels(live, answer) == [["1", "2"]]
    before = len(items(live))

    eve = fake.user("eve")
    assert said(press(live, eve, answer, "2", says=False)) == []  # picking a face edits the buttons, says nothing
    assert labels(live, answer) == [["✓ Eileen"], ["Twin"], ["Neither of them"], ["« Back (face 2 of 2)", WHY]]
    assert len(items(live)) == before  # nothing kept by looking
    # Taking the face again takes longer than Discord waits for an answer (3 s): the press is acknowledged at
    # once (a deferred update), then the buttons are edited and the presser thanked.
    live.call(lambda: setattr(fake, "cdn_delay", 2.0))
    try:
        calls = press(live, eve, answer, "Neither")
    finally:
        live.call(lambda: setattr(fake, "cdn_delay", 0.0))
    assert [_callback(c) for c in calls if _callback(c)] == [6] and said(calls) == [(THANKS, True)]
    assert labels(live, answer)[2] == ["Neither of them · 1"]
    # The face came from the bot's own answer: the asked photo, downloaded once, for this press.
    [asked] = [a for a in answer["attachments"] if a["filename"] == "asked.jpg"]
    assert len(live.call(lambda: fake.downloads(asked))) == 1
    [face] = items(live)[before:]
    assert face.votes == {NEITHER: 1} and face.chat_kind == "guild"
    # Why? for the face picked: its evidence, taken from the asked photo again, says which face it is about.
    [(line, ephemeral)] = said(press(live, eve, answer, WHY))
    assert ephemeral and line.startswith("Face 2: Closer to Eileen's photos ("), line
    assert len(live.call(lambda: fake.downloads(asked))) == 2
    press(live, eve, answer, "« Back", says=False)
    assert labels(live, answer) == [["1", "2"]]


def test_privacy_says_what_is_kept_and_forget_deletes_exactly_that_users_faces(live: LiveBot) -> None:
    fake = live.discord
    interaction = live.run(fake.slash_command(fake.user("fay"), "privacy"))
    live.run(live.eventually(lambda: bool(fake.responses(interaction)), what="the privacy answer"))
    [callback] = live.call(lambda: fake.responses(interaction))
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & EPHEMERAL
    text = callback.json["data"]["content"]
    assert "never your whole photo" in text and "90 days" in text and "/forget" in text, text

    gus, hal = fake.user("gus"), fake.user("hal")
    _, shared = ask(live, fake.user("ivy"))
    _, private = ask(live, gus, dm=True)  # in a direct message with the bot
    press(live, gus, shared, "Twin")
    press(live, hal, shared, "✓ Eileen")
    press(live, gus, private, "✓ Eileen")
    before = items(live)
    assert [f.chat_kind for f in before[-2:]] == ["guild", "dm"]

    def forget(user: dict[str, Any]) -> list[tuple[str, bool]]:
        interaction = live.run(fake.slash_command(user, "forget"))
        path = f"/api/v10/webhooks/{fake.application_id}/{interaction['token']}"
        live.run(live.eventually(lambda: bool(fake.calls_where(lambda c: c.path == path)), what="the forget answer"))
        [callback] = [c for c in live.call(lambda: fake.responses(interaction)) if c.path.endswith("/callback")]
        assert callback.json["type"] == 5 and callback.json["data"]["flags"] & EPHEMERAL  # thinking, privately
        return said(live.call(lambda: fake.responses(interaction)))

    [(text, ephemeral)] = forget(gus)
    assert ephemeral and text.startswith("Done: I deleted the 2 faces you marked"), text
    after = items(live)
    # The face only Gus marked is gone; the shared one keeps Hal's vote, and nothing else changed.
    assert len(after) == len(before) - 1
    assert after[-1].votes == {"Eileen": 1} and after[:-1] == before[:-2]
    [(text, _)] = forget(gus)
    assert text.startswith("You haven't marked any faces"), text


def uploads(calls: list[RestCall]) -> list[tuple[str, bytes]]:
    """The files the bot sent in answer to an interaction: (name, bytes) each."""
    return [(upload.filename, upload.data) for call in calls for upload in call.files]


def test_why_answers_the_presser_alone_with_the_picture_and_the_line_and_keeps_nothing(live: LiveBot) -> None:
    fake = live.discord
    photo, answer = ask(live, fake.user("quin"))
    before = len(items(live))
    calls = press(live, fake.user("rae"), answer, WHY)
    [(line, ephemeral)] = said(calls)
    assert ephemeral and LINE.fullmatch(line), line  # for the presser's eyes only
    [(name, picture)] = uploads(calls)
    assert name == "why.jpg" and Image.open(io.BytesIO(picture)).format == "JPEG"
    assert labels(live, answer) == [[c] for c in [*CHOICES, WHY]]  # the buttons stay as they were
    assert len(live.call(lambda: fake.downloads(photo))) == 2  # the photo taken again, for the press
    assert len(items(live)) == before  # nothing kept

    # Taking the photo again longer than Discord waits (3 s): "thinking..." first, for the presser alone, then
    # the evidence.
    live.call(lambda: setattr(fake, "cdn_delay", 2.0))
    try:
        calls = press(live, fake.user("rae"), answer, WHY)
    finally:
        live.call(lambda: setattr(fake, "cdn_delay", 0.0))
    [deferred] = [c for c in calls if _callback(c)]
    assert deferred.json["type"] == 5 and deferred.json["data"]["flags"] & EPHEMERAL
    assert [(LINE.fullmatch(text) is not None, ephemeral) for text, ephemeral in said(calls)] == [(True, True)]
    assert [name for name, _ in uploads(calls)] == ["why.jpg"]


def restart(live: LiveBot, **env: str) -> None:
    """Stop the bot (its log clean), and start it again with `env` added, connected anew."""
    fake = live.discord
    live.stop_beside()
    assert live.log_lines(" WARNING | ERROR ") == [], "a healthy run logged warnings or errors"
    identified = live.call(lambda: len(fake.identifies))
    live.extra_env.update(env)
    live.launch(wait=False)
    live.run(live.eventually(lambda: len(fake.identifies) > identified, 120, "the bot to connect again"))


def test_each_answer_to_a_message_with_two_photos_keeps_the_face_of_its_own_photo(live: LiveBot) -> None:
    fake = live.discord
    first, second = live.call(lambda: [fake.attachment(jpeg(scene(1, twins=(twin,)))) for twin in (False, True)])
    message = live.run(fake.send_message(fake.user("oli"), "and these?", attachments=[first, second]))
    live.run(live.eventually(lambda: len(discord_replies_to(fake, message)) == 2, what="two answers"))
    answers = [call.response for call in live.call(lambda: discord_replies_to(fake, message))]
    assert [labels(live, a)[0] for a in answers] == [["✓ Eileen"], ["Eileen"]]  # the second is of the twin
    before = len(items(live))
    assert said(press(live, fake.user("pat"), answers[1], "Eileen")) == [(THANKS, True)]
    assert [len(live.call(lambda a=a: fake.downloads(a))) for a in (first, second)] == [1, 2]
    [face] = items(live)[before:]
    assert face.model_label == "Twin" and face.votes == {"Eileen": 1}


def test_a_press_after_a_restart_is_still_kept(live: LiveBot) -> None:
    """The answer is to a mention replying to a photo: the press takes the face from the photo replied to."""
    fake = live.discord
    photo = live.call(lambda: fake.attachment(jpeg(scene(1))))
    posted = live.run(fake.send_message(fake.user("jan"), "look", mention_bot=False, attachments=[photo]))
    answer = answer_to(live, live.run(fake.send_message(fake.user("kit"), "who is she?", reply_to=posted)))
    before = len(items(live))
    restart(live)
    assert said(press(live, fake.user("kim"), answer, "Twin")) == [(THANKS, True)]
    assert labels(live, answer)[1] == ["Twin · 1"]
    assert len(live.call(lambda: fake.downloads(photo))) == 2
    [face] = items(live)[before:]
    assert face.votes == {"Twin": 1}


def test_with_feedback_off_only_why_is_shown_and_old_votes_are_taken_away(live: LiveBot) -> None:
    fake = live.discord
    _, old = ask(live, fake.user("lee"))
    count = len(items(live))
    restart(live, FEEDBACK="off")
    _, answer = ask(live, fake.user("max"))
    assert labels(live, answer) == [[WHY]] and answer["content"].startswith("Eileen")
    [(line, ephemeral)] = said(press(live, fake.user("max"), answer, WHY))
    assert ephemeral and LINE.fullmatch(line), line
    calls = press(live, fake.user("ned"), old, "Twin")
    assert [(text.startswith("Feedback is off"), ephemeral) for text, ephemeral in said(calls)] == [(True, True)]
    assert labels(live, old) == [[WHY]]
    assert len(items(live)) == count


def crowd_bot(tmp_path: Path, scenario, faces: int = MAX_FEEDBACK_FACES) -> None:
    """`scenario(fake)` with the Discord adapter connected, answering every photo with `faces` faces and feedback on
    (a real SQLite store); the adapter runs in this process."""

    async def examine(data: bytes):
        raise AssertionError("no press is made here")

    async def main() -> None:
        store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", b"k" * 32)
        feedback = Feedback(store, examine, lambda: list(FOLDER_NAMES))
        core = ChatCore(CrowdWorker(faces), RateLimiter(1000), feedback=feedback)
        async with FakeDiscord(token=DISCORD_TOKEN) as fake:
            stop = asyncio.Event()
            client = build_client(core, fake.api_base, fake.gateway_url)
            bot = asyncio.create_task(run_discord(client, DISCORD_TOKEN, stop))
            await fake.wait_ready()
            try:
                await scenario(fake)
            finally:
                stop.set()
                await asyncio.wait_for(bot, 30)
                store.close()

    asyncio.run(main())


async def _answer(fake: FakeDiscord) -> RestCall:
    message = await fake.send_message(fake.user(), attachments=[fake.attachment(jpeg(scene(1)))])
    return await fake.wait_for(lambda c: c.is_message_to(fake.channel_id) and c.reply_to == int(message["id"]))


def test_a_dozen_faces_get_their_numbers_in_rows_discord_draws(tmp_path: Path) -> None:
    """The keyboard's rows of six are laid out again in Discord's rows of five; the fake refuses what Discord
    would."""

    async def scenario(fake: FakeDiscord) -> None:
        answer = await _answer(fake)
        assert answer.status == 200
        rows = [[b["label"] for b in row] for row in buttons(answer.response)]
        assert [n for row in rows for n in row] == [str(n) for n in range(1, MAX_FEEDBACK_FACES + 1)]
        assert len(rows) <= MAX_ROWS and all(len(row) <= MAX_ROW_BUTTONS for row in rows), rows

    crowd_bot(tmp_path, scenario)


def test_buttons_discord_refuses_never_cost_the_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(fake: FakeDiscord) -> None:
        fake.fail_next("create_message", 400)
        answer = await _answer(fake)
        assert answer.status == 400
        again = await fake.wait_for(lambda c: c.is_message_to(fake.channel_id) and c.status == 200)
        assert again.content == answer.content and again.reply_to == answer.reply_to
        assert buttons(again.response) == []

    with caplog.at_level(logging.WARNING, "doppelbot.discord"):
        crowd_bot(tmp_path, scenario, faces=1)
    assert any("refused an answer's buttons" in r.getMessage() for r in caplog.records)
