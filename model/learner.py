"""A fastai learner whose body is dlib's face encoder, and a safe way to export it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.torch_core import params
from fastai.vision.learner import create_head
from torch import nn

from .encoder import DESCRIPTOR_SIZE, FaceEncoder, load_face_encoder

__all__ = ["ExportError", "export_learner", "face_learner", "face_model", "face_splitter"]


class ExportError(RuntimeError):
    """The learner would not load in another process."""


def face_model(n_out: int, pretrained: bool = True, ps: float = 0.25) -> nn.Sequential:
    """`Sequential(encoder body, fastai head)`: chips to 128-d descriptors to class scores."""
    body = load_face_encoder() if pretrained else FaceEncoder()
    head = create_head(DESCRIPTOR_SIZE, n_out, lin_ftrs=[], ps=ps, pool=False)
    return nn.Sequential(body, head)


def face_splitter(model: nn.Module) -> list:
    """Two parameter groups, body and head, so `freeze` trains the head alone."""
    return [params(model[0]), params(model[1])]


def face_learner(
    dls,
    n_out: int | None = None,
    pretrained: bool = True,
    ps: float = 0.25,
    loss_func=None,
    metrics=accuracy,
    **kwargs,
) -> Learner:
    """A `Learner` on 150x150 face chips with dlib's encoder as its body, frozen at first."""
    n_out = n_out if n_out is not None else dls.c
    learn = Learner(
        dls,
        face_model(n_out, pretrained=pretrained, ps=ps),
        loss_func=loss_func if loss_func is not None else CrossEntropyLossFlat(),
        metrics=metrics,
        splitter=face_splitter,
        **kwargs,
    )
    if pretrained:
        learn.freeze()
    return learn


def _pickle_mentions_main(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("data.pkl") and b"__main__" in archive.read(name) for name in archive.namelist())


def export_learner(learn: Learner, path: str | Path) -> Path:
    """`learn.export(path)` without the callbacks a script defined in `__main__`.

    fastai pickles with cloudpickle, which stores `__main__` classes by value; such a file loads
    only beside that script, or not at all. Those callbacks are training-time helpers, so they are
    left out of the file and put back on the learner afterwards.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    from_main = [cb for cb in learn.cbs if type(cb).__module__ == "__main__"]
    learn.remove_cbs(from_main)
    try:
        learn.export(path)
    finally:
        learn.add_cbs(from_main)
    if _pickle_mentions_main(path):
        path.unlink()
        raise ExportError(
            "The learner holds objects defined in __main__ (a loss, metric, splitter or label "
            "function); move them into an importable module before exporting."
        )
    return path
