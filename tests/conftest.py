"""Shared fixtures: a face finder, and a small face learner trained and exported once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.decode import decode_image
from model.faces import FaceFinder
from testkit.imagery import CLASSES, jpeg, varied_photo

# The head needs about 100 steps on these 30 training chips to be sure of every face.
HEAD_EPOCHS = 15


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted encoder weights go to a temporary cache, not the developer's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DOPPELBOT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_developer_feedback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's own feedback (data/feedback.sqlite3, or FEEDBACK_DB in .env) never reaches a test: what
    trains in-process, and every process a test starts, read a database of the test's own that does not exist."""
    monkeypatch.setenv("FEEDBACK_DB", f"sqlite:///{tmp_path / 'no-feedback.sqlite3'}")


@pytest.fixture(scope="session")
def finder() -> FaceFinder:
    return FaceFinder()


def training_chips(finder: FaceFinder, per_class: int = 20, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Face chips of the astronaut and her twin, from rotated, scaled, re-compressed photos."""
    rng = np.random.default_rng(seed)
    chips: dict[str, list[np.ndarray]] = {c: [] for c in CLASSES}
    for cls, twin in zip(CLASSES, (False, True), strict=True):
        for _ in range(per_class):
            im = varied_photo(rng, twin)
            faces = finder.find(decode_image(jpeg(im, int(rng.integers(60, 95))))).faces
            # The surest face: dlib also sees a weak face in her suit's mission patch.
            chips[cls].append(max(faces, key=lambda f: f.score).chip)
    return chips


@pytest.fixture(scope="session")
def chip_folder(finder: FaceFinder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one sub-folder of face chips per class, as the training script writes."""
    root = tmp_path_factory.mktemp("chips")
    for cls, chips in training_chips(finder).items():
        (root / cls).mkdir()
        for i, chip in enumerate(chips):
            Image.fromarray(chip).save(root / cls / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def trained(chip_folder: Path):
    """A face learner whose head is trained on the chip folder (about five seconds on two cores)."""
    from fastai.vision.all import ImageDataLoaders, set_seed

    from model.learner import face_learner

    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_folder(chip_folder, valid_pct=0.25, seed=42, bs=4, num_workers=0)
    learn = face_learner(dls)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(HEAD_EPOCHS, 1e-2)
    return learn


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained learner with its gallery of known faces, exported as the training script does."""
    from model.learner import export_learner
    from training.strangers import fit_gallery

    fit_gallery(trained)
    return export_learner(trained, tmp_path_factory.mktemp("model") / "export.pkl")


@pytest.fixture(scope="session")
def classifier(exported: Path):
    from model.serving import FaceClassifier

    return FaceClassifier.load(exported)


@pytest.fixture(scope="session")
def worker(classifier):
    """The real inference worker on the session's model."""
    from bot.worker import InferenceWorker

    worker = InferenceWorker(classifier)
    yield worker
    worker.close(timeout=30)


@pytest.fixture
def core(worker):
    """A chat core on the real worker, with a rate limit no test reaches by accident."""
    from bot.core import ChatCore, RateLimiter

    return ChatCore(worker, RateLimiter(1000))


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright: one per test module (the web page's and the review page's)."""
    from playwright.sync_api import sync_playwright

    from testkit.webpage import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies, no storage) and its page, 1200 x 760."""
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    yield context.new_page()
    context.close()
