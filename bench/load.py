"""Load: many users send photos at once to the real `python -m bot` process, over fake Telegram and Discord.

    python bench/load.py [--photos 300] [--users 50] [--discord-users 10] [--spread 3] [--model PATH]
    python -m bench.load ...
    python bench/load.py --webhook-replicas 2   # through Telegram webhooks instead (bench/webhook_load.py)

Starts the bot as a user would (a subprocess configured only by its environment) against the fake servers
of testkit/ on 127.0.0.1, warms it with one photo, then has `--users` people (`--discord-users` of them on
Discord, the rest on Telegram) send `--photos` photos in all, evenly over `--spread` seconds. It checks
that every photo got exactly one answer naming the right person, and prints throughput, latency from
sending to the reply's arrival (p50, p95, max), and the bot process's resident memory (before, peak, after),
then one JSON line. Timings are printed, never judged. The per-user rate limit and the queue are raised
for the run (RATE_LIMIT_PER_MINUTE, QUEUE_SIZE): with the defaults (10 a minute, 32 waiting) most of the
burst would be answered "slow down" or "busy", by design.

Without `--model`, a learner of the two generated people is trained first (under a minute), as
`python -m bench` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from bench.scoring import LoadResult, Sent, all_answered, make_photos, score, warm_up
from testkit.e2e import LiveBot, memory_kb

__all__ = ["LoadResult", "main", "make_photos", "report", "run_load"]


class _MemorySampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if rss := memory_kb(self.pid).get("VmRSS"):
                self.samples.append(rss)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def run_load(
    model: Path,
    workdir: Path,
    photos: int = 300,
    users: int = 50,
    discord_users: int = 10,
    spread: float = 3.0,
    timeout: float = 900.0,
    images: list[tuple[bytes, str]] | None = None,
) -> LoadResult:
    """Run the burst against a fresh bot process and return what happened (see the module's docstring)."""
    if not 0 <= discord_users <= users or users < 1 or photos < users:
        raise ValueError("need 1 <= users <= photos and 0 <= discord_users <= users")
    images = images or make_photos()
    env = {"RATE_LIMIT_PER_MINUTE": str(photos + 10), "QUEUE_SIZE": str(max(64, 2 * photos))}
    result = LoadResult(photos, users, discord_users)
    with LiveBot(model, workdir, telegram=discord_users < users, discord=discord_users > 0, env=env) as live:
        warm_up(live, images[0][0])
        result.rss_before_mb = live.memory_kb().get("VmRSS", 0) / 1024
        sampler = _MemorySampler(live.process.pid)
        sampler.start()
        try:
            sent = live.run(_burst(live, photos, users, discord_users, spread, images), timeout=spread + 60)
            every = live.eventually(
                lambda: all_answered(live, sent), timeout, "an answer to every photo", interval=0.25
            )
            live.run(every, timeout + 30)
            live.run(live.quiet(1.0))
        finally:
            sampler.stop()
        memory = live.memory_kb()
        result.rss_peak_mb = memory.get("VmHWM", 0) / 1024
        result.rss_after_mb = memory.get("VmRSS", 0) / 1024
        result.rss_samples = len(sampler.samples)
        score(live, sent, result)
    return result


async def _burst(
    live: LiveBot, photos: int, users: int, discord_users: int, spread: float, images: list[tuple[bytes, str]]
) -> list[Sent]:
    """Photos from every user in turn, evenly over `spread` seconds."""
    people = []
    for i in range(users):
        if i < discord_users:
            people.append(("discord", live.discord.user(f"discord{i}"), None))
        else:
            user, chat = live.telegram.new_user(f"telegram{i}")
            people.append(("telegram", user, chat))
    sent: list[Sent] = []
    start = time.monotonic()
    for n in range(photos):
        adapter, user, chat = people[n % users]
        data, expected = images[n % len(images)]
        if adapter == "telegram":
            message = live.telegram.push_photo(data, chat, sender=user)
        else:
            fake = live.discord
            message = await fake.send_message(user, attachments=[fake.attachment(data)])
        sent.append(Sent(adapter, message, expected, time.monotonic()))
        await asyncio.sleep(max(0.0, start + spread * (n + 1) / photos - time.monotonic()))
    return sent


def report(result: LoadResult) -> str:
    ok = "yes" if result.exactly_once else "NO"
    lines = [
        f"| {result.photos} photos from {result.users} users ({result.discord_users} on Discord), "
        f"sent within the spread | |",
        "|---|---|",
        f"| answered exactly once, naming the right person | {ok}: {result.answered_once} once, "
        f"{result.missing} missing, {result.repeated} repeated, {len(result.wrong)} wrong |",
        f"| throughput | {result.throughput:.1f} photos/s ({result.seconds:.1f} s from first photo to last answer) |",
        f"| latency, photo sent to answer received | p50 {result.p50_ms:.0f} ms, p95 {result.p95_ms:.0f} ms, "
        f"max {result.max_ms:.0f} ms |",
        f"| bot process RSS | {result.rss_before_mb:.0f} MB before, {result.rss_peak_mb:.0f} MB peak, "
        f"{result.rss_after_mb:.0f} MB after |",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=300)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--discord-users", type=int, default=10, help="how many of the users are on Discord")
    p.add_argument("--spread", type=float, default=3.0, help="seconds over which the photos are sent")
    p.add_argument("--model", type=Path, help="an exported learner of the generated people (default: train one)")
    p.add_argument(
        "--webhook-replicas",
        type=int,
        default=0,
        help="instead: Telegram webhooks to N replicas sharing Redis, the first killed halfway (bench/webhook_load.py)",
    )
    p.add_argument("--write", action="store_true", help="with --webhook-replicas: put the table in bench/results.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.report import machine_line

    machine = machine_line(1, {})  # before the run: its load average is the one the run started under
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            from bench.learners import face_learner_file
            from model.faces import FaceFinder

            print("training a learner of the generated people...", file=sys.stderr)
            model = face_learner_file(folder / "learner", FaceFinder(), per_class=8)
        if args.webhook_replicas:
            from bench import webhook_load

            result, retried = webhook_load.run_webhook_load(
                model, folder / "bot", args.photos, args.users, args.webhook_replicas
            )
            overhead = webhook_load.webhook_overhead(model, folder / "overhead")
            table = webhook_load.report(result, retried, args.webhook_replicas, overhead)
            print(table)
            if args.write:
                webhook_load.write(table, args.webhook_replicas, machine)
            print(json.dumps({k: v for k, v in asdict(result).items() if k != "wrong"} | {"wrong": len(result.wrong)}))
            return 0 if result.missing == 0 else 1
        result = run_load(model, folder / "bot", args.photos, args.users, args.discord_users, args.spread)
    print(report(result))
    print(json.dumps({k: v for k, v in asdict(result).items() if k != "wrong"} | {"wrong": len(result.wrong)}))
    return 0 if result.exactly_once else 1


if __name__ == "__main__":
    raise SystemExit(main())
