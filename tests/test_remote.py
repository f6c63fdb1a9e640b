"""A frontend of the classifier service (`CLASSIFIER_URL`, `bot/remote.py`): what it sends again and what it does
not, the settings it carries, and its bound on the photos it holds. Against a fake of the service's HTTP
interface that answers as the service and Ray Serve's proxy do (the real service: tests/test_service.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from bot.core import ChatCore, RateLimiter, Request
from bot.remote import KEEPALIVE_CONNECTIONS, RemoteClassifier
from bot.worker import Busy
from model.answers import PhotoAnswer
from testkit.imagery import jpeg, scene
from testkit.processes import free_port
from testkit.service_harness import FakeService, eileen_answer, frontend

INTERNAL = PhotoAnswer("error", error="Something went wrong reading this photo.", error_kind="Internal")
CRASHED = PhotoAnswer(
    "error", error="This photo made my face finder crash, so I can't answer it.", error_kind="PhotoCrashed"
)


def reply_text(url: str, **options) -> tuple[str, str | None]:
    """What a user is told for one photo by a chat core on `RemoteClassifier(url)`, and why it was refused."""

    async def ask() -> tuple[str, str | None]:
        worker = RemoteClassifier(url, backoff=0.01, **options)
        try:
            reply = await ChatCore(worker, RateLimiter(100)).answer_photo(
                jpeg(scene(1)), Request("telegram", "private", "1")
            )
        finally:
            await worker.aclose()
        return reply.text, reply.refused

    return asyncio.run(ask())


@pytest.mark.parametrize("answer", [INTERNAL, CRASHED], ids=["internal", "crashed"])
def test_a_photo_the_service_could_not_answer_is_asked_once_and_told_as_in_process(answer: PhotoAnswer) -> None:
    with FakeService([("answer", 422, answer.to_json())]) as service:
        assert reply_text(service.url) == (answer.error, None)
        assert len(service.requests) == 1


def test_a_photo_whose_replica_dies_under_it_is_tried_three_times_then_told_it_went_wrong() -> None:
    with FakeService(["died"]) as service:
        assert reply_text(service.url, attempts=5) == ("Something went wrong reading this photo.", None)
        assert len(service.requests) == 3  # not 5: a photo that takes replicas down must not take them all
    with FakeService(["died", ("answer", 200, eileen_answer())]) as service:  # one killed from outside
        assert reply_text(service.url)[0].startswith("Eileen") and len(service.requests) == 2


def test_unavailable_or_unreachable_is_tried_again_and_busy_only_when_it_stays_so() -> None:
    with FakeService(["unavailable", "unavailable", ("answer", 200, eileen_answer())]) as service:
        assert reply_text(service.url)[0].startswith("Eileen") and len(service.requests) == 3
    with FakeService(["unavailable"]) as service:
        assert reply_text(service.url, attempts=4)[1] == "busy" and len(service.requests) == 4
    assert reply_text(f"http://127.0.0.1:{free_port()}", attempts=2)[1] == "busy"  # nothing listens there


def test_the_frontends_settings_go_with_each_photo() -> None:
    with FakeService([("answer", 200, eileen_answer())]) as service:
        reply_text(service.url, threshold=0.9, stranger_distance=0.45)
        reply_text(service.url)  # unset: the service's own (the default threshold, the trained distance)
        assert service.requests == [{"threshold": "0.9", "stranger_distance": "0.45"}, {}]


def test_past_queue_size_a_photo_is_busy_at_once_and_those_held_are_answered() -> None:
    async def burst(service: FakeService) -> None:
        worker = RemoteClassifier(service.url, queue_size=2)
        try:
            held = [asyncio.create_task(worker.classify(jpeg(scene(1)))) for _ in range(2)]
            while service.held < 2:
                await asyncio.sleep(0.02)
            assert worker.waiting() == 2
            with pytest.raises(Busy):  # at once: without the bound it would wait behind the others
                await asyncio.wait_for(worker.classify(jpeg(scene(1))), 30)
            service.release()
            assert all(r.answer.faces[0].label == "Eileen" for r in await asyncio.gather(*held))
            assert worker.waiting() == 0 and len(service.requests) == 2
        finally:
            await worker.aclose()

    with FakeService(["hold"]) as service:
        asyncio.run(burst(service))


def _established_to(port: int) -> int:
    """TCP connections of this machine in state ESTABLISHED whose far end is 127.0.0.1:`port`."""
    far = f"0100007F:{port:04X}"
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[2] == far and row[3] == "01")


def test_after_a_burst_the_frontend_keeps_few_connections_open_and_answers_the_next_photo() -> None:
    async def burst(service: FakeService) -> None:
        worker = RemoteClassifier(service.url, max_in_flight=64, queue_size=64)
        try:
            held = [asyncio.create_task(worker.classify(jpeg(scene(1)))) for _ in range(64)]
            while service.held < 64:  # all 64 at the service at once: the burst is not held back here
                await asyncio.sleep(0.02)
            assert _established_to(service.port) == 64
            service.release()
            assert all(r.answer.faces[0].label == "Eileen" for r in await asyncio.gather(*held))
            assert _established_to(service.port) <= KEEPALIVE_CONNECTIONS
            assert (await worker.classify(jpeg(scene(1)))).answer.faces[0].label == "Eileen"
        finally:
            await worker.aclose()

    with FakeService(["hold"]) as service:
        asyncio.run(burst(service))


def test_python_m_bot_with_classifier_url_keeps_queue_size_and_sends_its_thresholds(tmp_path: Path) -> None:
    settings = {"QUEUE_SIZE": "1", "CONFIDENCE_THRESHOLD": "0.9", "STRANGER_DISTANCE": "0.45"}
    with FakeService(["hold"]) as service, frontend(service.url, tmp_path, **settings) as bot:

        def post() -> httpx.Response:
            headers = {"Content-Type": "image/jpeg"}
            return httpx.post(f"{bot.url}/api/classify", content=jpeg(scene(1)), headers=headers, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(post)
            deadline = time.monotonic() + 60
            while service.held < 1:
                assert time.monotonic() < deadline and not first.done(), "the photo never reached the service"
                time.sleep(0.05)
            second = post()  # the first photo fills the frontend's queue of 1
            assert (second.status_code, second.json()["reason"]) == (503, "busy")
            service.release()
            assert first.result().status_code == 200 and first.result().json()["reply"]["text"].startswith("Eileen")
        assert service.requests == [{"threshold": "0.9", "stranger_distance": "0.45"}]
