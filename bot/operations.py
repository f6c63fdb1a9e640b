"""What operators and load balancers read: `/healthz`, `/readyz` and `/metrics` (Prometheus), on the web server.

`Operations` holds the process's metrics in its own registry (so that several bots in one test process
do not collide) and the readiness checks the app registers: one for the model (or the classifier
service), one per chat adapter. The chat core counts every photo through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

__all__ = ["PROBE_ONLY", "Operations", "add_operations_routes"]

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[str | None]]  # None when ready, else the reason, in words
# Seconds from a photo taken to its answer: a lone photo takes tens of ms, a burst's last ones seconds.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CHECK_SECONDS = 5.0  # a check that takes longer than this says the thing it checks is not ready
# Set by the web page on a probe by address (`bot.web_guards.Access.PROBE`): `/readyz` then says whether, not why
# (its reasons name Redis' host and the classifier service's URL, which are nobody else's business).
PROBE_ONLY = web.RequestKey("probe_only", bool)


class Operations:
    """The bot's metrics, and what it must have to be ready."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.photos = Counter(
            "doppelbot_photos", "Photos answered, by adapter and outcome.", ["adapter", "outcome"], registry=r
        )
        self.refusals = Counter(
            "doppelbot_refusals",
            "Photos refused before the model, by adapter and reason.",
            ["adapter", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "doppelbot_photo_seconds",
            "From a photo taken to its answer.",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("doppelbot_queue_depth", "Photos waiting for the model.", registry=r)
        self.batch_size = Histogram(
            "doppelbot_batch_photos", "Photos the model answered together.", buckets=BATCH_BUCKETS, registry=r
        )
        self.model = Info("doppelbot_model", "The model answering now.", registry=r)
        self.feedback = Counter(
            "doppelbot_feedback",
            "Feedback presses recorded, by verdict (right, wrong, neither) and model (its training date).",
            ["verdict", "model"],
            registry=r,
        )
        self.checks: dict[str, Check] = {}
        self.before_scrape: list[Callable[[], None]] = []  # bring gauges and the model's description up to date

    def answered(self, adapter: str, outcome: str, seconds: float) -> None:
        self.photos.labels(adapter, outcome).inc()
        self.latency.labels(adapter).observe(seconds)

    def pressed(self, verdict: str, model: str | None) -> None:
        """Count one recorded feedback press."""
        self.feedback.labels(verdict, model or "unknown").inc()

    def refused(self, adapter: str, reason: str) -> None:
        self.refusals.labels(adapter, reason).inc()

    def describe_model(self, classes: list[str], trained_at: str | None, accuracy: float | None) -> None:
        self.model.info(
            {
                "classes": ",".join(classes),
                "trained_at": trained_at or "",
                "accuracy": "" if accuracy is None else f"{accuracy:.4f}",
            }
        )

    async def not_ready(self) -> list[str]:
        """Why the bot cannot answer now, one reason per failing check; empty when it is ready."""

        async def run(name: str, check: Check) -> str | None:
            try:
                return await asyncio.wait_for(check(), CHECK_SECONDS)
            except TimeoutError:
                return f"{name}: no answer within {CHECK_SECONDS:.0f} s"
            except Exception as e:  # a check that breaks says so; it never breaks the endpoint
                return f"{name}: {type(e).__name__}: {e}"

        names = list(self.checks)
        reasons = await asyncio.gather(*(run(name, self.checks[name]) for name in names))
        return [reason for reason in reasons if reason]


def add_operations_routes(app: web.Application, operations: Operations) -> None:
    """`/healthz` (the process answers), `/readyz` (it can answer photos) and `/metrics` on `app`."""

    async def healthz(request: web.Request) -> web.Response:
        """Alive: this answer is the proof."""
        return web.json_response({"alive": True})

    async def readyz(request: web.Request) -> web.Response:
        """Ready when the model (or classifier service) answers and every configured adapter is connected; the
        reasons only to this machine's names (WEB_ALLOWED_HOSTS), not to a probe by address."""
        reasons = await operations.not_ready()
        body: dict = {"ready": not reasons}
        if not request.get(PROBE_ONLY, False):
            body["reasons"] = reasons
        return web.json_response(body, status=503 if reasons else 200)

    async def metrics(request: web.Request) -> web.Response:
        """Every metric, in Prometheus' text format."""
        for refresh in operations.before_scrape:
            try:
                refresh()
            except Exception:  # a figure that cannot be read is left as it was; the others are still served
                log.exception("could not bring a metric up to date")
        body = generate_latest(operations.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
