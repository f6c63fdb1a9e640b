"""A small burst through the real bot process (bench/load.py's run, smaller): every photo answered exactly
once, naming the right person, with memory that stays bounded. Times are printed, never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import make_photos, report, run_load

# Start-up leaves the process at about 1 GB (torch, fastai, dlib, the model); a burst adds tens of MB.
# Each waiting photo costs its bytes and its job, so growth proportional to the burst would show.
GROWTH_LIMIT_MB = 400


def test_forty_photos_from_ten_users_are_each_answered_exactly_once(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_load(
        exported, tmp_path, photos=40, users=10, discord_users=2, spread=2.0, timeout=300, images=make_photos(6)
    )
    with capsys.disabled():
        print("\n" + report(result))
    assert (result.missing, result.repeated, result.wrong) == (0, 0, []), report(result)
    assert result.answered_once == 40
    assert result.rss_samples > 0 and 0 < result.rss_before_mb <= result.rss_peak_mb
    assert result.rss_peak_mb - result.rss_before_mb < GROWTH_LIMIT_MB, report(result)
