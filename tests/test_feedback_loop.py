"""The whole loop, as a bot's owner runs it: users press the buttons under the real `python -m bot`'s answers
on (fake) Telegram, the owner reviews with `python -m training review`, `python -m training` retrains on the
approved faces, and the running bot, having reloaded the new model by itself, answers the same photos as
the users said. A face the owner rejected is never trained on.

The photos are of a woman the first model has never seen (a stranger to it); two users say she is the Twin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np

from testkit.e2e import LiveBot, model_folder, telegram_replies_to, telegram_text
from testkit.imagery import jpeg, photo_folder, varied_stranger
from testkit.processes import run_python

PHOTOS = 8  # of the stranger, each marked "Twin" by two users
TWIN_SURE = re.compile(r"^Twin, \d+% sure")


def _answer(live: LiveBot, photo: dict):
    fake = live.telegram
    live.run(live.eventually(lambda: telegram_replies_to(fake, photo), what="the answer to a photo"))
    return live.call(lambda: telegram_replies_to(fake, photo))[-1]


def _press(live: LiveBot, answer, label: str, user: dict) -> None:
    fake, message = live.telegram, answer.result

    def push() -> dict:
        data = [b["callback_data"] for row in fake.buttons(message) for b in row if label in b["text"]]
        return fake.push_callback(message, data[0], user)

    query = live.call(push)
    live.run(live.eventually(lambda: fake.answer_to(query) is not None, what=f"the press on {label!r}"))
    assert live.call(lambda: fake.answer_to(query)).params.get("text") == "Thanks: sent for review"


def _review(root: Path, env: dict[str, str], *args: str) -> str:
    done = run_python("-m", "training", "review", *args, cwd=root, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_users_say_who_it_is_the_owner_approves_and_the_retrained_bot_answers_as_reviewed(
    exported: Path, tmp_path: Path
) -> None:
    photos = photo_folder(tmp_path / "photos", per_class=12, seed=5)
    model = model_folder(exported, tmp_path / "model")
    env = {"FEEDBACK_DB": f"sqlite:///{tmp_path / 'feedback.sqlite3'}", "MODEL_PATH": str(model)}
    bot_env = {**env, "RATE_LIMIT_PER_MINUTE": "1000", "MODEL_RELOAD_SECONDS": "1", "WEB_PORT": "0"}
    rng = np.random.default_rng(17)
    stranger = [jpeg(varied_stranger(rng)) for _ in range(PHOTOS + 1)]
    with LiveBot(model, tmp_path / "bot", discord=False, env=bot_env) as live:
        fake = live.telegram
        group = live.call(lambda: fake.group_chat)
        ann, ben = live.call(lambda: (fake.user, fake.other_user))
        mention = "@doppel_test_bot who is she?"
        before = []
        for i, data in enumerate(stranger):
            answer = _answer(live, live.call(lambda d=data: fake.push_photo(d, group, mention, sender=ann)))
            before.append(telegram_text(answer))
            if i < PHOTOS:  # both say Twin: agreed by two, and nobody disputes
                _press(live, answer, "Twin", ann)
                _press(live, answer, "Twin", ben)
            else:  # one says Eileen; the owner rejects it
                _press(live, answer, "Eileen", ann)
        assert not any(TWIN_SURE.match(text) for text in before), before
        # Every press counted, by verdict (right or wrong: what the first model named) and by model.
        metrics = httpx.get(live.web_url() + "metrics", timeout=30).text
        pressed = re.findall(r"^doppelbot_feedback_total\{(.*)\} (\S+)$", metrics, re.M)
        assert sum(float(n) for _, n in pressed) == 2 * PHOTOS + 1, pressed
        assert all('model="2025-01-31T12:00:00"' in labels and "neither" not in labels for labels, _ in pressed)

        waiting = json.loads(_review(tmp_path, env, "--json"))
        assert len(waiting) == PHOTOS + 1 and all(item["status"] == "waiting" for item in waiting)
        (disputed,) = [item for item in waiting if item["label"] == "Eileen"]
        assert all(item["votes"] == {"Twin": 2} for item in waiting if item is not disputed)
        _review(tmp_path, env, "--approve-agreed", "2")
        _review(tmp_path, env, "--reject", str(disputed["id"]))
        reviewed = {item["id"]: item["status"] for item in json.loads(_review(tmp_path, env, "--json", "--all"))}
        assert list(reviewed.values()).count("approved") == PHOTOS and reviewed[disputed["id"]] == "rejected"

        args = ["--from-folder", str(photos), "--work", str(tmp_path / "work"), "--out", str(model)]
        trained = run_python("-m", "training", *args, "--dedupe-distance", "0.02", cwd=tmp_path, env=env)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert f"{PHOTOS} approved faces added (Twin {PHOTOS})" in trained.stdout, trained.stdout
        chips = {p.stem for p in (tmp_path / "work" / "chips").rglob("review-*")}
        assert len(chips) == PHOTOS and f"review-{disputed['id']}" not in chips
        metadata = json.loads(model.with_suffix(".json").read_text())
        assert metadata["reviewed"]["per_class"] == {"Twin": PHOTOS}

        # The running bot swaps the new model in by itself; then the same photos are answered as reviewed.
        live.run(live.eventually(lambda: "now serving the model" in live.log, what="the new model"))
        after = [
            telegram_text(_answer(live, live.call(lambda d=d: fake.push_photo(d, group, mention)))) for d in stranger
        ]
        assert sum(bool(TWIN_SURE.match(text)) for text in after) >= PHOTOS, after
