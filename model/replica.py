"""One replica of the classifier service (`python -m model.service`): a Ray Serve deployment answering HTTP.

- `POST /classify` with the photo as the body: the object `python -m model --json` prints for it. 200 for
  an answer with faces or none; 413 when the body is larger than the cap (refused from its Content-Length
  before it is read, or as soon as a chunked body passes it); 422 for every photo the service could not
  answer (unreadable, or it broke something here: the same object, saying why). An answer is never a 500:
  a 500 comes from Ray Serve alone, when a replica died under the request.
  `?threshold=` and `?stranger_distance=` (the frontend's CONFIDENCE_THRESHOLD and STRANGER_DISTANCE)
  decide "sure" and "known" as they would in the frontend's own process; 400 when out of their ranges.
- `POST /examine`: the same object with each face's aligned chip (base64 JPEG, `chips`) and descriptor
  (`descriptors`), for a user's feedback press.
- `POST /why`: the same object with each face's evidence (`evidence`: `FaceEvidence.to_json()`), for a "Why?"
  press; `POST /why?chip=1` with a stored face chip (JPEG) as the body: `{"evidence": ...}`, or 422 saying
  why the chip could not be read. Size cap, statuses and query parameters as for `/classify`.
- `GET /about`: the model's classes and the metadata the training script wrote beside it.

Each replica finds faces in a `FacePool` of its own, as `python -m bot` does in-process, so that a photo
that crashes or hangs dlib costs that photo alone, not its batch or the replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .answers import Examined, PhotoAnswer, is_known, went_wrong
from .decode import DecodeLimits, FileTooLarge, file_too_large
from .environment import MODEL_RANGES, SettingsError
from .faces import FaceOptions
from .resources import DEFAULT_PHOTO_TIMEOUT
from .search import FacePool

__all__ = ["DEPLOYMENT", "Classifier", "answer_each", "decided", "status_of"]

log = logging.getLogger(__name__)

DEPLOYMENT = "Classifier"
# Query parameters of `/classify`, and the settings whose ranges they keep to.
_DECISIONS = {"threshold": "CONFIDENCE_THRESHOLD", "stranger_distance": "STRANGER_DISTANCE"}


def status_of(answer: PhotoAnswer) -> int:
    """The HTTP status an answer is sent with: 200, 413 too large, 422 any other photo that was not answered."""
    if answer.outcome != "error":
        return 200
    return 413 if answer.error_kind == "FileTooLarge" else 422


def decided(answer: PhotoAnswer, threshold: float | None, stranger_distance: float | None) -> PhotoAnswer:
    """`answer` with each face's "sure" and "known" decided as `FaceClassifier` does with these settings.

    None keeps the replica's own decision: the default threshold, the distance the model was trained with.
    """
    faces = []
    for face in answer.faces:
        sure = face.sure if threshold is None else face.confidence >= threshold and face.quality == "ok"
        known = face.known if stranger_distance is None else is_known(face.distance, stranger_distance)
        faces.append(dataclasses.replace(face, sure=sure, known=known))
    return dataclasses.replace(answer, faces=faces)


def answer_each(classifier, photos: Sequence[bytes]) -> list[PhotoAnswer]:
    """Every photo's answer, whatever one of them does: a batch that fails is answered again photo by photo,
    so only a photo that fails alone is answered "something went wrong"."""
    try:
        return classifier.classify_many(photos)
    except Exception:
        if len(photos) == 1:
            log.exception("a photo could not be answered")
            return [went_wrong()]
        log.exception("a batch of %d photos failed; answering them one by one", len(photos))
    return [answer for photo in photos for answer in answer_each(classifier, [photo])]


def _decisions(request: Request) -> dict[str, float | None]:
    """The threshold and stranger distance a request asks for; `SettingsError` when one is out of range."""
    chosen: dict[str, float | None] = {}
    for param, setting in _DECISIONS.items():
        raw = request.query_params.get(param)
        chosen[param] = None if raw is None else MODEL_RANGES[setting].parse(param, raw)
    return chosen


async def _body(request: Request, max_bytes: int) -> bytes | None:
    """The request's body, or None as soon as it passes `max_bytes` (a chunked body declares no length)."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int | None, max_bytes: int) -> JSONResponse:
    if size is None:  # chunked: its length is not known, only that it is past the cap
        megabytes = f"{max_bytes / 2**20:.0f} MB"
        refusal = FileTooLarge(
            f"This file is over {megabytes}; I can take files up to {megabytes}.", max_bytes=max_bytes
        )
    else:
        refusal = file_too_large(size, max_bytes)
    answer = PhotoAnswer("error", error=str(refusal), error_kind="FileTooLarge", details=dict(refusal.details))
    return JSONResponse(answer.to_json(), status_code=413)


# Requests a replica takes in at once; they wait in its own queue of batches. Past this, Ray Serve holds them in
# the proxy and hands each one over only after backing off: measured, a burst of 200 photos on one replica that
# took 64 went through at 33 photos/s until the proxy held the rest, then at 4 photos/s (6.8 photos/s over the
# burst, and photos past the frontend's 30 s timeout sent again); taking 256, at 33 photos/s throughout. Four
# frontends' photos in hand (QUEUE_SIZE, 32 each) fit twice; a photo's bytes are all a waiting request holds.
MAX_ONGOING_REQUESTS = 256


@serve.deployment(name=DEPLOYMENT, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class Classifier:
    """One replica: a `FaceClassifier` loaded from `user_config["model_path"]`, reloaded when it changes."""

    def __init__(
        self,
        max_bytes: int = DecodeLimits.max_bytes,
        torch_threads: int = 1,
        device: str = "cpu",
        face_workers: int = 1,
        photo_timeout: float = DEFAULT_PHOTO_TIMEOUT,
        face_detector: str = "hog",
        encoder_precision: str = "auto",
    ) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        self.device = device
        self.encoder_precision = encoder_precision
        self.limits = DecodeLimits(max_bytes=max_bytes)
        self.classifier = None
        self.meta: dict = {}
        self.loaded: tuple[str, int] | None = None  # the file loaded and its version (its mtime when published)
        self.source: str | None = None  # the model file it is a copy of, as `/about` names it
        self.face_options = FaceOptions(detector=face_detector)
        self.pool: FacePool | None = None
        if face_workers > 0:
            pool = FacePool(face_workers, photo_timeout=photo_timeout)
            # No processes can start here: faces are found in the replica.
            self.pool = pool if pool.start(self.face_options) else None

    def reconfigure(self, config: dict) -> None:
        """Load the model `config` names, unless loaded; called as the replica starts, and between requests when
        Ray updates its configuration in place.

        A file that does not load leaves the replica on the model it serves (the service checks each file
        before rolling it out, so this is a file damaged since); with none yet, the replica cannot start.
        """
        from .serving import FaceClassifier

        path = Path(config["model_path"])
        version = (str(path), int(config.get("version", 0)))
        if version == self.loaded:
            return
        try:
            classifier = FaceClassifier.load(
                path,
                limits=self.limits,
                device=self.device,
                pool=self.pool,
                face_options=self.face_options,
                precision=self.encoder_precision,
            )
        except Exception as e:
            if self.classifier is None:
                raise
            log.error("the model at %s did not load (%s: %s); still serving %s", path, type(e).__name__, e, self.loaded)
            return
        self.classifier, self.loaded = classifier, version
        self.meta = config.get("metadata") or {}
        self.source = config.get("source", str(path))
        log.info("replica serving %s (version %s)", path, version[1])

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.03)
    async def _classify(self, photos: list[bytes]) -> list[PhotoAnswer]:
        classifier = self.classifier  # a reload during this batch does not change its model
        return await asyncio.to_thread(answer_each, classifier, photos)

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        if path.endswith("/about") and request.method == "GET":
            return JSONResponse(self._about())
        examine, why = path.endswith("/examine"), path.endswith("/why")
        if request.method != "POST" or not (examine or why or path.endswith("/classify")):
            return JSONResponse(
                {"error": "POST a photo to /classify, /examine or /why, or GET /about"}, status_code=404
            )
        try:
            decisions = _decisions(request)
        except SettingsError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_bytes:
            return _too_large(int(declared), self.limits.max_bytes)
        if (body := await _body(request, self.limits.max_bytes)) is None:
            return _too_large(None, self.limits.max_bytes)
        if why:
            return await self._why(body, request.query_params.get("chip") == "1", decisions)
        if examine:
            examined = await asyncio.to_thread(self._examine, body)
            examined.answer = decided(examined.answer, **decisions)
            return JSONResponse(examined.to_json(), status_code=status_of(examined.answer))
        answer = decided(await self._classify(body), **decisions)
        return JSONResponse(answer.to_json(), status_code=status_of(answer))

    def _examine(self, body: bytes) -> Examined:
        try:
            return self.classifier.examine(body)
        except Exception:
            log.exception("a photo could not be examined")
            return Examined(went_wrong())

    async def _why(self, body: bytes, chip: bool, decisions: dict[str, float | None]) -> JSONResponse:
        """A photo's answer and its faces' evidence, or one stored chip's evidence; never a 500."""
        from .evidence import Explained, explain_chip_jpeg, explain_photo

        classifier, line = self.classifier, decisions["stranger_distance"]
        if chip:
            try:
                evidence = await asyncio.to_thread(explain_chip_jpeg, classifier, body, line)
            except ValueError as e:
                return JSONResponse({"error": str(e), "error_kind": "NotAChip"}, status_code=422)
            except Exception:
                log.exception("a face chip could not be explained")
                return JSONResponse({"error": went_wrong().error, "error_kind": "Internal"}, status_code=422)
            return JSONResponse({"evidence": evidence.to_json()})
        try:
            explained = await asyncio.to_thread(explain_photo, classifier, body, line)
        except Exception:
            log.exception("a photo could not be explained")
            explained = Explained(went_wrong())
        explained.answer = decided(explained.answer, **decisions)
        return JSONResponse(explained.to_json(), status_code=status_of(explained.answer))

    def _about(self) -> dict:
        classes = list(self.classifier.classes) if self.classifier is not None else []
        return {**self.meta, "classes": classes, "model_path": self.source}

    def __del__(self) -> None:
        # Ray Serve calls this as it stops the replica: its face-finding processes go with it.
        if getattr(self, "pool", None) is not None:
            self.pool.close(grace=1.0)
