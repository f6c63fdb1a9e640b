"""The number format the face encoder runs in: the fastest this CPU has that keeps fp32's answers.

dlib's encoder takes about half of a one-face answer and runs at a CPU's fp32 peak already; narrower formats
compute faster. `auto`, by what the CPU itself reports (bench/results.md, "Encoder precision"):

- bf16 where the CPU computes it natively (AVX512_BF16 or AMX): about twice fp32's speed, descriptors within
  about 1% of fp32's. Emulated bf16 on an older CPU is four times slower than fp32, so nowhere else.
- int8 (`model/int8.py`, PyTorch's x86 backend) on other x86 CPUs: 1.1 to 1.7 times fp32's speed, descriptors
  within about 3.3% of fp32's, and the open-set table within its bound of fp32's. Where the CPU has bf16,
  int8 is faster still but flips two to five times as many decisions as bf16 does, so bf16 is kept there.
- fp32 elsewhere: a GPU, or a torch without the x86 backend (an ARM CPU).

The head and the gallery's distances stay fp32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "auto_precision", "cpu_has_bf16", "encoding", "float_precision", "resolve", "x86_int8"]

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

        if torch.device(device).type != "cpu":
            raise ValueError("encoder precision int8 runs on a CPU only (PyTorch's x86 backend); use fp32 on a GPU")
        if not x86_int8():
            raise ValueError("encoder precision int8: this torch has no x86 quantized backend; use auto")
    return precision


def auto_precision(device: torch.device | str = "cpu") -> str:
    """What `auto` takes: bf16 on a CPU that has it, int8 on another x86 CPU, fp32 elsewhere (a GPU keeps the
    format it was measured in)."""
    import torch

    if torch.device(device).type == "cpu" and not cpu_has_bf16() and x86_int8():
        return "int8"
    return float_precision(device)


def float_precision(device: torch.device | str = "cpu") -> str:
    """bf16 on a CPU that has it, fp32 elsewhere: what serves where int8 cannot (no faces to calibrate it on, a
    learner that is not dlib's encoder)."""
    import torch

    return "bf16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "fp32"


def x86_int8() -> bool:
    """Whether this torch has PyTorch's x86 quantized backend (an x86 CPU; not an ARM one)."""
    import torch

    return "x86" in torch.backends.quantized.supported_engines


@contextlib.contextmanager
def encoding(precision: str, device: torch.device) -> Iterator[None]:
    """Run the encoder inside in `precision` (as `resolve` gives it): bf16 autocasts; int8 is its own module."""
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield
