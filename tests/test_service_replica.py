"""A replica of the classifier service, without Ray: every photo gets an answer and a status, whatever another
photo of its batch does (the replica in Ray: tests/test_service.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from model.answers import PhotoAnswer
from model.replica import answer_each, status_of
from testkit.imagery import jpeg, scene
from testkit.processes import free_port

BREAKS = jpeg(scene(1, width=1001))  # the photo that breaks any batch it is in


class BreaksOnOne:
    """The real classifier, except that a batch holding `BREAKS` fails as a whole (as a library error in the
    batched forward pass would)."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.calls: list[int] = []

    def classify_many(self, photos: Sequence[bytes]) -> list[PhotoAnswer]:
        self.calls.append(len(photos))
        if BREAKS in photos:
            raise RuntimeError("the batch broke")
        return self.classifier.classify_many(photos)


def test_a_photo_that_breaks_its_batch_fails_alone(classifier) -> None:
    breaking = BreaksOnOne(classifier)
    eileen, twin = jpeg(scene(1)), jpeg(scene(1, twins=(True,)))
    answers = answer_each(breaking, [eileen, BREAKS, twin])
    assert [a.faces[0].label if a.faces else a.error_kind for a in answers] == ["Eileen", "Internal", "Twin"]
    assert answers[1].error == "Something went wrong reading this photo."
    assert breaking.calls == [3, 1, 1, 1]  # the batch, then each photo alone


def test_a_photo_the_service_could_not_answer_is_a_422_never_a_500() -> None:
    for kind in ("NotAnImage", "TruncatedImage", "Internal", "PhotoCrashed", "PhotoTimeout"):
        assert status_of(PhotoAnswer("error", error="...", error_kind=kind)) == 422, kind
    assert status_of(PhotoAnswer("error", error="...", error_kind="FileTooLarge")) == 413
    assert status_of(PhotoAnswer("no_face")) == 200


class ReplicaOverHttp:
    """One replica's request handler (the class Ray Serve deploys), served by uvicorn on 127.0.0.1 without Ray."""

    def __init__(self, classifier, max_bytes: int) -> None:
        import torch
        import uvicorn

        from model.replica import Classifier

        self.replica = Classifier.func_or_class(max_bytes, torch.get_num_threads(), face_workers=0)
        self.replica.classifier = classifier
        self.url = f"http://127.0.0.1:{free_port()}"
        config = uvicorn.Config(
            self._app, port=int(self.url.rsplit(":", 1)[1]), lifespan="off", log_level="warning", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def _app(self, scope, receive, send) -> None:
        from starlette.requests import Request

        response = await self.replica(Request(scope, receive))
        await response(scope, receive, send)

    def __enter__(self) -> ReplicaOverHttp:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the replica's server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_why_over_http_gives_the_evidence_in_process_gives_with_the_frontends_line(classifier) -> None:
    from bot.remote import RemoteClassifier
    from bot.worker import Busy
    from model.evidence import explain_photo

    photo = jpeg(scene(2, twins=(False, True)))
    chip = classifier.examine(photo).chips[1]

    async def ask(url: str) -> tuple:
        remote, strict = RemoteClassifier(url), RemoteClassifier(url, stranger_distance=0.0001)
        try:
            said = await remote.why(photo), await strict.why(photo), await remote.why_chip(chip)
            with pytest.raises(ValueError):
                await remote.why_chip(b"not a chip")
            return (*said, await remote.why(bytes(3 * 2**20)))
        finally:
            await remote.aclose()
            await strict.aclose()

    with ReplicaOverHttp(classifier, max_bytes=2 * 2**20) as service:
        explained, strict, evidence, too_large = asyncio.run(ask(service.url))
    here = explain_photo(classifier, photo)
    assert [(e.label, e.text, e.picture) for e in explained.evidence] == [
        (e.label, e.text, e.picture) for e in here.evidence
    ]
    assert [f.label for f in explained.answer.faces] == ["Eileen", "Twin"] and explained.evidence[1].known
    assert not any(f.known for f in strict.answer.faces) and strict.evidence[0].text.startswith("Far from both")
    assert evidence.label == "Twin" and evidence.picture[:2] == b"\xff\xd8"
    assert too_large.answer.error_kind == "FileTooLarge" and too_large.evidence == []
    with pytest.raises(Busy):  # nothing listens there any more
        asyncio.run(ask(service.url))


def test_a_replica_takes_in_every_photo_four_frontends_hold_so_none_waits_in_rays_proxy() -> None:
    """Photos past a replica's `max_ongoing_requests` wait in Ray Serve's proxy, which hands them over one by one
    after backing off (a burst then crawled at 4 photos/s, and photos ran into the frontend's timeout)."""
    from bot.settings import Settings
    from model.replica import Classifier

    assert Classifier.max_ongoing_requests >= 4 * Settings().queue_size
    assert Classifier.max_queued_requests == -1  # and none is refused while frontends keep to their queues
