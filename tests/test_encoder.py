"""Our PyTorch rebuild of dlib's face encoder gives dlib's own descriptors."""

from __future__ import annotations

import dlib
import numpy as np
import pytest
import torch

from model.decode import decode_image
from model.dlib_dat import DatFormatError, read_face_encoder_dat
from model.encoder import load_face_encoder
from model.resources import face_encoder_dat_path
from testkit.imagery import astronaut, face_crop, make_twin


def encode(encoder, chips: list[np.ndarray]) -> np.ndarray:
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        return encoder.eval()(x).numpy()


def test_descriptors_equal_dlibs_on_real_and_random_chips(finder) -> None:
    from testkit.imagery import jpeg

    photo = decode_image(jpeg(astronaut(), 95))
    real = [f.chip for f in finder.find(photo).faces]
    twin = [f.chip for f in finder.find(decode_image(jpeg(make_twin(astronaut()), 95))).faces]
    rng = np.random.default_rng(7)
    noise = [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(12)]
    plain = [np.zeros((150, 150, 3), np.uint8), np.full((150, 150, 3), 255, np.uint8)]
    ramp = np.broadcast_to(np.linspace(0, 255, 150, dtype=np.uint8)[None, :, None], (150, 150, 3)).copy()
    chips = real + twin + noise + plain + [ramp]
    assert len(chips) >= 16 and real
    dlib_encoder = dlib.face_recognition_model_v1(str(face_encoder_dat_path()))
    expected = np.array([dlib_encoder.compute_face_descriptor(c) for c in chips])
    ours = encode(load_face_encoder(), chips)
    assert ours.shape == (len(chips), 128)
    assert np.abs(ours - expected).max() < 1e-4


def test_same_face_is_near_and_another_is_far(finder) -> None:
    from testkit.imagery import jpeg

    chips = [finder.find(decode_image(jpeg(im))).faces[0].chip for im in (face_crop(), face_crop(True))]
    flipped = chips[0][:, ::-1].copy()
    a, b, mirror = encode(load_face_encoder(), [chips[0], chips[1], flipped])
    assert np.linalg.norm(a - mirror) < np.linalg.norm(a - b)


def test_weights_are_converted_once_then_read_from_cache(tmp_path, monkeypatch) -> None:
    first = load_face_encoder(cache_dir=tmp_path)
    assert len(list(tmp_path.glob("face_encoder_*.pt"))) == 1

    def no_parsing(path):
        raise AssertionError("the .dat file was parsed again")

    monkeypatch.setattr("model.encoder.read_face_encoder_dat", no_parsing)
    second = load_face_encoder(cache_dir=tmp_path)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_damaged_cache_is_rebuilt(tmp_path) -> None:
    load_face_encoder(cache_dir=tmp_path)
    (cached,) = tmp_path.glob("face_encoder_*.pt")
    cached.write_bytes(b"not a checkpoint")
    encoder = load_face_encoder(cache_dir=tmp_path)
    reference = read_face_encoder_dat(face_encoder_dat_path())
    assert np.array_equal(encoder.fc.weight.detach().numpy(), reference.fc_weight)


def test_reader_refuses_other_files(tmp_path) -> None:
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x05hello" + bytes(40))
    with pytest.raises(DatFormatError):
        read_face_encoder_dat(other)
    truncated = tmp_path / "cut.dat"
    truncated.write_bytes(face_encoder_dat_path().read_bytes()[:100_000])
    with pytest.raises(DatFormatError, match="ends early"):
        read_face_encoder_dat(truncated)
