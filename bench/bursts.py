"""The benchmark's bursts and encoder timings: what the bot does with many photos at once, and the network alone.

- `bot_against_book`: row (a), the product against the book's product. Our photos go through the
  bot's own serving path (`InferenceWorker`, its batching window, the face-finding processes) as
  `python -m bot` runs it; the book's bot answers with `learn.predict`, one photo after another in
  one process, as its deployment runs.
- `batched_against_single`: row (b), what batching alone buys: our path batched against the same
  path one photo at a time, with the same processes.
- `encoder_speed`: the face encoder per chip at batch 1, 2 and 16, as served and in its other forms.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from bot.worker import InferenceWorker
from model.encoder import FaceEncoder
from model.int8 import quantized_encoder
from model.precision import x86_int8
from model.serving import FaceClassifier

from .learners import book_answer
from .model_timings import median_ms
from .report import EncoderSpeed

__all__ = ["EncoderSpeed", "batched_against_single", "bot_against_book", "encoder_speed"]


async def _bot_burst(worker: InferenceWorker, photos: Sequence[bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    results = await asyncio.gather(*(worker.classify(p) for p in photos))
    return time.perf_counter() - start, sum(len(r.answer.faces) for r in results)


def bot_against_book(
    classifier: FaceClassifier, book, photos: Sequence[bytes], rounds: int = 3
) -> tuple[float, float, int]:
    """Median seconds for the whole burst: (our bot, the book's bot), and the faces our bot found.

    The bot's defaults (BATCH_WINDOW_MS=30, batches of up to 64), with a queue that holds the whole
    burst (QUEUE_SIZE=len(photos)), so that every photo is taken and answered. The two alternate round
    by round, so that load that drifts falls on both.
    """
    worker = InferenceWorker(classifier, queue_size=len(photos), batch_window=0.03)
    ours, book_times, faces = [], [], 0
    try:
        asyncio.run(_bot_burst(worker, photos[:4]))  # warm-up, as a running bot is
        for _ in range(rounds):
            seconds, faces = asyncio.run(_bot_burst(worker, photos))
            ours.append(seconds)
            start = time.perf_counter()
            for data in photos:
                book_answer(book, data)
            book_times.append(time.perf_counter() - start)
    finally:
        worker.close(timeout=30)
    return statistics.median(ours), statistics.median(book_times), faces


def batched_against_single(
    classifier: FaceClassifier, photos: Sequence[bytes], batch: int
) -> tuple[float, float, tuple[int, int]]:
    """Seconds for the photos batched and one by one, and the faces each way found.

    The same classifier and processes both ways; they alternate batch by batch, so both see the same machine.
    """
    batched = single = 0.0
    faces = [0, 0]
    for i in range(0, len(photos), batch):
        chunk = photos[i : i + batch]
        start = time.perf_counter()
        faces[0] += sum(len(a.faces) for a in classifier.classify_many(chunk))
        batched += time.perf_counter() - start
        start = time.perf_counter()
        faces[1] += sum(len(classifier.classify(p).faces) for p in chunk)
        single += time.perf_counter() - start
    return batched, single, (faces[0], faces[1])


def encoder_speed(
    encoder: FaceEncoder, chips: np.ndarray, runs: int, batches: tuple[int, ...] = (1, 2, 16)
) -> EncoderSpeed:
    """The encoder eager as training runs it, fused and channels-last as served (fp32, bf16, int8), traced and frozen.

    The frozen form is measured, not served: see the results' notes.
    """
    cl = torch.channels_last
    x_all = torch.from_numpy(chips).permute(0, 3, 1, 2).float().div(255)
    eager = encoder.eval()
    served = encoder.fused().to(memory_format=cl)
    with torch.inference_mode():
        reference = eager(x_all)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        frozen = torch.jit.freeze(torch.jit.trace(served, x_all[:2].contiguous(memory_format=cl)).eval())

    def served_bf16(x: torch.Tensor) -> torch.Tensor:  # as the bot serves it on a CPU with bf16 (model/precision.py)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return served(x).float()

    forms = {
        "eager": (eager, torch.contiguous_format),
        "served": (served, cl),
        "frozen": (frozen, cl),
        "served_bf16": (served_bf16, cl),
    }
    if x86_int8():  # calibrated on the chips it is timed on: the speed does not depend on the ranges
        forms["served_int8"] = (quantized_encoder(encoder.fused(), list(chips)), torch.contiguous_format)
    ms: dict[str, list[float]] = {name: [] for name in forms}
    difference: dict[str, float] = {}
    with torch.inference_mode():
        for name, (module, layout) in forms.items():
            x = x_all.contiguous(memory_format=layout)
            difference[name] = float((module(x) - reference).abs().max())
            for b in batches:
                xb = x[:b].contiguous(memory_format=layout)
                ms[name].append(median_ms(lambda m=module, xb=xb: m(xb), runs, warm_ups=3) / b)
    return EncoderSpeed(batches, {k: tuple(v) for k, v in ms.items()}, difference)
