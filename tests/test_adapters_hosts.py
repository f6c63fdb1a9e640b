"""The names a webhook replica answers to, in the real `python -m bot`: the webhook's public host reaches the
webhook's path and nothing else; this machine's names reach everything; a probe by address reaches `/healthz` and
`/readyz`, the latter without its reasons (they name Redis' host and the classifier's URL)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from testkit.e2e import model_folder
from testkit.webhook_harness import HEADER, WebhookBot

PUBLIC = "bot.example.com"


async def ask(port: int, method: str, path: str, host: str, **headers: str) -> tuple[int, dict | str]:
    """A request to the replica on 127.0.0.1, for the name `host`: its status, and its JSON (or text)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", headers={"Host": host, **headers}) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


def test_the_webhooks_host_reaches_its_path_only_and_probes_by_address_reach_health_without_reasons(
    exported: Path, tmp_path: Path
) -> None:
    env = {"TELEGRAM_WEBHOOK_URL": f"https://{PUBLIC}/telegram/hook", "FACE_WORKERS": "0"}
    # Up once GET 127.0.0.1:port/readyz answers 200: by this machine's own name, as a local check asks it.
    with WebhookBot(model_folder(exported, tmp_path / "model"), tmp_path, None, env) as replica:
        port = replica.port

        async def scenario() -> dict[str, tuple[int, dict | str]]:
            probe = "10.0.0.5:8080"  # the replica's address as a load balancer names it: not one the replica knows
            return {
                "public page": await ask(port, "GET", "/", PUBLIC),
                "public classify": await ask(port, "POST", "/api/classify", PUBLIC),
                "public metrics": await ask(port, "GET", "/metrics", PUBLIC),
                "public readyz": await ask(port, "GET", "/readyz", PUBLIC),
                "public hook, GET": await ask(port, "GET", "/telegram/hook", PUBLIC),
                # Telegram's POST reaches the webhook: here refused for its wrong secret, by the webhook itself.
                "public hook": await ask(port, "POST", "/telegram/hook", PUBLIC, **{HEADER: "wrong"}),
                "local readyz": await ask(port, "GET", "/readyz", f"127.0.0.1:{port}"),
                "local metrics": await ask(port, "GET", "/metrics", f"localhost:{port}"),
                "probe healthz": await ask(port, "GET", "/healthz", probe),
                "probe readyz": await ask(port, "GET", "/readyz", probe),
                "probe page": await ask(port, "GET", "/", probe),
                "probe metrics": await ask(port, "GET", "/metrics", probe),
                "rebound name": await ask(port, "GET", "/readyz", f"evil.example:{port}"),
            }

        seen = replica.run(scenario())
    statuses = {what: status for what, (status, _) in seen.items()}
    assert statuses == {
        "public page": 421,
        "public classify": 421,
        "public metrics": 421,
        "public readyz": 421,
        "public hook, GET": 421,
        "public hook": 403,
        "local readyz": 200,
        "local metrics": 200,
        "probe healthz": 200,
        "probe readyz": 200,
        "probe page": 421,
        "probe metrics": 421,
        "rebound name": 421,
    }, seen
    assert seen["local readyz"][1] == {"ready": True, "reasons": []}
    assert seen["probe readyz"][1] == {"ready": True}  # whether, not why
