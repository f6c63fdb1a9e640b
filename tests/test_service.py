"""The classifier as a Ray Serve service (`python -m model.service`, a real local Ray instance), and chat
frontends that ask it over HTTP without loading torch (`CLASSIFIER_URL`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bot.core import Request
from bot.remote import RemoteClassifier
from bot.worker import Busy
from model.rollout import NOT_A_LEARNER
from testkit.e2e import memory_kb, model_folder
from testkit.imagery import jpeg, noise_image, scene
from testkit.processes import free_port, run_python
from testkit.service_harness import Service, children, frontend


@pytest.fixture(scope="module")
def service(exported: Path, tmp_path_factory: pytest.TempPathFactory):
    running = Service(model_folder(exported, tmp_path_factory.mktemp("service")))
    running.start()
    yield running
    running.stop()


PHOTOS = {
    "one.jpg": lambda: jpeg(scene(1)),
    "four.jpg": lambda: jpeg(scene(4, twins=(False, True, False, True))),
    "no-face.jpg": lambda: jpeg(noise_image()),
    "text.jpg": lambda: b"this is not a photo\n" * 20,
    "cut.jpg": lambda: jpeg(scene(1))[:4000],
}


def test_the_service_answers_what_python_m_model_json_prints(service: Service, tmp_path: Path) -> None:
    for name, make in PHOTOS.items():
        (tmp_path / name).write_bytes(make())
    done = run_python("-m", "model", *PHOTOS, "--model", str(service.model), "--json", cwd=tmp_path)
    printed = {Path(a["path"]).name: a for a in json.loads(done.stdout)}
    for name in PHOTOS:
        response = httpx.post(f"{service.url}/classify", content=(tmp_path / name).read_bytes(), timeout=60)
        expected = {k: v for k, v in printed[name].items() if k != "path"}
        assert {k: v for k, v in response.json().items() if k != "path"} == expected, name
        assert response.status_code == (422 if expected["outcome"] == "error" else 200), name
    assert printed["four.jpg"]["outcome"] == "ok" and len(printed["four.jpg"]["faces"]) == 4
    assert printed["cut.jpg"]["error_kind"] == "TruncatedImage"
    # A frontend's threshold and stranger distance, sent with the photo, decide as they do in-process.
    confidence = printed["one.jpg"]["faces"][0]["confidence"]
    settings = {"CONFIDENCE_THRESHOLD": str(min(1.0, confidence + 1e-4)), "STRANGER_DISTANCE": "0.0001"}
    decided = run_python(
        "-m", "model", "one.jpg", "four.jpg", "--json", "--model", str(service.model), cwd=tmp_path, env=settings
    )
    for expected in json.loads(decided.stdout):
        params = {"threshold": settings["CONFIDENCE_THRESHOLD"], "stranger_distance": settings["STRANGER_DISTANCE"]}
        response = httpx.post(
            f"{service.url}/classify", params=params, content=(tmp_path / expected["path"]).read_bytes(), timeout=60
        )
        assert response.json()["faces"] == expected["faces"], expected["path"]
        assert expected["faces"] and not any(face["known"] for face in expected["faces"])
    wrong = httpx.post(f"{service.url}/classify", params={"threshold": "nan"}, content=b"x", timeout=60)
    assert wrong.status_code == 400 and "threshold='nan' is not allowed" in wrong.json()["error"]


def test_too_large_is_refused_with_413_and_about_describes_the_model(service: Service) -> None:
    response = httpx.post(f"{service.url}/classify", content=bytes(21 * 1024 * 1024), timeout=60)
    assert response.status_code == 413
    assert response.json()["error"] == "This file is 21 MB; I can take files up to 20 MB."

    def chunked(parts: int):  # no Content-Length: refused once past the cap, not read to its end
        for _ in range(parts):
            yield bytes(1024 * 1024)

    response = httpx.post(f"{service.url}/classify", content=chunked(200), timeout=60)
    assert response.status_code == 413 and response.json()["error_kind"] == "FileTooLarge"
    assert response.json()["error"] == "This file is over 20 MB; I can take files up to 20 MB."
    about = httpx.get(f"{service.url}/about", timeout=30).json()
    assert about["classes"] == ["Eileen", "Twin"] and about["accuracy"] == 0.985


FRONTEND = """
import asyncio, json, sys
from bot.core import ChatCore, RateLimiter, Request
from bot.remote import RemoteClassifier

async def main():
    worker = RemoteClassifier(sys.argv[1])
    core = ChatCore(worker, RateLimiter(100))
    replies = []
    for i, path in enumerate(sys.argv[2:]):
        reply = await core.answer_photo(open(path, "rb").read(), Request("telegram", "private", str(i)))
        replies.append([reply.text, reply.image is not None])
    examined = await worker.examine(open(sys.argv[2], "rb").read())  # what a feedback press keeps
    await worker.aclose()
    kept = [examined.answer.faces[0].label, len(examined.chips[0]), examined.descriptors]
    return replies, kept

replies, kept = asyncio.run(main())
loaded = sorted(m for m in ("torch", "fastai", "dlib", "ray") if m in sys.modules)
print(json.dumps({"replies": replies, "loaded": loaded, "kept": kept}))
"""


def test_a_frontend_without_torch_replies_as_the_bot_does_in_process(
    service: Service, core, classifier, tmp_path: Path
) -> None:
    names = ["one.jpg", "four.jpg", "no-face.jpg", "text.jpg"]
    for name in names:
        (tmp_path / name).write_bytes(PHOTOS[name]())
    done = run_python("-c", FRONTEND, service.url, *names, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    remote = json.loads(done.stdout.strip().splitlines()[-1])
    assert remote["loaded"] == []  # neither torch nor fastai nor dlib, nor Ray itself
    for name, (text, boxed) in zip(names, remote["replies"], strict=True):
        reply = asyncio.run(core.answer_photo((tmp_path / name).read_bytes(), Request("telegram", "private", "x")))
        assert (text, boxed) == (reply.text, reply.image is not None), name
    # A feedback press through the service keeps the face the in-process model would: its chip and descriptor.
    label, chip_bytes, descriptors = remote["kept"]
    here = classifier.examine((tmp_path / names[0]).read_bytes())
    assert label == here.answer.faces[0].label and chip_bytes > 1000
    assert np.allclose(descriptors, here.descriptors, atol=1e-4)


def test_python_m_bot_with_classifier_url_needs_no_model_and_stays_small(service: Service, tmp_path: Path) -> None:
    with frontend(service.url, tmp_path, MODEL_PATH=str(tmp_path / "no-model-here.pkl")) as bot:
        about = httpx.get(f"{bot.url}/api/about", timeout=30)
        assert "Eileen" in about.text
        answer = httpx.post(
            f"{bot.url}/api/classify", content=jpeg(scene(1)), headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert answer.status_code == 200 and answer.json()["reply"]["text"].startswith("Eileen")
        assert memory_kb(bot.process.pid)["VmRSS"] < 200 * 1024
        ready = httpx.get(f"{bot.url}/readyz", timeout=30)
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "reasons": []})


def test_a_face_finder_process_that_dies_costs_no_answer_and_no_replica(service: Service) -> None:
    """Each replica finds faces in processes of its own, so a photo that crashes dlib there (here: SIGKILL, as a
    segfault ends it) leaves the replica, and the other photos of its batch, answering."""
    replicas = service.replica_pids()
    assert len(replicas) == 2
    finders = {replica: [pid for pid in children(replica) if "spawn_main" in _command(pid)] for replica in replicas}
    assert all(finders.values()), finders  # faces are not found in the replica's own process
    for pids in finders.values():
        os.kill(pids[0], signal.SIGKILL)

    async def burst() -> list:
        worker = RemoteClassifier(service.url, attempts=1, max_in_flight=8)  # no retry hides a lost answer
        try:
            return await asyncio.gather(*(worker.classify(jpeg(scene(1))) for _ in range(8)))
        finally:
            await worker.aclose()

    assert all(r.answer.outcome == "ok" and r.answer.faces[0].label == "Eileen" for r in asyncio.run(burst()))
    assert sorted(service.replica_pids()) == sorted(replicas)  # the same processes: none died, none was restarted


KILL_A_REPLICA = """
import ray
ray.init(address="auto", namespace="serve", log_to_driver=False)
replicas = sorted(
    a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
    if a["namespace"] == "serve" and "Classifier" in a["name"]
)
ray.kill(ray.get_actor(replicas[0], namespace="serve"))
print(len(replicas))
"""


def test_a_replica_killed_mid_burst_loses_no_answer(service: Service, tmp_path: Path) -> None:
    photos = [jpeg(scene(1, twins=(i % 2 == 1,))) for i in range(2)]

    async def burst() -> tuple[list, int]:
        worker = RemoteClassifier(service.url, attempts=8, backoff=0.25, max_in_flight=4)
        answers: list = []
        stop = asyncio.Event()

        async def keep_sending(i: int) -> None:
            while not stop.is_set():
                result = await worker.classify(photos[i % 2])
                answers.append((i % 2, result.answer))
                i += 2

        senders = [asyncio.create_task(keep_sending(i)) for i in range(4)]
        while len(answers) < 8:
            await asyncio.sleep(0.05)
        killed = await asyncio.to_thread(run_python, "-c", KILL_A_REPLICA, cwd=tmp_path)
        assert killed.returncode == 0 and killed.stdout.strip() == "2", killed.stderr[-2000:]
        after = len(answers)
        while len(answers) < after + 20:  # the other replica, then the restarted one, keep answering
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*senders)  # a sender that lost its photo would raise here
        await worker.aclose()
        return answers, after

    answers, after = asyncio.run(burst())
    assert len(answers) >= after + 20
    assert all(a.outcome == "ok" and a.faces[0].label == ("Twin" if twin else "Eileen") for twin, a in answers)


def test_a_replaced_model_file_moves_every_replica_to_it_without_dropping_requests(service: Service) -> None:
    async def during_reload() -> tuple[list, dict]:
        worker = RemoteClassifier(service.url, attempts=3, backoff=0.1, max_in_flight=4)
        answers: list = []
        stop = asyncio.Event()

        async def keep_sending() -> None:
            while not stop.is_set():
                answers.append((await worker.classify(jpeg(scene(1)))).answer)

        senders = [asyncio.create_task(keep_sending()) for _ in range(3)]
        meta = json.loads(service.model.with_suffix(".json").read_text())
        service.model.with_suffix(".json").write_text(json.dumps({**meta, "accuracy": 0.9}))
        replacement = service.model.with_name("replacement.pkl")
        replacement.write_bytes(service.model.read_bytes())
        os.replace(replacement, service.model)  # as `python -m training` publishes a model: a rename
        about: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            about = (await worker._client.get(f"{service.url}/about")).json()
            if about.get("accuracy") == 0.9:
                break
        # Both replicas: requests are spread over them, so these reach each with near certainty.
        later = [(await worker._client.get(f"{service.url}/about")).json()["accuracy"] for _ in range(10)]
        stop.set()
        await asyncio.gather(*senders)
        await worker.aclose()
        return answers, about, later

    answers, about, later = asyncio.run(during_reload())
    assert about["accuracy"] == 0.9 and later == [0.9] * 10  # every replica loaded the new file
    assert answers and all(a.outcome == "ok" and a.faces[0].label == "Eileen" for a in answers)


def publish(model: Path, accuracy: float) -> None:
    """As `python -m training` publishes a model: the file replaced by a rename, then its metadata."""
    replacement = model.with_name("replacement.pkl")
    replacement.write_bytes(model.read_bytes())
    os.replace(replacement, model)
    meta = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**meta, "accuracy": accuracy}))


def test_a_model_file_overwritten_with_junk_leaves_the_old_model_answering_until_a_good_one_comes(
    service: Service,
) -> None:
    good, meta_path = service.model.read_bytes(), service.model.with_suffix(".json")
    service.model.write_bytes(b"this is not a learner\n" * 1000)  # in place, as a careless copy would
    deadline = time.monotonic() + 180
    while "does not load" not in service.log_text():
        assert service.proc.poll() is None, service.log_text()[-3000:]
        assert time.monotonic() < deadline, "the service never looked at the new file"
        time.sleep(0.5)
    for _ in range(3):  # still answering (on both replicas, with near certainty), with the old model
        time.sleep(1.0)  # the harness has the service look every second: the same junk is not tried again
        answer = httpx.post(f"{service.url}/classify", content=jpeg(scene(1)), timeout=60)
        assert answer.status_code == 200 and answer.json()["faces"][0]["label"] == "Eileen"
    assert service.proc.poll() is None
    refusals = [line for line in service.log_text().splitlines() if "does not load" in line]
    assert len(refusals) == 1 and str(service.model) in refusals[0], refusals
    # A good file published later is rolled out.
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "accuracy": 0.95}))
    service.model.write_bytes(good)
    while httpx.get(f"{service.url}/about", timeout=30).json().get("accuracy") != 0.95:
        assert time.monotonic() < deadline + 120, "the good model was never rolled out"
        time.sleep(0.5)
    assert [httpx.get(f"{service.url}/about", timeout=30).json()["accuracy"] for _ in range(10)] == [0.95] * 10
    # The copy served before is removed once the service has every replica on the new one: one copy is left.
    while len(copies := list(service.model.parent.glob(".*.serving"))) > 1:
        assert time.monotonic() < deadline + 180, copies
        time.sleep(0.5)
    assert len(copies) == 1


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_service_down_is_busy_and_back_up_is_answered_again(service: Service) -> None:
    worker_loop = asyncio.new_event_loop()
    worker = RemoteClassifier(service.url, attempts=3, backoff=0.1)
    try:
        service.stop()
        assert not list(service.model.parent.glob(".*.serving"))  # the copy it served went with it
        with pytest.raises(Busy):
            worker_loop.run_until_complete(worker.classify(jpeg(scene(1))))
        # Started again, and a model published while it starts, once it has read the file's version (its copy
        # appears), while the replicas load: rolled out too, not mistaken for the one they loaded.
        starting = threading.Thread(target=service.start)
        starting.start()
        while not list(service.model.parent.glob(".*.serving")):
            assert starting.is_alive(), "the service did not start"
            time.sleep(0.05)
        publish(service.model, accuracy=0.97)
        starting.join()
        assert service.proc.poll() is None, service.log_text()[-3000:]
        result = worker_loop.run_until_complete(worker.classify(jpeg(scene(1))))
        assert result.answer.faces[0].label == "Eileen"
        deadline = time.monotonic() + 180
        while httpx.get(f"{service.url}/about", timeout=30).json().get("accuracy") != 0.97:
            assert time.monotonic() < deadline, "the model published during start-up was never rolled out"
            time.sleep(0.5)
    finally:
        worker_loop.run_until_complete(worker.aclose())
        worker_loop.close()


def test_replicas_is_a_count_or_autoscaling_and_anything_else_is_refused_before_ray_starts(tmp_path: Path) -> None:
    from model.service import scaling

    assert scaling("3") == {"num_replicas": 3}
    autoscaled = {"min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 4}
    assert scaling("auto:5") == {"autoscaling_config": autoscaled}
    assert scaling("auto")["autoscaling_config"]["max_replicas"] == os.cpu_count()
    for wrong in ("0", "auto:0", "auto:", "two", "-1"):
        done = run_python("-m", "model.service", "--replicas", wrong, cwd=tmp_path)
        assert done.returncode == 2 and f"argument --replicas: {wrong!r}: give a number" in done.stderr, done.stderr
        assert "ray" not in done.stdout.lower()  # refused before Ray was started
    # The bot's ranges for the numbers it shares with the service (a reload every 0 s spun a core).
    for option, wrong, allowed in [
        ("--reload-seconds", "0", "a number from 0.1 to 86400"),
        ("--max-mb", "0", "a number above 0, up to 50"),
        ("--max-mb", "nan", "a number above 0, up to 50"),
        ("--face-workers", "-1", "a whole number from 0 to 64"),
    ]:
        done = run_python("-m", "model.service", option, wrong, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"argument {option}: {wrong!r} is not allowed: it must be {allowed}" in done.stderr, done.stderr


def test_a_model_that_does_not_load_at_start_up_exits_2_saying_why_in_one_line(tmp_path: Path) -> None:
    model = tmp_path / "export.pkl"
    model.write_bytes(b"this is not a learner\n" * 1000)
    args = ["--model", str(model), "--port", str(free_port()), "--num-cpus", "2", "--replicas", "1"]
    done = run_python("-m", "model.service", *args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if str(model) in line]
    assert line == f"Could not serve the model at {model} ({NOT_A_LEARNER}).", line
    assert not list(tmp_path.glob(".*.serving"))  # its copy is removed
