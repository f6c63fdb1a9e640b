"""The number format the face encoder runs in: fp32 everywhere, bf16 where the CPU computes it natively, int8 on asking.

dlib's encoder takes about half of a one-face answer and already runs at this CPU's fp32 peak; a CPU with
AVX512_BF16 (or AMX) does the same convolutions in bfloat16 about twice as fast (bench/results.md, "Encoder
precision"), with descriptors within about 1% of fp32's. `auto` takes bf16 only where the CPU says it has it:
emulated bf16 on an older CPU is slower than fp32. The head and the gallery's distances stay fp32.

int8 (`model/int8.py`, PyTorch's x86 backend) is faster still, but moves the descriptors about three times as
far as bf16 (2.2% of their length against 0.8%, on the same pins faces), so `auto` does not take it until
the open-set table shows it answers as fp32 does (bench/results.md, "Encoder precision"); ENCODER_PRECISION=int8
asks for it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "auto_precision", "cpu_has_bf16", "encoding", "resolve"]

# Read by the bot's settings, which a chat frontend without the model also loads: torch is imported only where used.
PRECISIONS = ("auto", "fp32", "bf16", "int8")


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
    """ "fp32", "bf16" or "int8" for `precision` (one of PRECISIONS) on `device`: `auto` is `auto_precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return auto_precision(device)
    if precision == "int8":
        import torch

        from .int8 import int8_available

        if torch.device(device).type != "cpu":
            raise ValueError("encoder precision int8 runs on a CPU only (PyTorch's x86 backend); use fp32 on a GPU")
        if not int8_available():
            raise ValueError("encoder precision int8: this torch has no x86 quantized backend; use auto")
    return precision


def auto_precision(device: torch.device | str = "cpu") -> str:
    """What `auto` takes: bf16 on a CPU that has it, fp32 elsewhere (a GPU keeps the format it was measured in).

    Never int8, whose answers are not yet shown equal to fp32's (see the module's docstring)."""
    import torch

    return "bf16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "fp32"


@contextlib.contextmanager
def encoding(precision: str, device: torch.device) -> Iterator[None]:
    """Run the encoder inside in `precision` (as `resolve` gives it): bf16 autocasts; int8 is its own module."""
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield
