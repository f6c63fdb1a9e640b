"""The load of bench/load.py through Telegram webhooks: `python bench/load.py --webhook-replicas 2`.

`--photos` photos from `--users` Telegram users, delivered as Telegram delivers a webhook's updates (at
most 40 connections, each update to one replica, again on a non-2xx or a dropped connection) to
`--webhook-replicas` real `python -m bot` replicas sharing one Debian `redis-server`; the first replica
is SIGKILLed once half the photos are answered. Prints whether every photo was answered exactly once,
throughput and latency (from an update's first delivery to its reply), then what a webhook adds to one
photo's latency against polling (p50 of 20 photos sent one after another, each way, one replica).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from pathlib import Path

from testkit.e2e import LiveBot, telegram_replies_to
from testkit.redis_server import RedisServer
from testkit.webhook_harness import TELEGRAM_CONNECTIONS, WebhookBot, deliver

from .report import WEBHOOK_HEADING, write_section
from .scoring import LoadResult, Sent, make_photos, score, warm_up

RESULTS = Path(__file__).resolve().parent / "results.md"

__all__ = ["report", "run_webhook_load", "webhook_overhead", "write"]


def run_webhook_load(model: Path, workdir: Path, photos: int, users: int, replicas: int) -> tuple[LoadResult, int]:
    """The burst through `replicas` webhook replicas, the first killed halfway; and how many updates were retried."""
    images = make_photos()
    env = {"RATE_LIMIT_PER_MINUTE": str(photos + 10), "QUEUE_SIZE": str(max(64, 2 * photos))}
    result = LoadResult(photos, users, 0)
    with (
        RedisServer() as redis,
        WebhookBot(model, workdir / "replica0", None, {**env, "REDIS_URL": redis.url}) as first,
    ):
        others = [
            WebhookBot(model, workdir / f"replica{i}", None, {**env, "REDIS_URL": redis.url}).start_beside(first)
            for i in range(1, replicas)
        ]
        try:
            fake = first.telegram
            for bot in (first, *others):  # each replica's first photo costs more than the rest
                warm_up_webhook(first, bot.hook, images[0][0])
            people = [first.call(lambda i=i: fake.new_user(f"webhook{i}")) for i in range(users)]
            messages = []
            for n in range(photos):
                user, chat = people[n % users]
                data, expected = images[n % len(images)]
                message = first.call(lambda d=data, c=chat, u=user: fake.push_photo(d, c, sender=u))
                messages.append((message, expected, first.call(lambda: fake.pushed[-1])))
            hooks = [bot.hook for bot in (first, *others)]

            async def burst() -> tuple[list[Sent], int]:
                slots = asyncio.Semaphore(TELEGRAM_CONNECTIONS)
                sent, tasks = [], []
                for i, (message, expected, update) in enumerate(messages):
                    sent.append(Sent("telegram", message, expected, time.monotonic()))
                    tasks.append(asyncio.create_task(deliver(update, hooks, i, slots=slots, deadline=600)))
                while sum(1 for m, _, _ in messages if telegram_replies_to(fake, m)) < photos // 2:
                    await asyncio.sleep(0.02)
                first.process.send_signal(signal.SIGKILL)
                tries = await asyncio.gather(*tasks)
                return sent, sum(t - 1 for t in tries)

            sent, retried = first.run(burst(), timeout=900)
            first.run(first.quiet(1.0))
            score(first, sent, result)
        finally:
            for bot in others:
                bot.stop_beside()
    return result, retried


def webhook_overhead(model: Path, workdir: Path, n: int = 20) -> tuple[float, float]:
    """p50 ms from a photo sent to its reply, one after another: (polling, webhook), one replica each."""
    images = make_photos()

    def one_by_one(bot: LiveBot, send) -> float:
        fake, times = bot.telegram, []
        for i in range(n):
            message = bot.call(lambda i=i: fake.push_private_photo(images[i % len(images)][0]))
            start = time.monotonic()
            send(bot)
            bot.run(bot.eventually(lambda m=message: bool(telegram_replies_to(fake, m)), what="a reply"))
            at = bot.call(lambda m=message: telegram_replies_to(fake, m)[0].at)
            times.append((at - start) * 1000)
        return statistics.median(times)

    # Each way the same settings: no rate limit reached by 20 photos (its refusals would answer in 4 ms).
    with LiveBot(model, workdir / "polling", discord=False, env={"RATE_LIMIT_PER_MINUTE": "10000"}) as polling:
        warm_up(polling, images[0][0])
        polled = one_by_one(polling, lambda bot: None)  # the bot's long poll takes it
    with WebhookBot(model, workdir / "webhook", None, {}) as hooked:
        warm_up_webhook(hooked, hooked.hook, images[0][0])
        posted = one_by_one(hooked, lambda bot: bot.run(deliver(bot.call(lambda: bot.telegram.pushed[-1]), [bot.hook])))
    return polled, posted


def warm_up_webhook(fakes: LiveBot, hook: str, data: bytes) -> None:
    """One photo to the replica at `hook`, through `fakes`' Telegram, answered before the timing starts."""
    fake = fakes.telegram
    fakes.call(lambda: fake.push_private_photo(data))
    fakes.run(deliver(fakes.call(lambda: fake.pushed[-1]), [hook]))


def report(result: LoadResult, retried: int, replicas: int, overhead: tuple[float, float]) -> str:
    ok = "yes" if result.exactly_once else "NO"
    polled, posted = overhead
    return "\n".join(
        [
            f"| {result.photos} photos from {result.users} Telegram users through {replicas} webhook replicas "
            "sharing Redis, the first SIGKILLed halfway | |",
            "|---|---|",
            f"| answered exactly once | {ok}: {result.answered_once} once, {result.repeated} twice or more, "
            f"{result.missing} never; {len(result.wrong)} naming the wrong person |",
            f"| deliveries tried again (non-2xx or dropped) | {retried} |",
            f"| throughput | {result.throughput:.1f} photos/s over {result.seconds:.1f} s |",
            f"| latency, first delivery to reply | p50 {result.p50_ms:.0f} ms, p95 {result.p95_ms:.0f} ms, "
            f"max {result.max_ms:.0f} ms |",
            f"| one photo alone, p50 of 20 | polling {polled:.0f} ms, webhook {posted:.0f} ms "
            f"({posted - polled:+.1f} ms; target < 5 ms more) |",
        ]
    )


def write(table: str, replicas: int, machine: str) -> None:
    """The table as bench/results.md's section "Webhook replicas", in place of the one an earlier run wrote."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = f"python bench/load.py --webhook-replicas {replicas} --write"
    write_section(
        RESULTS, WEBHOOK_HEADING, f"{WEBHOOK_HEADING}\n\n`{command}`, {date}.\n\nMachine: {machine}\n\n{table}\n"
    )
