"""What a burst of photos through the real bot process came to: the photos sent, the answers scored.

Shared by bench/load.py (polling and Discord) and bench/webhook_load.py (webhook replicas).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from testkit.e2e import LiveBot, discord_replies_to, telegram_replies_to, telegram_text

__all__ = ["NAMES", "LoadResult", "Sent", "all_answered", "make_photos", "percentile", "score", "warm_up"]

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


def warm_up(live: LiveBot, data: bytes) -> None:
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
class Sent:
    adapter: str
    message: dict
    expected: str
    at: float


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


def _key(item: Sent) -> tuple:
    if item.adapter == "telegram":
        return ("telegram", str(item.message["chat"]["id"]), item.message["message_id"])
    return ("discord", int(item.message["id"]))


def all_answered(live: LiveBot, sent: list[Sent]) -> bool:
    found = _answers(live)
    return all(_key(item) in found for item in sent)


def score(live: LiveBot, sent: list[Sent], result: LoadResult) -> None:
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
