"""Our own reader for dlib's serialised face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`).

dlib writes its networks with its own portable encoding (see dlib's `serialize.h` and
`dnn/layers.h`). Only the parameter tensors matter for inference; everything else is read and
checked so a different file fails loudly instead of loading garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DatFormatError", "EncoderWeights", "read_face_encoder_dat"]

_INPUT_LAYER = "input_rgb_image_sized"
_LOSS_LAYER = "loss_metric_2"


class DatFormatError(ValueError):
    """The file is not the dlib face encoder layout this reader knows."""


@dataclass
class EncoderWeights:
    """The parameters of dlib's face encoder, in forward order (input to output)."""

    input_mean: tuple[float, float, float]
    conv_weights: list[np.ndarray] = field(default_factory=list)  # [out, in, kh, kw]
    conv_biases: list[np.ndarray] = field(default_factory=list)  # [out]
    conv_strides: list[int] = field(default_factory=list)
    affine_gammas: list[np.ndarray] = field(default_factory=list)  # [C]
    affine_betas: list[np.ndarray] = field(default_factory=list)  # [C]
    fc_weight: np.ndarray | None = None  # [128, 256], PyTorch Linear layout
    layer_kinds: list[str] = field(default_factory=list)


class _Stream:
    """Sequential reader of dlib's encodings over one bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DatFormatError(f"file ends early at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DatFormatError(f"bad integer control byte {control:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise DatFormatError(f"bad bool {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def double(self) -> float:
        mantissa, exponent = self.int(), self.int()
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        return special[exponent] if exponent in special else float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape)

    def alias_tensor(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))

    def expect_int(self, wanted: int, what: str) -> None:
        got = self.int()
        if got != wanted:
            raise DatFormatError(f"{what}: expected {wanted}, found {got} at byte {self.pos}")


def _read_con(s: _Stream, w: EncoderWeights) -> None:
    params = s.tensor().reshape(-1)
    n_out, kh, kw, stride_y, stride_x, _pad_y, _pad_x = (s.int() for _ in range(7))
    filters_shape = s.alias_tensor()
    s.alias_tensor()  # the biases' shape: (1, n_out, 1, 1)
    for _ in range(4):  # learning-rate and weight-decay multipliers: training-time only
        s.double()
    n_in = filters_shape[1]
    if filters_shape != (n_out, n_in, kh, kw) or params.size != n_out * n_in * kh * kw + n_out:
        raise DatFormatError(f"convolution shape {filters_shape} does not match its parameters")
    if stride_y != stride_x:
        raise DatFormatError("convolutions with unequal strides are not supported")
    n_weights = n_out * n_in * kh * kw
    w.conv_weights.append(params[:n_weights].reshape(n_out, n_in, kh, kw).copy())
    w.conv_biases.append(params[n_weights:].copy())
    w.conv_strides.append(stride_y)


def _read_affine(s: _Stream, w: EncoderWeights) -> None:
    params = s.tensor().reshape(-1)
    s.alias_tensor()
    s.alias_tensor()
    s.expect_int(0, "affine mode (per channel)")
    channels = params.size // 2
    w.affine_gammas.append(params[:channels].copy())
    w.affine_betas.append(params[channels:].copy())


def _read_pool(s: _Stream, w: EncoderWeights) -> None:
    for _ in range(6):  # nr, nc, stride_y, stride_x, pad_y, pad_x: fixed by the architecture
        s.int()


def _read_fc(s: _Stream, w: EncoderWeights) -> None:
    n_out, n_in = s.int(), s.int()
    params = s.tensor().reshape(-1)
    s.alias_tensor()  # the weights' shape
    s.alias_tensor()  # the biases' shape, empty
    s.expect_int(1, "fc bias mode (no bias)")
    for _ in range(4):
        s.double()
    if params.size != n_in * n_out:
        raise DatFormatError("fc parameters do not match its shape")
    # dlib stores W[in][out] and computes x·W; PyTorch's Linear wants [out, in].
    w.fc_weight = params.reshape(n_in, n_out).T.copy()


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda s, w: None,
    "add_prev_": lambda s, w: None,
    "avg_pool_2": _read_pool,
    "max_pool_2": _read_pool,
    "fc_2": _read_fc,
}


def _read_trailer(s: _Stream) -> None:
    for _ in range(3):
        s.bool()
    for _ in range(3):  # gradients and cached outputs, saved empty
        s.tensor()


def read_face_encoder_dat(path: str | Path) -> EncoderWeights:
    """Read the parameter tensors of dlib's face encoder from its `.dat` file."""
    s = _Stream(Path(path).read_bytes())
    s.expect_int(1, "loss layer version")
    if (name := s.string()) != _LOSS_LAYER:
        raise DatFormatError(f"expected a {_LOSS_LAYER} network, found {name!r}")
    s.double(), s.double()  # margin and distance threshold of the training loss
    # One version int per nested layer, outermost first; the innermost (3) holds the input.
    while (version := s.int()) != 3:
        if version not in (1, 2):
            raise DatFormatError(f"unexpected layer version {version} at byte {s.pos}")
    if (name := s.string()) != _INPUT_LAYER:
        raise DatFormatError(f"expected input layer {_INPUT_LAYER}, found {name!r}")
    mean = (s.double(), s.double(), s.double())
    if (s.int(), s.int()) != (150, 150):
        raise DatFormatError("the encoder input is not 150x150")
    weights = EncoderWeights(input_mean=mean)
    first = True
    while s.pos < len(s.data):
        kind = s.string()
        reader = _LAYER_READERS.get(kind)
        if reader is None:
            raise DatFormatError(f"unknown layer {kind!r} at byte {s.pos}")
        reader(s, weights)
        weights.layer_kinds.append(kind)
        _read_trailer(s)
        if first:  # the layer holding the input also saves its sample expansion factor
            s.expect_int(1, "sample expansion factor")
            first = False
    return weights
