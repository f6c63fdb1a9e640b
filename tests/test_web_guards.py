"""The web page against strangers on the network: uploads that trickle in, too many uploads at once, requests
for a name the page does not answer to (DNS rebinding), other sites' pages, IPv6 senders with a whole /64;
and every 429 and 503 says when to come back (Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.core import ChatCore, RateLimiter
from bot.web_guards import DEFAULT_MAX_UPLOADS, AllowedHosts, WebGuards, proxy_networks
from testkit.e2e import LiveBot, model_folder
from testkit.imagery import jpeg, scene
from testkit.webpage import Site, post_with_headers, run

MB = 1024 * 1024
# How long a test waits for an answer that should come within seconds: a bound, so a server that never
# answers fails the test instead of hanging it.
GIVE_UP = 60.0


async def slow_upload(port: int, announced: int, give_up: float = GIVE_UP) -> tuple[int, dict, dict[str, str], bool]:
    """A photo upload that announces `announced` bytes and sends 1 KB a second until the server answers.

    Its status, JSON body and headers (names in lower case), and whether the server then hung up.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: %d\r\n\r\n" % (port, announced)
    )

    async def trickle() -> None:
        while True:
            writer.write(bytes(1024))
            await writer.drain()
            await asyncio.sleep(1)

    sending = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(give_up):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers["content-length"]))
        try:
            async with asyncio.timeout(5):
                hung_up = await reader.read(1) == b""
        except TimeoutError:
            hung_up = False
        except ConnectionError:
            hung_up = True
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()
    return int(head[0].split()[1]), json.loads(body), headers, hung_up


# -- python -m bot --web under 40 slow uploads ------------------------------------------------------


def test_forty_slow_uploads_of_20_mb_are_cut_off_memory_stays_near_idle_and_photos_are_answered_after(
    exported: Path, tmp_path: Path
) -> None:
    model = model_folder(exported, tmp_path / "model")
    # A short deadline, so the test ends soon; a rate limit these 40 uploads from one address never reach, so
    # that what answers them is the bound on uploads and the deadline; no face-finding processes, to spare cores.
    env = {"WEB_PORT": "0", "WEB_UPLOAD_SECONDS": "5", "RATE_LIMIT_PER_MINUTE": "1000", "FACE_WORKERS": "0"}
    photo = jpeg(scene(1))
    with LiveBot(model, tmp_path, telegram=False, discord=False, env=env, args=["--web"]) as live:
        url = live.web_url()
        port = urlsplit(url).port
        # One photo first, so that "idle" includes what answering a photo needs, as "after" does.
        assert run(post_with_headers(url, photo))[0] == 200
        idle = live.memory_kb()["VmRSS"]

        async def forty() -> tuple[list, int]:
            samples = [idle]

            async def sample() -> None:
                while True:
                    samples.append(live.memory_kb()["VmRSS"])
                    await asyncio.sleep(0.1)

            sampling = asyncio.create_task(sample())
            try:
                return await asyncio.gather(*(slow_upload(port, 20 * MB) for _ in range(40))), max(samples)
            finally:
                sampling.cancel()

        answers, peak = run(forty())
        answered, answer, _ = run(post_with_headers(url, photo))
        after = live.memory_kb()["VmRSS"]
    statuses = [status for status, *_ in answers]
    mb = {name: f"{kb / 1024:.0f} MB" for name, kb in (("idle", idle), ("peak", peak), ("after", after))}
    print(f"\n40 slow uploads: {statuses.count(408)} x 408, {statuses.count(503)} x 503; RSS of the bot: {mb}")
    # Every one cut off: those past the bound told "busy" before a byte was read, the others at the deadline.
    assert set(statuses) <= {408, 503} and statuses.count(408) <= DEFAULT_MAX_UPLOADS, statuses
    for status, refused, headers, hung_up in answers:
        if status == 503:
            assert refused["reason"] == "busy" and int(headers["retry-after"]) > 0, (refused, headers)
        else:
            assert refused["reason"] == "too_slow" and hung_up, (refused, hung_up)
    assert peak - idle < 200 * 1024 and after - idle < 200 * 1024, (idle, peak, after)
    assert answered == 200 and answer["reply"]["text"].startswith("Eileen, "), answer


# -- the same guards on the adapter in this process ----------------------------------------------------


class _Watched(RateLimiter):
    """The rate limit, counting how often a sender was looked up (each upload is, before its body is read)."""

    looked = 0

    async def wait(self, user: str) -> float:
        self.looked += 1
        return await super().wait(user)


def test_past_the_bound_uploads_are_told_busy_before_reading_a_slow_one_is_hung_up_on_and_its_place_frees(
    worker,
) -> None:
    guards = WebGuards(max_uploads=1, upload_seconds=2)
    limiter = _Watched(1000)
    with Site(ChatCore(worker, limiter), guards=guards) as site:

        async def scenario() -> tuple:
            slow = asyncio.create_task(slow_upload(site.port, MB))
            # Past the rate limit, an upload takes its place before anything else can run on the server's loop.
            async with asyncio.timeout(GIVE_UP):
                while not limiter.looked:
                    await asyncio.sleep(0.02)
            busy = await post_with_headers(site.url, jpeg(scene(1)))
            return busy, await slow, await post_with_headers(site.url, jpeg(scene(1)))

        (_, busy, busy_headers), (status, refused, _, hung_up), (after, answer, _) = run(scenario())
    assert busy["reason"] == "busy" and busy["message"].startswith("I'm receiving too many photos at once")
    assert busy_headers["Retry-After"] == "5"
    assert status == 408 and hung_up and "took longer than 2 seconds" in refused["message"], refused
    # The slow upload's place is free again, and it used none of the sender's quota.
    assert after == 200 and answer["outcome"] == "ok"


def test_a_page_without_a_model_says_when_to_come_back(worker) -> None:
    with Site(ChatCore(worker, RateLimiter(1000)), model_problem=lambda: "No model yet.") as site:
        status, body, headers = run(post_with_headers(site.url, jpeg(scene(1))))
    assert (status, body["reason"], headers["Retry-After"]) == (503, "no_model", "60")


async def get(url: str, host: str) -> tuple[int, dict]:
    """`GET /api/about` as a browser sends it for a page it reached by the name `host`."""
    async with aiohttp.ClientSession() as session, session.get(url + "api/about", headers={"Host": host}) as r:
        return r.status, await r.json()


def test_names_the_page_does_not_answer_to_are_refused_and_only_its_own_pages_may_send_photos(worker) -> None:
    photo = jpeg(scene(1))
    with Site(ChatCore(worker, RateLimiter(1000))) as site:
        port = site.port

        async def scenario() -> dict[str, int]:
            # A web site whose DNS name now points at 127.0.0.1: the browser sends its name as the Host.
            rebound = await get(site.url, f"evil.example:{port}")
            assert rebound[1]["reason"] == "unknown_host" and "WEB_ALLOWED_HOSTS" in rebound[1]["message"]
            evil = f"evil.example:{port}"
            return {
                "rebound page": rebound[0],
                "rebound photo": (await post_with_headers(site.url, photo, Host=evil, Origin=f"http://{evil}"))[0],
                "localhost": (await get(site.url, "localhost"))[0],
                "[::1]": (await get(site.url, f"[::1]:{port}"))[0],
                # The page, reached by another of this machine's names, on this port.
                "our page": (await post_with_headers(site.url, photo, Origin=f"http://localhost:{port}"))[0],
                # Another program's page on this machine, and a sandboxed frame.
                "another port": (await post_with_headers(site.url, photo, Origin=f"http://127.0.0.1:{port + 1}"))[0],
                "null origin": (await post_with_headers(site.url, photo, Origin="null"))[0],
            }

        assert run(scenario()) == {
            "rebound page": 421,
            "rebound photo": 421,
            "localhost": 200,
            "[::1]": 200,
            "our page": 200,
            "another port": 403,
            "null origin": 403,
        }

    # Names of one's own replace the default list.
    guards = WebGuards(hosts=AllowedHosts.parse(["photos.example"]))
    with Site(ChatCore(worker, RateLimiter(1000)), guards=guards) as site:
        named = f"photos.example:{site.port}"

        async def named_scenario() -> list[int]:
            origin = f"http://{named}"
            return [
                (await post_with_headers(site.url, photo, Host=named, Origin=origin))[0],
                (await get(site.url, f"localhost:{site.port}"))[0],
            ]

        assert run(named_scenario()) == [200, 421]


def test_the_rate_limit_counts_an_ipv6_64_as_one_sender_and_ipv4_through_ipv6_as_ipv4(worker) -> None:
    site = Site(ChatCore(worker, RateLimiter(1)))

    @web.middleware
    async def arriving_from(request: web.Request, handler):
        """As if sent from the address the test names: this machine has only 127.0.0.1 and ::1 to send from."""
        return await handler(request.clone(remote=request.headers["X-Test-Remote"]))

    site.app.middlewares.insert(0, arriving_from)
    senders = [
        ("2001:db8:1:2::1", 200),
        ("2001:db8:1:2:ffff:ffff:ffff:7", 429),  # the same /64: the same home, phone or provider's customer
        ("2001:db8:1:3::1", 200),  # the next /64: someone else
        ("203.0.113.7", 200),
        ("::ffff:203.0.113.7", 429),  # the same IPv4 sender, seen through an IPv6 socket
        ("203.0.113.8", 200),
    ]
    with site:

        async def scenario() -> list[tuple[str, int]]:
            photo = jpeg(scene(1))
            return [
                (remote, (await post_with_headers(site.url, photo, **{"X-Test-Remote": remote}))[0])
                for remote, _ in senders
            ]

        assert run(scenario()) == senders


def test_behind_trusted_proxies_x_forwarded_for_names_the_sender_and_from_anyone_else_it_is_ignored(worker) -> None:
    """Behind a load balancer every sender would share its address, and so one rate limit."""
    guards = WebGuards(trusted_proxies=proxy_networks(["203.0.113.0/24", "2001:db8:ff::1"]))
    site = Site(ChatCore(worker, RateLimiter(1)), guards=guards)

    @web.middleware
    async def arriving_from(request: web.Request, handler):
        """As if sent from the address the test names: this machine has only 127.0.0.1 and ::1 to send from."""
        return await handler(request.clone(remote=request.headers["X-Test-Remote"]))

    site.app.middlewares.insert(0, arriving_from)
    requests = [  # the peer, its X-Forwarded-For, and the answer with one photo a minute per sender
        ("203.0.113.1", "198.51.100.7", 200),
        ("203.0.113.2", "198.51.100.7", 429),  # the same sender, through another balancer
        ("2001:db8:ff::1", "198.51.100.7", 429),  # and through a balancer on IPv6
        ("203.0.113.1", "198.51.100.8", 200),  # another sender behind the same balancer
        ("203.0.113.1", "10.9.9.9, 198.51.100.8", 429),  # what a sender writes itself, left of its address, is no one
        ("203.0.113.1", "198.51.100.9, 203.0.113.7", 200),  # through two balancers of ours
        ("192.0.2.1", "198.51.100.10", 200),  # not a balancer of ours: its own address is the sender
        ("192.0.2.1", "198.51.100.11", 429),  # so it cannot pick a new rate limit by writing a new header
    ]
    with site:

        async def scenario() -> list[tuple[str, str, int]]:
            photo = jpeg(scene(1))
            seen = []
            for peer, forwarded, _ in requests:
                headers = {"X-Test-Remote": peer, "X-Forwarded-For": forwarded}
                seen.append((peer, forwarded, (await post_with_headers(site.url, photo, **headers))[0]))
            return seen

        assert run(scenario()) == requests
    # An entry no proxy wrote (not an address) ends the list: the last address a proxy of ours vouched for counts.
    assert guards.client_address("203.0.113.1", ["nonsense, 203.0.113.9"]) == "203.0.113.9"
    assert guards.client_address("203.0.113.1", []) == "203.0.113.1"
    assert guards.client_address("::ffff:203.0.113.1", ["198.51.100.7"]) == "198.51.100.7"
    assert WebGuards().client_address("203.0.113.1", ["198.51.100.7"]) == "203.0.113.1"  # none trusted by default
