"""The face encoder in int8: PyTorch's x86 quantization backend, calibrated on the gallery's own faces.

Post-training static quantization in eager mode: the fused encoder's convolutions run as int8 kernels
(VNNI where the CPU has it; without it, the weights keep 7 bits), each convolution and its ReLU as one,
the residual sums as quantized `add_relu`. Two parts stay float: dlib's zero padding of a down-sampling
block's shortcut (a few small tensors), and the last linear layer (the 128-d descriptor), for which this
torch has no x86 int8 kernel. Activation ranges (plain minimum and maximum) come from calibration chips: the
80 px JPEGs of training faces every gallery keeps (`Gallery.thumbnails`), enlarged back to chip size; measured
on the pins faces, ranges from those moved the descriptors as little as ranges from the real chips (2.3%
against 2.2% of their length).
"""

from __future__ import annotations

import copy
import io
import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QConfig, QuantStub, convert, fuse_modules, prepare
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from .encoder import FaceEncoder
from .resources import CHIP_SIZE

__all__ = [
    "CALIBRATION_CHIPS",
    "QUANTIZED_ENGINE",
    "calibration_chips",
    "cpu_has_vnni",
    "quantized_encoder",
]

QUANTIZED_ENGINE = "x86"
# Plain min/max ranges of 32 chips: on the pins faces they moved the descriptors as far as histograms of 64 did
# (VNNI: 2.3% both; AVX2 alone: 3.3% against 3.2%), and they build in a quarter of the time (AVX2 alone, one
# thread: 1.0 s against 4.3 s), which every start of a model pays.
CALIBRATION_CHIPS = 32


# Weights per output channel, activations over the full 8 bits. Without VNNI, the x86 kernels add pairs of
# uint8 x int8 products in int16, which overflows at full range on both sides: there the weights keep 7 bits
# (on 80 pins faces, an AVX2-only CPU: descriptors moved 13.0% at full range, 3.6% with the backend's default
# of halved activations, 3.2% with halved weights). VNNI sums in int32: full range moved them 2.2%, the
# backend's default 3.7%.
def _qconfig(vnni: bool) -> QConfig:
    """Observers for a CPU with VNNI or without it."""
    weights = PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, reduce_range=not vnni
    )
    return QConfig(activation=MinMaxObserver.with_args(reduce_range=False), weight=weights)


def cpu_has_vnni() -> bool:
    """Whether the CPU has AVX512_VNNI's int8 dot products (as torch reads it from the CPU; the x86 backend's
    VNNI kernels are AVX-512 ones, so an AVX-VNNI CPU counts as without)."""
    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(check()) if check is not None else False


class _Grow(nn.Module):
    """dlib's `add_prev` padding, in float: the operand grown with zeros to the sum's size, then quantized again."""

    def __init__(self) -> None:
        super().__init__()
        self.dequant, self.quant = DeQuantStub(), QuantStub()

    def forward(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        c, h, w = x.shape[1:]
        if [c, h, w] == size:
            return x
        return self.quant(F.pad(self.dequant(x), (0, size[2] - w, 0, size[1] - h, 0, size[0] - c)))


class _Block(nn.Module):
    """A fused `ResBlock` whose sum can run quantized."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.down = block.down
        self.conv1 = nn.Sequential(block.conv1, nn.ReLU())
        self.conv2 = block.conv2
        self.add = FloatFunctional()
        self.grow_block, self.grow_shortcut = _Grow(), _Grow()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if not self.down:
            return self.add.add_relu(y, x)
        shortcut = F.avg_pool2d(x, 2, 2)
        size = [max(a, b) for a, b in zip(y.shape[1:], shortcut.shape[1:], strict=True)]
        return self.add.add_relu(self.grow_block(y, size), self.grow_shortcut(shortcut, size))


class _Int8Encoder(nn.Module):
    def __init__(self, fused: FaceEncoder) -> None:
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.stem = nn.Sequential(fused.stem, nn.ReLU())
        self.blocks = nn.Sequential(*(_Block(b) for b in fused.blocks))
        self.fc = fused.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.stem(self.quant(x.contiguous())), 3, 2)
        x = self.dequant(self.blocks(x))
        return self.fc(x.mean(dim=(2, 3)))


def quantized_encoder(fused: FaceEncoder, chips: Sequence[np.ndarray]) -> nn.Module:
    """An int8 copy of a fused encoder (`FaceEncoder.fused`), its ranges calibrated on `chips` (uint8, 150x150x3).

    It takes what the fused encoder takes (float NCHW in [0, 1]) and gives float (N, 128) descriptors.
    """
    if fused.input_scaled:
        raise ValueError("quantize the fused encoder (FaceEncoder.fused), whose input scaling is in its stem")
    if not len(chips):
        raise ValueError("int8 needs calibration chips")
    # Process-wide, and the only quantized engine this project uses.
    torch.backends.quantized.engine = QUANTIZED_ENGINE
    model = _Int8Encoder(copy.deepcopy(fused)).eval()
    pairs = [["stem.0", "stem.1"]] + [[f"blocks.{i}.conv1.0", f"blocks.{i}.conv1.1"] for i in range(len(model.blocks))]
    fuse_modules(model, pairs, inplace=True)
    model.qconfig = _qconfig(cpu_has_vnni())
    model.fc.qconfig = None  # no x86 int8 linear kernel here; it is one small layer
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255.0)
    with warnings.catch_warnings():
        # torch 2.14 deprecates torch.ao's quantization and quantized tensors (torchao takes over), and a
        # padding stub whose operand never needs growing has no range to compute: none concerns a user.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        prepare(model, inplace=True)
        with torch.inference_mode():
            for start in range(0, len(x), 32):
                model(x[start : start + 32])
        convert(model, inplace=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def calibration_chips(gallery: object, limit: int = CALIBRATION_CHIPS, seed: int = 0) -> list[np.ndarray]:
    """Up to `limit` of the gallery's face thumbnails, enlarged to chips: the classes take turns, so that one with
    few faces leaves the rest of its share to the others."""
    from PIL import Image

    thumbnails: dict = getattr(gallery, "thumbnails", None) or {}
    rng = np.random.default_rng(seed)
    shuffled = [
        [faces[i] for i in rng.permutation(len(faces))] for v in thumbnails.values() if (faces := [t for t in v if t])
    ]
    chosen = [face for turn in itertools.zip_longest(*shuffled) for face in turn if face is not None]
    chips = []
    for jpeg in chosen[:limit]:
        with Image.open(io.BytesIO(jpeg)) as im:
            chip = im.convert("RGB").resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.BICUBIC)
        chips.append(np.asarray(chip, dtype=np.uint8))
    return chips
