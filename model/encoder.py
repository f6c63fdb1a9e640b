"""dlib's face recognition ResNet re-built as a PyTorch module, with its weights read from dlib's file.

The layout follows dlib's `dnn_face_recognition_ex.cpp` network ("anet_type"); the details that
make the numbers match dlib's (padding, the shortcut addition) are in
`../shared/notes/face-encoder-verified.md`.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .dlib_dat import EncoderWeights, read_face_encoder_dat
from .resources import CHIP_SIZE, cache_atomically, default_cache_dir, face_encoder_dat_path

__all__ = [
    "CHIP_SIZE",
    "DESCRIPTOR_SIZE",
    "ChannelAffine",
    "FaceEncoder",
    "ResBlock",
    "default_cache_dir",
    "load_face_encoder",
]

DESCRIPTOR_SIZE = 128
# (channels, number of blocks, first block down-samples) for dlib's levels 4 to 0.
_LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class ChannelAffine(nn.Module):
    """dlib's `affine` layer: batch norm frozen into a per-channel scale and shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


def _add_like_dlib(block: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """dlib's `add_prev`: the sum takes the larger size in every dim, missing parts count as zero."""
    target = [max(a, b) for a, b in zip(block.shape[1:], shortcut.shape[1:], strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        if [c, h, w] == target:
            return t
        return F.pad(t, (0, target[2] - w, 0, target[1] - h, 0, target[0] - c))

    return grow(block) + grow(shortcut)


class ResBlock(nn.Module):
    """A residual block; a down-sampling one halves the size and averages its input for the shortcut."""

    def __init__(self, n_in: int, n_out: int, down: bool) -> None:
        super().__init__()
        stride = 2 if down else 1
        # dlib pads a convolution only when its stride is 1.
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=0 if down else 1)
        self.aff1 = ChannelAffine(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, padding=1)
        self.aff2 = ChannelAffine(n_out)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.aff1(self.conv1(x)))
        y = self.aff2(self.conv2(y))
        if self.down:
            return F.relu(_add_like_dlib(y, F.avg_pool2d(x, 2, 2)))
        return F.relu(y + x)


class FaceEncoder(nn.Module):
    """150x150 aligned face chips (fastai's float images in [0, 1], NCHW) to 128-d descriptors."""

    # False once the input scaling is folded into the stem (`fused`). A class attribute, so that
    # encoders pickled before it existed (in older exports) read it too.
    input_scaled: bool = True

    def __init__(self, input_mean: tuple[float, float, float] = (122.782, 117.001, 104.298)) -> None:
        super().__init__()
        # dlib feeds (pixel - mean) / 256 with pixels in 0..255; fastai gives pixel / 255.
        mean = torch.tensor(input_mean, dtype=torch.float32)
        self.register_buffer("input_scale", torch.tensor(255.0 / 256.0))
        self.register_buffer("input_shift", (mean / 256.0)[None, :, None, None])
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_aff = ChannelAffine(32)
        blocks, n_in = [], 32
        for n_out, count, first_down in _LEVELS:
            for i in range(count):
                blocks.append(ResBlock(n_in, n_out, down=first_down and i == 0))
                n_in = n_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scaled:
            x = x * self.input_scale - self.input_shift
        x = F.relu(self.stem_aff(self.stem(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    def fused(self) -> FaceEncoder:
        """A copy for inference with every affine layer and the input scaling folded into the convolutions.

        The same function to float rounding (about 1e-6), with fewer passes over the activations.
        Folding the input shift into the stem is exact because dlib's stem convolution has no padding.
        """
        fused = copy.deepcopy(self).eval()
        with torch.no_grad():
            stem = fused.stem
            stem.bias.sub_((stem.weight * fused.input_shift.view(1, -1, 1, 1)).sum((1, 2, 3)))
            stem.weight.mul_(fused.input_scale)
            fused.input_scale.fill_(1.0)
            fused.input_shift.zero_()
            fused.input_scaled = False  # two passes over the input saved
            pairs = [(fused, "stem", "stem_aff")] + [
                (b, conv, aff) for b in fused.blocks for conv, aff in (("conv1", "aff1"), ("conv2", "aff2"))
            ]
            for owner, conv_name, aff_name in pairs:
                conv, aff = getattr(owner, conv_name), getattr(owner, aff_name)
                conv.weight.mul_(aff.weight[:, None, None, None])
                conv.bias.mul_(aff.weight).add_(aff.bias)
                setattr(owner, aff_name, nn.Identity())
        for p in fused.parameters():
            p.requires_grad_(False)
        return fused

    def load_dlib_weights(self, weights: EncoderWeights) -> None:
        """Copy the parameters read from dlib's file into this module."""
        convs = [self.stem] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
        affines = [self.stem_aff] + [a for b in self.blocks for a in (b.aff1, b.aff2)]
        if len(convs) != len(weights.conv_weights) or len(affines) != len(weights.affine_gammas):
            raise ValueError("the weights do not fit this network's layers")
        with torch.no_grad():
            for conv, w, b in zip(convs, weights.conv_weights, weights.conv_biases, strict=True):
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
            for aff, g, b in zip(affines, weights.affine_gammas, weights.affine_betas, strict=True):
                aff.weight.copy_(torch.from_numpy(g))
                aff.bias.copy_(torch.from_numpy(b))
            self.fc.weight.copy_(torch.from_numpy(weights.fc_weight))
            mean = torch.tensor(weights.input_mean, dtype=torch.float32)
            self.input_shift.copy_((mean / 256.0)[None, :, None, None])


def _cache_name(dat_path: Path) -> str:
    stat = dat_path.stat()
    key = f"{dat_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return f"face_encoder_{hashlib.sha256(key).hexdigest()[:16]}.pt"


def load_face_encoder(dat_path: str | Path | None = None, cache_dir: str | Path | None = None) -> FaceEncoder:
    """dlib's pretrained encoder as a `FaceEncoder`, converted from the `.dat` once and cached."""
    dat_path = Path(dat_path) if dat_path else face_encoder_dat_path()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache_dir / _cache_name(dat_path)
    encoder = FaceEncoder()
    if cached.is_file():
        try:
            encoder.load_state_dict(torch.load(cached, weights_only=True))
            return encoder
        except Exception:
            pass
    encoder.load_dlib_weights(read_face_encoder_dat(dat_path))
    cache_atomically(cached, lambda partial: torch.save(encoder.state_dict(), partial))
    return encoder
