"""Load: many users send photos at once to the real `python -m bot` process, over fake Telegram and Discord.

    python bench/load.py [--photos 300] [--users 50] [--discord-users 10] [--spread 3] [--model PATH]
    python -m bench.load ...
    python bench/load.py --webhook-replicas 2   # through Telegram webhooks instead (bench/webhook_load.py)

Starts the bot as a user would (a subprocess configured only by its environment) against the fake servers
of tests/ on 127.0.0.1, warms it with one photo, then has `--users` people (`--discord-users` of them on
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
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The fake servers and the bot-process harness live with the tests, which use them too.
sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from e2e import LiveBot, discord_replies_to, memory_kb, telegram_replies_to, telegram_text  # noqa: E402

__all__ = ["LoadResult", "main", "run_load"]

NAMES = ("Eileen", "Twin")
NAME = re.compile(r"\b(Eileen|Twin)\b")


@dataclass
class LoadResult:
    """What the users saw, and what it cost."""

    photos: int
    users: int
    discord_users: int
    answered_once: int = 0
    missing: int = 0  # photos with no answer at all
    repeated: int = 0  # photos answered more than once
    wrong: list[str] = field(default_factory=list)  # answers that do not name the person in the photo
    seconds: float = 0.0  # from the first photo sent to the last answer
    throughput: float = 0.0  # photos answered per second over that time
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    rss_before_mb: float = 0.0  # after start-up and one warm-up photo
    rss_peak_mb: float = 0.0  # VmHWM at the end: the most the process ever held
    rss_after_mb: float = 0.0
    rss_samples: int = 0

    @property
    def exactly_once(self) -> bool:
        return self.answered_once == self.photos and not self.wrong


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def make_photos(n: int = 12, seed: int = 0) -> list[tuple[bytes, str]]:
    """`n` different one-face 1280x853 JPEGs, alternately of each person, with who is in each."""
    import numpy as np

    from bench.learners import photo

    rng = np.random.default_rng(seed)
    return [(photo(1, rng, twin=i % 2 == 1), NAMES[i % 2]) for i in range(n)]


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
        _warm_up(live, images[0][0])
        result.rss_before_mb = live.memory_kb().get("VmRSS", 0) / 1024
        sampler = _MemorySampler(live.process.pid)
        sampler.start()
        try:
            sent = live.run(_burst(live, photos, users, discord_users, spread, images), timeout=spread + 60)
            every = live.eventually(
                lambda: _all_answered(live, sent), timeout, "an answer to every photo", interval=0.25
            )
            live.run(every, timeout + 30)
            live.run(live.quiet(1.0))
        finally:
            sampler.stop()
        memory = live.memory_kb()
        result.rss_peak_mb = memory.get("VmHWM", 0) / 1024
        result.rss_after_mb = memory.get("VmRSS", 0) / 1024
        result.rss_samples = len(sampler.samples)
        _score(live, sent, result)
    return result


def _warm_up(live: LiveBot, data: bytes) -> None:
    """One photo first: the first forward pass and the first connections cost more than the rest."""
    if live.telegram is not None:
        fake = live.telegram
        message = live.call(lambda: fake.push_private_photo(data))
        live.run(live.eventually(lambda: bool(telegram_replies_to(fake, message)), what="the warm-up reply"))
    else:
        fake = live.discord
        message = live.run(fake.send_message(fake.user("warm"), attachments=[fake.attachment(data)]))
        live.run(live.eventually(lambda: bool(discord_replies_to(fake, message)), what="the warm-up reply"))


@dataclass
class _Sent:
    adapter: str
    message: dict
    expected: str
    at: float


async def _burst(
    live: LiveBot, photos: int, users: int, discord_users: int, spread: float, images: list[tuple[bytes, str]]
) -> list[_Sent]:
    """Photos from every user in turn, evenly over `spread` seconds."""
    people = []
    for i in range(users):
        if i < discord_users:
            people.append(("discord", live.discord.user(f"discord{i}"), None))
        else:
            user, chat = live.telegram.new_user(f"telegram{i}")
            people.append(("telegram", user, chat))
    sent: list[_Sent] = []
    start = time.monotonic()
    for n in range(photos):
        adapter, user, chat = people[n % users]
        data, expected = images[n % len(images)]
        if adapter == "telegram":
            message = live.telegram.push_photo(data, chat, sender=user)
        else:
            fake = live.discord
            message = await fake.send_message(user, attachments=[fake.attachment(data)])
        sent.append(_Sent(adapter, message, expected, time.monotonic()))
        await asyncio.sleep(max(0.0, start + spread * (n + 1) / photos - time.monotonic()))
    return sent


def _answers(live: LiveBot) -> dict[tuple, list[tuple[str, float]]]:
    """Every answer delivered so far, by the message it answers: its text and when it arrived (one pass)."""
    found: dict[tuple, list[tuple[str, float]]] = {}
    if live.telegram is not None:
        for call in live.telegram.replies:
            key = ("telegram", str(call.params.get("chat_id")), call.reply_to)
            found.setdefault(key, []).append((telegram_text(call), call.at))
    if live.discord is not None:
        fake = live.discord
        for call in fake.calls:
            if call.is_message_to(fake.channel_id) and call.status == 200 and call.reply_to is not None:
                found.setdefault(("discord", call.reply_to), []).append((call.content or "", call.at))
    return found


def _key(item: _Sent) -> tuple:
    if item.adapter == "telegram":
        return ("telegram", str(item.message["chat"]["id"]), item.message["message_id"])
    return ("discord", int(item.message["id"]))


def _all_answered(live: LiveBot, sent: list[_Sent]) -> bool:
    found = _answers(live)
    return all(_key(item) in found for item in sent)


def _score(live: LiveBot, sent: list[_Sent], result: LoadResult) -> None:
    found = live.call(lambda: _answers(live))
    latencies, last = [], 0.0
    for item in sent:
        replies = found.get(_key(item), [])
        if not replies:
            result.missing += 1
            continue
        if len(replies) > 1:
            result.repeated += 1
        else:
            result.answered_once += 1
        text, at = replies[0]
        name = NAME.search(text)
        if name is None or name.group(1) != item.expected:
            result.wrong.append(text)
        latencies.append((at - item.at) * 1000)
        last = max(last, at)
    result.seconds = last - sent[0].at if latencies else 0.0
    result.throughput = len(latencies) / result.seconds if result.seconds else 0.0
    result.p50_ms, result.p95_ms = percentile(latencies, 0.5), percentile(latencies, 0.95)
    result.max_ms = max(latencies, default=0.0)


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
