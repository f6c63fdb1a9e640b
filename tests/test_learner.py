"""The fastai face learner: frozen body at first, fine-tuning, export and load in a fresh process."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import torch

from model.encoder import FaceEncoder
from model.learner import face_learner
from testkit.imagery import face_crop, jpeg
from testkit.processes import run_python


def test_body_is_frozen_at_first_and_the_head_trains(chip_folder) -> None:
    from fastai.vision.all import ImageDataLoaders

    dls = ImageDataLoaders.from_folder(chip_folder, valid_pct=0.25, seed=1, bs=8, num_workers=0)
    learn = face_learner(dls)
    body, head = learn.model
    assert isinstance(body, FaceEncoder)
    assert not any(p.requires_grad for p in body.parameters())
    assert all(p.requires_grad for p in head.parameters())
    body_before = [p.detach().clone() for p in body.parameters()]
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-2)
    assert all(torch.equal(a, b) for a, b in zip(body_before, body.parameters(), strict=True))
    learn.unfreeze()
    assert all(p.requires_grad for p in body.parameters())


def test_trained_head_tells_the_two_faces_apart(trained) -> None:
    with trained.no_bar():
        _, accuracy = trained.validate()
    assert accuracy == 1.0


def run_code(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_python("-c", textwrap.dedent(code), cwd=cwd)


def test_fine_tune_export_from_a_script_and_load_in_a_fresh_process(chip_folder, tmp_path) -> None:
    """fine_tune trains head then body; a script's own callback (in __main__) stays out of the file."""
    photo = tmp_path / "face.jpg"
    photo.write_bytes(jpeg(face_crop(twin=True)))
    trained = run_code(
        f"""
        from fastai.callback.core import Callback
        from fastai.vision.all import ImageDataLoaders, set_seed
        import torch
        from model.encoder import load_face_encoder
        from model.learner import export_learner, face_learner

        class CountBatches(Callback):
            def after_batch(self):
                self.n = getattr(self, "n", 0) + 1

        set_seed(0, reproducible=True)
        dls = ImageDataLoaders.from_folder({str(chip_folder)!r}, valid_pct=0.25, seed=42, bs=4, num_workers=0)
        learn = face_learner(dls, cbs=CountBatches())
        with learn.no_bar(), learn.no_logging():
            learn.fine_tune(1, base_lr=1e-2, freeze_epochs=15)
        export_learner(learn, "export.pkl")
        assert any(type(cb).__name__ == "CountBatches" for cb in learn.cbs)
        pretrained = load_face_encoder()
        tuned = learn.model[0].parameters()
        assert any(not torch.equal(a, b) for a, b in zip(pretrained.parameters(), tuned))
        """,
        tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert b"__main__" not in (tmp_path / "export.pkl").read_bytes()
    loaded = run_code(
        f"""
        import json
        from fastai.learner import load_learner
        from model.serving import FaceClassifier
        learn = load_learner("export.pkl")
        answer = FaceClassifier(learn).classify(open({str(photo)!r}, "rb").read())
        print(json.dumps({{"vocab": list(learn.dls.vocab), "label": answer.faces[0].label}}))
        """,
        tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert result == {"vocab": ["Eileen", "Twin"], "label": "Twin"}


def test_export_refuses_a_learner_that_would_not_load(trained, tmp_path) -> None:
    import pytest

    from model.learner import ExportError, export_learner

    def loss_from_main(out, target):
        return torch.nn.functional.cross_entropy(out, target)

    loss_from_main.__module__ = "__main__"  # as if a training script defined it
    original = trained.loss_func
    trained.loss_func = loss_from_main
    try:
        with pytest.raises(ExportError, match="__main__"):
            export_learner(trained, tmp_path / "bad.pkl")
    finally:
        trained.loss_func = original
    assert not (tmp_path / "bad.pkl").exists()
