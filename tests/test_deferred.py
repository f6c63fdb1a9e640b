"""A serving process answers its first photo without importing TorchDynamo, and what was put off still works."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from model.deferred import StandIn, deferred_imports
from testkit.imagery import jpeg, scene

ROOT = Path(__file__).resolve().parent.parent

FIRST_ANSWER = """
import sys
from model.serving import FaceClassifier
classifier = FaceClassifier.load(sys.argv[1])
answer = classifier.classify(open(sys.argv[2], "rb").read())
print(len(answer.faces), "torch._dynamo" in sys.modules)
roi_align = sys.modules["torchvision.ops.roi_align"]
print(roi_align.is_compile_supported("cpu"), "torch._dynamo" in sys.modules)
import torch._dynamo.utils  # the real module, now that something asks for it
print(type(sys.modules["torch._dynamo.utils"]).__name__, hasattr(torch._dynamo, "optimize"))
"""


def test_first_answer_without_dynamo_and_it_loads_when_used(exported: Path, tmp_path: Path) -> None:
    photo = tmp_path / "one.jpg"
    photo.write_bytes(jpeg(scene(1)))
    done = subprocess.run(
        [sys.executable, "-c", FIRST_ANSWER, str(exported), str(photo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answered, helper, real = done.stdout.split("\n")[:3]
    assert answered == "1 False"  # one face named, TorchDynamo never imported
    assert helper == "True True"  # torchvision's helper answers, from the real module loaded on its first call
    assert real == "module True"


def test_a_stand_in_loads_the_real_module_for_any_other_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    with deferred_imports({"colorsys": ("rgb_to_hsv",)}):
        stand_in = sys.modules["colorsys"]
        assert isinstance(stand_in, StandIn)
        from colorsys import rgb_to_hsv  # as `from module import name` takes it: a deferred call

        assert "colorsys" in sys.modules and sys.modules["colorsys"] is stand_in  # nothing loaded yet
        assert rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
        assert sys.modules["colorsys"] is not stand_in  # the call loaded the real module
        assert round(stand_in.ONE_THIRD, 6) == 0.333333  # any other name: from the real module
    assert isinstance(sys.modules["colorsys"], types.ModuleType)
    assert not isinstance(sys.modules["colorsys"], StandIn)


def test_the_stand_ins_leave_once_the_imports_are_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "doppelbot_never_imported", raising=False)
    with deferred_imports({"doppelbot_never_imported": ("f",)}):
        assert isinstance(sys.modules["doppelbot_never_imported"], StandIn)
    assert "doppelbot_never_imported" not in sys.modules
    # A module already imported is left as it is.
    with deferred_imports({"json": ("loads",)}):
        assert not isinstance(sys.modules["json"], StandIn)
