"""`/healthz`, `/readyz` and `/metrics` on the bot's web server, as an operator's probes and Prometheus read them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from bot.core import ChatCore, RateLimiter
from bot.operations import Operations
from bot.web_adapter import build_web_app, start_web
from testkit.imagery import jpeg, scene
from testkit.processes import free_port
from testkit.service_harness import frontend


def metric(text: str, name: str) -> float:
    """The value of one sample (`name` with its labels, exactly as Prometheus writes it) in a scrape."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not in the scrape:\n{text}"
    return float(found.group(1))


def test_metrics_count_photos_refusals_latency_and_batches_and_readyz_names_what_is_missing(worker) -> None:
    operations = Operations()
    connected = {"discord": True}

    async def model_ready() -> str | None:
        return None

    async def discord_ready() -> str | None:
        return None if connected["discord"] else "discord: not connected to the gateway"

    operations.checks.update(model=model_ready, discord=discord_ready)
    operations.queue_depth.set_function(worker.waiting)
    worker.on_batch = operations.batch_size.observe
    core = ChatCore(worker, RateLimiter(1), operations=operations)

    async def scenario() -> dict:
        runner = await start_web(build_web_app(core, operations=operations), "127.0.0.1", 0)
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        seen = {}
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                seen["healthz"] = (await client.get(f"{url}/healthz")).status_code
                ready = await client.get(f"{url}/readyz")
                seen["ready"] = (ready.status_code, ready.json())
                photo = {"content": jpeg(scene(1)), "headers": {"Content-Type": "image/jpeg"}}
                seen["first"] = (await client.post(f"{url}/api/classify", **photo)).status_code
                seen["second"] = (await client.post(f"{url}/api/classify", **photo)).status_code  # past the limit
                scrape = await client.get(f"{url}/metrics")
                seen["scrape"] = (scrape.status_code, scrape.headers["content-type"], scrape.text)
                connected["discord"] = False
                not_ready = await client.get(f"{url}/readyz")
                seen["not_ready"] = (not_ready.status_code, not_ready.json())
        finally:
            await runner.cleanup()
        return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        worker.on_batch = None
    assert seen["healthz"] == 200
    assert seen["ready"] == (200, {"ready": True, "reasons": []})
    assert (seen["first"], seen["second"]) == (200, 429)
    status, content_type, text = seen["scrape"]
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert metric(text, 'doppelbot_photos_total{adapter="web",outcome="ok"}') == 1
    assert metric(text, 'doppelbot_refusals_total{adapter="web",reason="rate_limited"}') == 1
    assert metric(text, 'doppelbot_photo_seconds_count{adapter="web"}') == 1
    assert metric(text, "doppelbot_batch_photos_count") >= 1
    assert metric(text, "doppelbot_queue_depth") == 0
    assert seen["not_ready"] == (503, {"ready": False, "reasons": ["discord: not connected to the gateway"]})


def test_a_frontend_whose_classifier_service_is_gone_is_alive_but_not_ready(tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with frontend(gone, tmp_path) as bot:
        alive = httpx.get(f"{bot.url}/healthz", timeout=5)
        ready = httpx.get(f"{bot.url}/readyz", timeout=30)
        scrape = httpx.get(f"{bot.url}/metrics", timeout=30)
    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["reasons"] == [f"classifier service: {gone} does not answer"]
    assert metric(scrape.text, "doppelbot_queue_depth") == 0
