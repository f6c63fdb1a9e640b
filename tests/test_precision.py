"""The encoder's number format: bf16 only where the CPU says it computes it, and the same answers as fp32."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bot.settings import SettingsError, load_settings
from model import precision
from model.decode import decode_image
from model.serving import FaceClassifier
from testkit.imagery import jpeg, scene


def test_auto_takes_bf16_where_the_cpu_has_it_and_int8_on_another_x86_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "x86_int8", lambda: True)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve("auto") == "int8"
    monkeypatch.setattr(precision, "x86_int8", lambda: False)  # an ARM CPU: no x86 backend
    assert precision.resolve("auto") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve("auto") == "bf16"
    monkeypatch.setattr(precision, "x86_int8", lambda: True)
    assert precision.resolve("auto") == "bf16"  # where both run, bf16 flips fewer decisions
    assert precision.resolve("auto", "cuda") == "fp32"  # a GPU keeps the format it was measured in
    assert precision.resolve("fp32") == "fp32" and precision.resolve("bf16") == "bf16"
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16"):
        precision.resolve("fp8")


def test_the_cpus_own_word_on_bf16_agrees_with_its_flags() -> None:
    """torch asks the CPU (cpuid); Linux lists the same flags in /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system to compare with")
    flags = set(cpuinfo.read_text().split())
    assert precision.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_bf16_answers_the_same_faces_with_descriptors_within_two_percent(exported: Path) -> None:
    fp32 = FaceClassifier.load(exported, precision="fp32")
    bf16 = FaceClassifier.load(exported, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    photo = jpeg(scene(4, twins=(True, False, False, True)))
    said = [(f.label, f.known, f.sure) for f in bf16.classify(photo).faces]
    assert said == [(f.label, f.known, f.sure) for f in fp32.classify(photo).faces]
    examined32, examined16 = fp32.examine(photo), bf16.examine(photo)
    a, b = np.asarray(examined32.descriptors), np.asarray(examined16.descriptors)
    moved = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    assert len(a) == 4
    assert moved.max() < 0.02, moved
    assert moved.max() > 0  # bf16 did run: the descriptors are not fp32's bit for bit


def test_encoder_precision_is_a_setting(tmp_path: Path) -> None:
    base = {"WEB_PORT": "8080", "MODEL_PATH": str(tmp_path / "export.pkl")}
    assert load_settings(base).encoder_precision == "auto"
    assert load_settings({**base, "ENCODER_PRECISION": "BF16"}).encoder_precision == "bf16"
    with pytest.raises(SettingsError, match="ENCODER_PRECISION='int4'"):
        load_settings({**base, "ENCODER_PRECISION": "int4"})


def test_int8_answers_the_same_faces_with_descriptors_within_six_percent(exported: Path) -> None:
    """int8 calibrated on the gallery's faces: the same names, decisions and sureness as fp32 on four faces."""
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    fp32 = FaceClassifier.load(exported, precision="fp32")
    int8 = FaceClassifier.load(exported, precision="int8")
    assert int8.precision == "int8"
    encoder = int8._stages[0][1]
    assert any(isinstance(m, QuantizedConv2d) for m in encoder.modules())  # int8 kernels, not float convs
    photo = jpeg(scene(4, twins=(True, False, False, True)))
    said = [(f.label, f.known, f.sure) for f in int8.classify(photo).faces]
    assert said == [(f.label, f.known, f.sure) for f in fp32.classify(photo).faces]
    a, b = np.asarray(fp32.examine(photo).descriptors), np.asarray(int8.examine(photo).descriptors)
    moved = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    assert len(a) == 4
    assert 0 < moved.max() < 0.06, moved


def test_int8_without_faces_to_calibrate_on_serves_what_auto_gives(
    trained, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from training.strangers import fit_gallery

    fit_gallery(trained)
    monkeypatch.setattr(trained.gallery, "thumbnails", {})  # as a gallery exported before thumbnails
    fallback = FaceClassifier(trained, precision="int8")
    assert fallback.precision == precision.float_precision() != "int8"
    assert "keeps no faces to calibrate int8 on" in caplog.text
    assert fallback.classify(jpeg(scene(1))).faces


def test_int8_is_for_a_cpu_and_a_setting(tmp_path: Path) -> None:
    assert precision.resolve("int8") == "int8"
    with pytest.raises(ValueError, match="int8 runs on a CPU only"):
        precision.resolve("int8", "cuda")
    base = {"WEB_PORT": "8080", "MODEL_PATH": str(tmp_path / "export.pkl")}
    assert load_settings({**base, "ENCODER_PRECISION": "INT8"}).encoder_precision == "int8"


def test_int8_keeps_its_weights_to_seven_bits_on_a_cpu_without_vnni(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without VNNI, x86's int8 kernels sum pairs of products in int16: full-range weights would overflow it."""
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    from model import int8

    largest = {}
    for vnni in (False, True):
        monkeypatch.setattr(int8, "cpu_has_vnni", lambda vnni=vnni: vnni)
        encoder = FaceClassifier.load(exported, precision="int8")._stages[0][1]
        convs = [m for m in encoder.modules() if isinstance(m, QuantizedConv2d)]
        largest[vnni] = max(int(m.weight().int_repr().abs().max()) for m in convs)
    assert 60 <= largest[False] <= 64, largest
    assert largest[True] >= 120, largest


def test_the_cpus_own_word_on_vnni_agrees_with_its_flags() -> None:
    from model.int8 import cpu_has_vnni

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system to compare with")
    assert cpu_has_vnni() == ("avx512_vnni" in set(cpuinfo.read_text().split()))


def test_int8_calibrates_on_every_class_and_a_class_with_few_faces_leaves_its_share_to_the_others() -> None:
    import io
    from types import SimpleNamespace

    from PIL import Image

    from model.int8 import calibration_chips

    def thumbnail(shade: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (80, 80), (shade, shade, shade)).save(out, "JPEG", quality=95)
        return out.getvalue()

    gallery = SimpleNamespace(thumbnails={"Eileen": [thumbnail(40)] * 3 + [b""], "Twin": [thumbnail(200)] * 40})
    chips = calibration_chips(gallery, limit=12)
    assert len(chips) == 12 and all(c.shape == (150, 150, 3) for c in chips)
    shades = sorted(int(c.mean() > 120) for c in chips)
    assert shades == [0] * 3 + [1] * 9  # all three of Eileen's, and Twin the rest
    assert calibration_chips(SimpleNamespace(thumbnails={})) == []


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "int8"])
def test_a_lone_faces_mirror_encoded_beside_its_chip_gives_the_descriptors_of_one_batch(
    exported: Path, finder, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """The answer to a photo of one face does not depend on which core encoded its mirror image."""
    from model import serving

    classifier = FaceClassifier.load(exported, precision=fmt)
    encoded_on: list[str] = []
    classifier._stages[0][1].register_forward_hook(lambda *_: encoded_on.append(threading.current_thread().name))
    # The bot's set-up (TORCH_THREADS=1) with a second core, as CI's machine has.
    monkeypatch.setattr(serving, "_cores", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    chips = [face.chip for face in finder.find(decode_image(jpeg(scene(3, twins=(False, True, False))))).faces]
    encoded_on.clear()
    apart = classifier.describe(chips[:1])
    assert sorted(name.startswith("mirrors") for name in encoded_on) == [False, True], encoded_on
    with monkeypatch.context() as whole:
        whole.setattr(serving, "MIRRORS_APART_UP_TO", 0)
        encoded_on.clear()
        together = classifier.describe(chips[:1])
        assert len(encoded_on) == 1 and not encoded_on[0].startswith("mirrors")
    np.testing.assert_allclose(apart[1], together[1], atol=2e-3 if fmt == "bf16" else 1e-5)
    np.testing.assert_allclose(apart[0], together[0], atol=1e-4)
    encoded_on.clear()
    classifier.describe(chips[:2])  # two faces: one batch, as for a run of photos in a burst
    assert len(encoded_on) == 1, encoded_on
