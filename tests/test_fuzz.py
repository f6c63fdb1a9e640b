"""Fuzzing decoding and the face pipeline with mutated JPEG, PNG, GIF and WebP bytes (Hypothesis).

Short in CI (a few hundred inputs). For a long run: `FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py`,
or `python -m bench.fuzz --minutes 30` (random mutations, counts every input, saves failures to replay).
"""

from __future__ import annotations

import faulthandler
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.fuzz import OPERATIONS, FuzzFailure, Mutation, examine, examine_answer, mutate, seeds
from bot.core import describe

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# Inputs the long run found, tried first on every run: the animated GIF cut short after its first frame
# (Pillow's is_animated raised IndexError, answered as an "internal" error).
CUT_GIF = [Mutation("truncate", at=26263, value=0)]
# One input takes tens of milliseconds; a second is slow, ten would be a stall a user would notice.
PER_INPUT = timedelta(seconds=10)
HANG_S = 60.0  # no answer after this long is a hang

T = TypeVar("T")
# Pillow warns about the corrupt EXIF blocks that mutations make; the photo is answered all the same.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEEDS = seeds()
POOL = [SEEDS[name] for name in sorted(SEEDS)]

mutations = st.lists(
    st.builds(
        Mutation,
        op=st.sampled_from(OPERATIONS),
        # Half the edits in the header, where the sizes and lengths are.
        at=st.integers(0, 95) | st.integers(0, 1 << 20),
        value=st.integers(0, (1 << 32) - 1),
        size=st.sampled_from((1, 2, 4, 8, 64, 512)),
    ),
    min_size=1,
    max_size=8,
)
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=PER_INPUT,
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.too_slow],
)


def within(seconds: float, check: Callable[..., T], *args: object) -> T:
    """`check(*args)` on a thread of its own: a hang fails the input instead of stalling the run.

    A hang in C code that holds the GIL would stall even this, so a last-resort watchdog then ends the
    process with every thread's stack.
    """
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, check(*args)))
        except BaseException as e:  # handed back to the test's thread as it is
            outcome.append((False, e))

    worker = threading.Thread(target=run, name="fuzz-input", daemon=True)
    faulthandler.dump_traceback_later(3 * seconds, exit=True)
    try:
        worker.start()
        worker.join(seconds)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if not outcome:
        raise FuzzFailure(f"no answer within {seconds} s: the input hangs the pipeline")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def test_the_cut_gif_example_still_reaches_pillows_damaged_frame_count() -> None:
    """The example above stays the input it was found as: Pillow raises IndexError counting its frames."""
    import io

    from PIL import Image

    with pytest.raises(IndexError):
        Image.open(io.BytesIO(mutate(SEEDS["gif-animated"], CUT_GIF, POOL))).is_animated  # noqa: B018


def test_the_seeds_are_photos_with_a_face(finder) -> None:
    """Unmutated, every seed decodes and shows its face: so mutations reach the face pipeline."""
    assert {name: examine(data, finder) for name, data in SEEDS.items()} == dict.fromkeys(SEEDS, "faces")


@fuzz
@given(seed=st.sampled_from(sorted(SEEDS)), edits=mutations)
@example(seed="gif-animated", edits=CUT_GIF)
def test_mutated_photos_decode_or_are_refused_in_words_and_never_crash_the_face_finder(
    finder, seed: str, edits: list[Mutation]
) -> None:
    within(HANG_S, examine, mutate(SEEDS[seed], edits, POOL), finder)


@settings(fuzz, max_examples=max(EXAMPLES // 3, 10))
@given(seed=st.sampled_from(sorted(SEEDS)), edits=mutations)
@example(seed="gif-animated", edits=CUT_GIF)
def test_every_mutated_photo_gets_an_answer_a_user_can_read(classifier, seed: str, edits: list[Mutation]) -> None:
    answer = within(HANG_S, examine_answer, mutate(SEEDS[seed], edits, POOL), classifier)
    assert describe(answer).text.strip()
