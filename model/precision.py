"""The number format the face encoder runs in: fp32 everywhere, bf16 where the CPU computes it natively.

dlib's encoder takes about half of a one-face answer and already runs at this CPU's fp32 peak; a CPU with
AVX512_BF16 (or AMX) does the same convolutions in bfloat16 about twice as fast (bench/results.md, "Encoder
precision"), with descriptors within about 1% of fp32's. `auto` takes bf16 only where the CPU says it has it:
emulated bf16 on an older CPU is slower than fp32. The head and the gallery's distances stay fp32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "cpu_has_bf16", "encoding", "resolve"]

# Read by the bot's settings, which a chat frontend without the model also loads: torch is imported only where used.
PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX), as the CPU itself reports it."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    try:  # an older torch: the kernel's list of the CPU's flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(precision: str, device: torch.device | str = "cpu") -> str:
    """ "fp32" or "bf16" for `precision` ("auto", "fp32", "bf16") on `device`: `auto` is bf16 on a CPU that has it,
    fp32 elsewhere (a GPU keeps the format it was measured in)."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "fp32"


@contextlib.contextmanager
def encoding(precision: str, device: torch.device) -> Iterator[None]:
    """Run the encoder inside in `precision` ("fp32" or "bf16", as `resolve` gives it)."""
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield
