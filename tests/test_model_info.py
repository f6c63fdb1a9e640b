"""`/about` and the web page describe the model that answers, not whatever file lies beside it now."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

from testkit.e2e import LiveBot, model_folder, telegram_text


def publish(model: Path, pkl: bytes, accuracy: float) -> None:
    """Replace the bot's model and its metadata, each file by a rename as training does; metadata first."""
    meta = json.loads(model.with_suffix(".json").read_text())
    for path, data in ((model.with_suffix(".json"), json.dumps({**meta, "accuracy": accuracy}).encode()), (model, pkl)):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, path)


def about_on_telegram(live: LiveBot, user: str) -> str:
    """What `/about` answers a new Telegram user."""
    fake = live.telegram
    chat = live.call(lambda: fake.new_user(user))[1]
    live.call(lambda: fake.push_command("/about", chat))

    def replies() -> list[str]:  # a private chat's command is answered without quoting it
        return [telegram_text(c) for c in fake.replies if str(c.params["chat_id"]) == str(chat["id"])]

    live.run(live.eventually(replies, what="an answer to /about"))  # `eventually` runs on the fakes' loop
    (text,) = live.call(replies)
    return text


def about_on_the_web(live: LiveBot) -> dict:
    """The web page's `/api/about`: the model line and the same words as `/about`."""
    (line,) = live.log_lines(r"web page at http://")
    url = re.search(r"(http://\S+/)", line).group(1)
    # No proxy for 127.0.0.1: urlopen's shared opener keeps whatever proxy the environment had when it was
    # first used, and test_training points the proxies at a closed port while it runs.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url + "api/about", timeout=30) as response:
        return json.loads(response.read())


def wait_for_log(live: LiveBot, pattern: str, count: int = 1) -> None:
    live.run(live.eventually(lambda: len(live.log_lines(pattern)) >= count, what=f"{pattern!r} in the log"))


def test_about_describes_the_model_answering_after_a_broken_replacement_and_a_good_one(
    exported: Path, tmp_path: Path
) -> None:
    model = model_folder(exported, tmp_path / "model", accuracy=0.985)
    # A fast reload, so the test waits for the swaps a moment; no face-finding processes, to spare the cores.
    env = {"MODEL_RELOAD_SECONDS": "0.2", "WEB_PORT": "0", "FACE_WORKERS": "0"}
    with LiveBot(model, tmp_path, discord=False, env=env) as live:
        wait_for_log(live, r"web page at http://")
        assert "Validation accuracy: 98.5% on 200 faces" in about_on_telegram(live, "Ann")
        assert about_on_the_web(live)["model"]["accuracy"] == 0.985

        # New metadata, then a model file that does not load: the old model keeps answering, so /about
        # and the page keep its numbers (they used to read the new metadata and claim 50%).
        publish(model, b"not a model", accuracy=0.5)
        wait_for_log(live, r"did not load; still serving the old one")
        about = about_on_telegram(live, "Bo")
        assert "Validation accuracy: 98.5% on 200 faces" in about and "50.0%" not in about, about
        web = about_on_the_web(live)
        assert web["model"]["accuracy"] == 0.985 and web["about"] == about

        # A good model with its metadata: both swap in together.
        publish(model, exported.read_bytes(), accuracy=0.75)
        wait_for_log(live, r"now serving the model from")
        about = about_on_telegram(live, "Cy")
        assert "Validation accuracy: 75.0% on 200 faces" in about, about
        web = about_on_the_web(live)
        assert web["model"]["accuracy"] == 0.75 and web["about"] == about
