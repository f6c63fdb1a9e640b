"""The image-gathering step of the training script, against a fake web on 127.0.0.1."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from testkit.fake_web import FakeWeb
from training import download as download_module
from training.cli import _gather as cli_gather
from training.cli import _progress as cli_progress
from training.gather import (
    DdgsSearch,
    DownloadError,
    DownloadLimits,
    DownloadPolicy,
    GatherReport,
    JsonSearch,
    SearchError,
    download_image,
    gather_class,
)

# Small and quick: a stalled answer costs a fraction of a second, not the real defaults' minutes.
LIMITS = DownloadLimits(max_bytes=200_000, timeout=0.5, deadline=2.0, attempts=3, backoff=0.01)
HTML = b"<!doctype html><html><body>Access denied</body></html>"


def picture(colour: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, fmt)
    return out.getvalue()


def hash_name(data: bytes, ext: str) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + ext


def images_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != "sources.json"}


class ListSearch:
    """An image search whose answers the test gives; other queries fail."""

    def __init__(self, results: dict[str, list[str]]) -> None:
        self.results = results

    def image_urls(self, query: str, n: int) -> list[str]:
        if query not in self.results:
            raise SearchError(f"Image search failed for {query!r}")
        return self.results[query]


def trusting(web: FakeWeb | None) -> DownloadPolicy:
    """The tests' explicit opt-in: the fake web's server on 127.0.0.1 may be fetched from, no other private one."""
    return DownloadPolicy(trusted=(web.base_url,)) if web is not None else DownloadPolicy()


def gather(web: FakeWeb, folder: Path, urls: list[str], **kwargs) -> GatherReport:
    search = ListSearch({"eileen": urls})
    return gather_class("Eileen", ["eileen"], folder, search, limits=LIMITS, policy=trusting(web), **kwargs)


def reason(web: FakeWeb | None, url: str, limits: DownloadLimits = LIMITS) -> str:
    """Why downloading `url` gave no image."""
    with pytest.raises(DownloadError) as caught:
        download_image(url, limits, trusting(web))
    return caught.value.reason


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as w:
        yield w


def test_images_are_saved_under_content_hash_names(web: FakeWeb, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "Eileen"
    bodies = {
        "/a.jpg": (picture((200, 30, 30)), "image/jpeg", ".jpg"),
        "/b": (picture((30, 200, 30), "PNG"), "image/png", ".png"),
        "/etc/passwd.jpg": (picture((30, 30, 200)), "image/jpeg", ".jpg"),
        "/photo.php": (picture((90, 90, 90), "GIF"), None, ".gif"),
        "/c.webp": (picture((10, 120, 240), "WEBP"), "image/webp", ".webp"),
        "/d.bmp": (picture((240, 120, 10), "BMP"), "application/octet-stream", ".bmp"),
    }
    urls = [web.add(path, body, kind) for path, (body, kind, _) in bodies.items()]
    urls[2] = web.url("/img/../../etc/passwd.jpg")  # the dots go as in a browser: it asks for /etc/passwd.jpg
    urls[3] += "?id=7&size=large"
    steps: list[tuple[int, int]] = []

    report = gather(web, folder, urls, progress=lambda done, total: steps.append((done, total)))

    assert images_in(folder) == {hash_name(body, ext) for body, _, ext in bodies.values()}
    assert {p.name for p in tmp_path.rglob("*")} - {"data", "Eileen", "sources.json"} == images_in(folder)
    for body, _, ext in bodies.values():
        assert (folder / hash_name(body, ext)).read_bytes() == body
    assert (report.found, report.downloaded, report.kept(), sum(report.failed.values())) == (6, 6, 6, 0)
    assert steps == [(i, 6) for i in range(1, 7)]


def test_same_bytes_at_two_urls_are_kept_once(web: FakeWeb, tmp_path: Path) -> None:
    same = picture((1, 2, 3))
    report = gather(web, tmp_path, [web.add("/one.jpg", same), web.add("/two.jpg", same)])

    assert images_in(tmp_path) == {hash_name(same, ".jpg")}
    assert (report.downloaded, report.duplicates, report.kept()) == (1, 1, 1)
    sources = json.loads((tmp_path / "sources.json").read_text())
    assert {entry["file"] for entry in sources.values()} == {hash_name(same, ".jpg")}


def test_a_photo_already_in_the_folder_is_kept_and_not_saved_again(web: FakeWeb, tmp_path: Path) -> None:
    mine = picture((50, 60, 70))
    (tmp_path / "my own.jpeg").write_bytes(mine)
    report = gather(web, tmp_path, [web.add("/copy.jpg", mine), web.add("/new.jpg", picture((7, 8, 9)))])

    assert images_in(tmp_path) == {"my own.jpeg", hash_name(picture((7, 8, 9)), ".jpg")}
    assert (report.downloaded, report.duplicates, report.kept()) == (1, 1, 2)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_fail_at_once(web: FakeWeb, status: int) -> None:
    url = web.add("/gone.jpg", b"nope", "text/plain", status=status)
    assert reason(web, url) == "http error"
    assert web.hits["/gone.jpg"] == 1


def test_server_errors_are_retried_until_the_image_comes(web: FakeWeb) -> None:
    body = picture((5, 5, 5))
    url = web.add("/busy.jpg", body, fail_times=2)
    assert download_image(url, LIMITS, trusting(web)) == body
    assert web.hits["/busy.jpg"] == 3


@pytest.mark.parametrize("status", [500, 503, 429])
def test_lasting_server_errors_give_up_after_the_allowed_attempts(web: FakeWeb, status: int) -> None:
    url = web.add("/down.jpg", b"busy", "text/plain", status=status)
    assert reason(web, url) == "http error"
    assert web.hits["/down.jpg"] == LIMITS.attempts


def test_retries_wait_longer_each_time(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", waits.append)
    limits = DownloadLimits(timeout=0.5, deadline=60, attempts=4, backoff=0.5)
    assert reason(web, web.add("/down.jpg", b"busy", "text/plain", status=503), limits) == "http error"
    assert waits == [0.5, 1.0, 2.0]


def test_a_web_page_is_not_an_image(web: FakeWeb) -> None:
    assert reason(web, web.add("/page", HTML, "text/html; charset=utf-8")) == "not an image"
    assert reason(web, web.add("/fake.jpg", HTML, "image/jpeg")) == "not an image"
    assert reason(web, web.add("/empty.jpg", b"", "image/jpeg")) == "not an image"
    assert reason(web, web.add("/labelled.html", picture((8, 8, 8)), "text/html")) == "not an image"
    assert web.hits["/fake.jpg"] == 1


@pytest.mark.parametrize("send_length", [True, False])
def test_files_over_the_cap_are_refused(web: FakeWeb, send_length: bool) -> None:
    huge = picture((9, 9, 9)) + bytes(LIMITS.max_bytes)
    assert reason(web, web.add("/huge.jpg", huge, send_length=send_length)) == "too large"
    assert web.hits["/huge.jpg"] == 1


def test_an_announced_size_over_the_cap_is_refused_before_reading(web: FakeWeb) -> None:
    # Read, this body would take minutes to come and end in a timeout, not "too large".
    huge = picture((9, 9, 9)) + bytes(LIMITS.max_bytes)
    assert reason(web, web.add("/huge.jpg", huge, trickle=1.0)) == "too large"


def test_a_file_just_under_the_cap_without_length_is_read_whole(web: FakeWeb) -> None:
    body = picture((4, 4, 4))
    body += bytes(LIMITS.max_bytes - len(body))
    assert download_image(web.add("/big.jpg", body, send_length=False), LIMITS, trusting(web)) == body


def test_a_server_that_does_not_answer_times_out(web: FakeWeb) -> None:
    limits = DownloadLimits(timeout=0.2, deadline=2.0, attempts=2, backoff=0.01)
    assert reason(web, web.add("/slow.jpg", picture((1, 1, 1)), delay=1.5), limits) == "timeout"
    assert web.hits["/slow.jpg"] == 2


def test_a_server_trickling_bytes_is_cut_off_at_the_deadline(web: FakeWeb) -> None:
    # 60 chunks 0.1 s apart: each read is quick, but the whole file would take 6 s.
    limits = DownloadLimits(timeout=0.5, deadline=0.6, attempts=3, backoff=0.01)
    body = picture((2, 2, 2)) + bytes(60 * 1024)
    assert reason(web, web.add("/drip.jpg", body, trickle=0.1), limits) == "timeout"
    assert web.hits["/drip.jpg"] == 1


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "just words", "http://"])
def test_only_web_urls_are_fetched(url: str) -> None:
    assert reason(None, url) == "bad url"


def test_redirects_are_followed_to_the_image(web: FakeWeb, tmp_path: Path) -> None:
    body = picture((12, 34, 56))
    web.add("/photos/a.jpg", body)
    web.redirect("/short/a", "/photos/a.jpg", status=301)  # relative, as most image hosts send it
    url = web.redirect("/r", web.url("/short/a"), status=307)

    report = gather(web, tmp_path, [url])

    assert images_in(tmp_path) == {hash_name(body, ".jpg")}
    assert (report.downloaded, web.hits["/photos/a.jpg"]) == (1, 1)


def test_the_default_refuses_this_machine(web: FakeWeb, tmp_path: Path) -> None:
    # No opt-in: the fake web is 127.0.0.1, like a stranger's search result pointing at our own services.
    url = web.add("/a.jpg", picture((1, 2, 3)))

    report = gather_class("Eileen", ["eileen"], tmp_path, ListSearch({"eileen": [url]}), limits=LIMITS)

    assert (report.failed, report.kept(), images_in(tmp_path)) == ({"private address": 1}, 0, set())
    assert web.hits["/a.jpg"] == 0


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "redirect to a private address"),  # the cloud's metadata
        ("http://10.0.0.1/a.jpg", "redirect to a private address"),
        ("http://192.168.1.1/a.jpg", "redirect to a private address"),
        ("http://[::1]:1/a.jpg", "redirect to a private address"),
        ("http://[::ffff:127.0.0.1]:1/a.jpg", "redirect to a private address"),
        ("http://0.0.0.0:1/a.jpg", "redirect to a private address"),
        ("ftp://example.com/a.jpg", "redirect to a bad url"),
        ("file:///etc/passwd", "redirect to a bad url"),
        ("http://", "redirect to a bad url"),
    ],
)
def test_redirects_may_not_leave_the_public_web(web: FakeWeb, target: str, why: str) -> None:
    assert reason(web, web.redirect("/r.jpg", target)) == why
    assert web.hits["/r.jpg"] == 1  # refused at once, not retried


def test_a_redirect_to_another_server_on_this_machine_never_reaches_it(web: FakeWeb, tmp_path: Path) -> None:
    with FakeWeb() as private:
        secret = private.add("/admin/photo.jpg", picture((6, 6, 6)))
        by_name = secret.replace("127.0.0.1", "localhost")  # a host name that resolves to 127.0.0.1
        urls = [
            web.redirect("/to-ip", secret),
            web.redirect("/to-name", by_name),
            web.add("/ok.jpg", picture((9, 9, 9))),
        ]

        report = gather(web, tmp_path, urls)

        assert private.hits == {}
    assert report.failed == {"redirect to a private address": 2}
    assert images_in(tmp_path) == {hash_name(picture((9, 9, 9)), ".jpg")}


def test_a_redirect_loop_is_given_up(web: FakeWeb) -> None:
    web.redirect("/a", "/b")
    url = web.redirect("/b", "/a")
    assert reason(web, url) == "too many redirects"
    assert web.hits["/a"] + web.hits["/b"] == LIMITS.max_redirects + 1


def test_redirects_are_followed_up_to_the_limit(web: FakeWeb) -> None:
    body = picture((70, 80, 90))
    web.add(f"/{LIMITS.max_redirects + 1}.jpg", body)
    for hop in range(LIMITS.max_redirects + 1):
        web.redirect(f"/{hop}.jpg", f"/{hop + 1}.jpg")

    assert download_image(web.url("/1.jpg"), LIMITS, trusting(web)) == body
    assert reason(web, web.url("/0.jpg")) == "too many redirects"


def resolver(names: dict[str, list[str]]) -> tuple[Callable[[str, int], list[str]], list[tuple[str, int]]]:
    """A DNS that knows `names` (and IP literals); and the lookups it was asked for."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return names.get(host, [host])

    return resolve, asked


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["93.184.216.34", "10.0.0.7"], ["2606:2800:220:1::1", "fd00::1"], ["64:ff9b::a9fe:a9fe"]],
)
def test_a_public_looking_name_with_a_private_address_is_refused(web: FakeWeb, addresses: list[str]) -> None:
    # Every address must be public: a name with one private address is not a stranger's image host.
    resolve, _ = resolver({"images.example.com": addresses})
    policy = DownloadPolicy(trusted=(web.base_url,), resolve=resolve)
    port = web.base_url.rsplit(":", 1)[1]
    web.add("/a.jpg", picture((5, 6, 7)))
    hop = web.redirect("/r", f"http://images.example.com:{port}/a.jpg")

    for url, why in [
        (hop, "redirect to a private address"),
        (f"http://images.example.com:{port}/a.jpg", "private address"),
    ]:
        with pytest.raises(DownloadError) as caught:
            download_image(url, LIMITS, policy)
        assert caught.value.reason == why
    assert web.hits["/a.jpg"] == 0


def test_the_connection_goes_to_the_address_that_was_checked(web: FakeWeb) -> None:
    # No DNS server knows this name: the image can only come if the connection uses the checked address,
    # and the server learns the name from the Host header, as a real image host would.
    resolve, asked = resolver({"photos.example.com": ["127.0.0.1"]})
    port = int(web.base_url.rsplit(":", 1)[1])
    url = f"http://photos.example.com:{port}/a.jpg"
    body = picture((1, 1, 2))
    web.add("/a.jpg", body)

    assert download_image(url, LIMITS, DownloadPolicy(trusted=(url,), resolve=resolve)) == body
    assert asked == [("photos.example.com", port)]  # looked up once: no second answer to rebind to
    assert web.hosts["/a.jpg"] == f"photos.example.com:{port}"


def test_a_refused_redirect_is_not_tried_again_on_the_next_run(web: FakeWeb, tmp_path: Path) -> None:
    with FakeWeb() as private:
        # Were it fetched, this busy server would be asked again on every try and every run.
        url = web.redirect("/r.jpg", private.add("/a.jpg", b"busy", "text/plain", status=503))
        first = gather(web, tmp_path, [url])
        second = gather(web, tmp_path, [url])
        assert private.hits == {}
    assert first.failed == {"redirect to a private address": 1}
    assert (second.already_had, web.hits["/r.jpg"]) == (1, 1)


def test_the_training_script_trusts_only_its_own_search_server(web: FakeWeb, tmp_path: Path) -> None:
    config = tmp_path / "classes.json"
    config.write_text(json.dumps({"Eileen": ["eileen"], "Jessica": ["jessica"]}))
    args = argparse.Namespace(config=config, search_url=web.url("/search"), per_query=10)
    with FakeWeb() as private:
        secret = private.add("/secret.jpg", picture((66, 66, 66)))
        web.search_results["eileen"] = [web.add("/e.jpg", picture((1, 50, 1))), web.redirect("/r", secret)]
        web.search_results["jessica"] = [web.add("/j.jpg", picture((50, 1, 1)))]

        lines = cli_gather(args, tmp_path / "photos")

        assert private.hits == {}
    assert (
        lines[0]
        == "Eileen: 1 photos (1 new, 0 from earlier runs, 0 duplicates; failed: 1 redirect to a private address)"
    )


def test_the_training_script_refuses_search_results_on_this_machine(
    web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ddgs

    class Search:  # ddgs, answering with addresses on this machine
        def __init__(self, **kwargs: object) -> None:
            pass

        def images(self, query: str, **kwargs: object) -> list[dict]:
            return [{"image": web.add(f"/{query}.jpg", picture((3, 3, 3)))}]

    monkeypatch.setattr(ddgs, "DDGS", Search)
    args = argparse.Namespace(config=None, search_url=None, per_query=10)
    with pytest.raises(SearchError, match=r"No photos of Jessica Chastain: .*\(3 private address\)"):
        cli_gather(args, tmp_path / "photos")
    assert web.hits == {}


def test_the_gathering_stage_writes_one_line_to_a_log(web: FakeWeb, tmp_path: Path, capsys) -> None:
    """`python -m training > train.log`: no bar, whose every redraw would stay in the file, but one line."""
    urls = [web.add(f"/{i}.jpg", picture((i, 100, 100))) for i in range(40)]
    capsys.readouterr()

    gather(web, tmp_path, urls, progress=cli_progress("gathering Eileen"))

    out = capsys.readouterr().out
    assert "\r" not in out
    assert re.fullmatch(r"gathering Eileen: 40 of 40 in \d+ s\n", out), out


def test_the_bar_is_redrawn_in_place_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    update = cli_progress("finding faces")
    for done in range(1, 11):
        update(done, 10)

    drawn = terminal.getvalue()
    assert drawn.count("\n") == 1 and drawn.endswith("\n")  # one line, left finished
    frames = [frame for frame in drawn.rstrip("\n").split("\r") if frame.startswith("finding faces")]
    assert len(frames) >= 2
    assert re.fullmatch(r"finding faces \|\u2588+\| 100\.00% \[10/10 \d\d:\d\d<00:00\]", frames[-1])


def test_failures_are_counted_by_reason(web: FakeWeb, tmp_path: Path) -> None:
    urls = [
        web.add("/ok.jpg", picture((3, 3, 3))),
        web.add("/missing.jpg", b"", status=404),
        web.add("/page", HTML, "text/html"),
        "file:///etc/passwd",
    ]
    report = gather(web, tmp_path, urls)
    assert report.failed == {"http error": 1, "not an image": 1, "bad url": 1}
    assert (report.downloaded, report.kept()) == (1, 1)


def test_per_query_caps_results_and_repeated_urls_are_fetched_once(web: FakeWeb, tmp_path: Path) -> None:
    urls = [web.add(f"/{i}.jpg", picture((i * 20, 0, 0))) for i in range(6)]
    search = ListSearch({"first": urls[:4], "second": [urls[1], urls[2], urls[5], urls[4]]})

    report = gather_class(
        "Eileen", ["first", "second"], tmp_path, search, per_query=3, limits=LIMITS, policy=trusting(web)
    )

    assert report.found == 4
    assert report.downloaded == 4
    assert web.hits == {"/0.jpg": 1, "/1.jpg": 1, "/2.jpg": 1, "/5.jpg": 1}


def test_a_second_run_fetches_only_what_is_still_missing(web: FakeWeb, tmp_path: Path) -> None:
    good = [web.add(f"/{i}.jpg", picture((0, i * 40, 0))) for i in range(3)]
    bad = [web.add("/404.jpg", b"", status=404), web.add("/page", HTML, "text/html")]
    flaky = web.add("/flaky.jpg", picture((0, 0, 99)), fail_times=LIMITS.attempts)
    urls = [*good, *bad, flaky]
    first = gather(web, tmp_path, urls)
    assert (first.downloaded, first.failed["http error"]) == (3, 2)
    files, hits = images_in(tmp_path), web.hits.copy()

    second = gather(web, tmp_path, urls)

    assert web.hits - hits == {"/flaky.jpg": 1}
    assert (second.already_had, second.downloaded, second.kept()) == (5, 1, 4)
    assert images_in(tmp_path) == files | {hash_name(picture((0, 0, 99)), ".jpg")}


def test_a_deleted_file_is_fetched_again(web: FakeWeb, tmp_path: Path) -> None:
    url = web.add("/a.jpg", picture((11, 22, 33)))
    gather(web, tmp_path, [url])
    (tmp_path / hash_name(picture((11, 22, 33)), ".jpg")).unlink()

    report = gather(web, tmp_path, [url])

    assert (report.already_had, report.downloaded, web.hits["/a.jpg"]) == (0, 1, 2)


def test_a_damaged_manifest_only_costs_downloads(web: FakeWeb, tmp_path: Path) -> None:
    url = web.add("/a.jpg", picture((11, 22, 33)))
    gather(web, tmp_path, [url])
    (tmp_path / "sources.json").write_text("{not json")

    report = gather(web, tmp_path, [url])

    assert (report.downloaded, report.duplicates, report.kept()) == (0, 1, 1)
    assert json.loads((tmp_path / "sources.json").read_text())[url]["file"] is not None


def test_json_search_returns_the_image_urls(web: FakeWeb) -> None:
    web.search_results["bryce dallas howard"] = [web.url(f"/{i}.jpg") for i in range(5)]
    search = JsonSearch(web.url("/search"), timeout=2)

    assert search.image_urls("bryce dallas howard", 3) == [web.url(f"/{i}.jpg") for i in range(3)]
    assert search.image_urls("nobody", 3) == []


def test_json_search_keeps_to_n_when_the_server_gives_more(web: FakeWeb) -> None:
    results = [{"title": "no image"}] + [{"image": web.url(f"/{i}.jpg")} for i in range(5)]
    web.add("/everything", json.dumps(results).encode(), "application/json")
    urls = JsonSearch(web.url("/everything"), timeout=2).image_urls("q", 3)
    assert urls == [web.url(f"/{i}.jpg") for i in range(3)]


@pytest.mark.parametrize(
    ("path", "why"),
    [("/nowhere", "HTTP 404"), ("/not-json", "not JSON"), ("/not-a-list", "not a JSON list"), ("", "reach")],
)
def test_json_search_failures_are_search_errors(web: FakeWeb, path: str, why: str) -> None:
    web.add("/not-json", b"<html>", "text/html")
    web.add("/not-a-list", b'{"error": "quota"}', "application/json")
    base_url = web.url(path) if path else "http://127.0.0.1:1/search"  # port 1: nothing listens there
    with pytest.raises(SearchError, match=f"'jessica'.*{why}"):
        JsonSearch(base_url, timeout=2).image_urls("jessica", 3)


def test_one_failed_search_does_not_stop_the_others(web: FakeWeb, tmp_path: Path) -> None:
    web.search_results["jessica chastain"] = [web.add("/j.jpg", picture((1, 100, 200)))]
    working, broken = JsonSearch(web.url("/search"), timeout=2), JsonSearch(web.url("/nowhere"), timeout=2)

    class Mixed:
        def image_urls(self, query: str, n: int) -> list[str]:
            return (broken if query == "broken" else working).image_urls(query, n)

    report = gather_class(
        "Jessica", ["broken", "jessica chastain"], tmp_path, Mixed(), limits=LIMITS, policy=trusting(web)
    )

    assert (report.failed["search failed"], report.downloaded) == (1, 1)
    assert "broken" in report.search_errors[0]


def test_every_search_failing_still_gives_a_report(tmp_path: Path) -> None:
    report = gather_class("Jessica", ["a", "b"], tmp_path / "Jessica", ListSearch({}), limits=LIMITS)
    assert (report.found, report.failed["search failed"], report.kept()) == (0, 2, 0)


def test_ddgs_errors_become_search_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import ddgs
    from ddgs.exceptions import RatelimitException

    class Offline:
        def __init__(self, **kwargs: object) -> None:
            pass

        def images(self, query: str, **kwargs: object) -> list[dict]:
            raise RatelimitException("202 Ratelimit")

    monkeypatch.setattr(ddgs, "DDGS", Offline)
    with pytest.raises(SearchError, match=r"'jessica chastain'.*internet"):
        DdgsSearch().image_urls("jessica chastain", 5)
