"""The web adapter served for real in the test process, and plain HTTP clients for it: used by tests/test_web*.py.

`Site` runs the real aiohttp app on the real core on an event loop thread of its own, as `python -m bot`
runs it beside the chat adapters; the clients are `asyncio.run` on a thread of their own (`run`), since
Playwright's sync API keeps an event loop running on the test's thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp

from bot.core import ChatCore
from bot.web_adapter import build_web_app, start_web
from bot.web_guards import WebGuards

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "CHROMIUM_PAGE_SIZE",
    "Site",
    "get_text",
    "post",
    "post_form",
    "post_with_headers",
    "raw_get",
    "run",
    "status_of_announced_upload",
]

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright
# What this machine (a container, no GPU, no network) needs; the last four keep Chromium off the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_PAGE_SIZE = {"width": 1200, "height": 760}  # the tests' browser window, and the README's screenshots


class Site:
    """The real web adapter on its own event loop thread, as `python -m bot` runs it beside the chat adapters."""

    def __init__(
        self,
        core: ChatCore,
        model_problem=lambda: None,
        guards: WebGuards | None = None,
        review_token: str | None = None,
    ) -> None:
        self.app = build_web_app(core, model_problem, guards, review_token=review_token)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="web", daemon=True)

    def __enter__(self) -> Site:
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(start_web(self.app, "127.0.0.1", 0), self.loop).result(30)
        host, self.port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{self.port}/"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a thread of its own: Playwright's sync API keeps an event loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def get_text(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """The status and the text of a GET."""
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as r:
        return r.status, await r.text()


async def post(url: str, data: bytes, content_type: str = "image/jpeg", **headers: str) -> tuple[int, dict]:
    status, body, _ = await post_with_headers(url, data, content_type, **headers)
    return status, body


async def post_with_headers(
    url: str, data: bytes, content_type: str = "image/jpeg", *, query: str = "", **headers: str
) -> tuple[int, dict, dict[str, str]]:
    """The status, the JSON body and the headers of the answer to a photo sent as the body; `query`: the URL's
    query string ("lang=fr")."""
    path = "api/classify" + (f"?{query}" if query else "")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, data=data, headers={"Content-Type": content_type, **headers}) as r,
    ):
        return r.status, await r.json(), dict(r.headers)


async def post_form(url: str, fields: list[tuple[str, str, bytes, str]]) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for field, name, data, mime in fields:
        form.add_field(field, data, filename=name, content_type=mime)
    async with aiohttp.ClientSession() as session, session.post(url + "api/classify", data=form) as r:
        return r.status, await r.json()


def status_of_announced_upload(port: int, size: int) -> bytes:
    """The status line answering a photo upload that announces `size` bytes and sends none of them."""
    # A server that waited for the body would never answer: the socket's timeout fails the test instead.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        return s.recv(4096).split(b"\r\n")[0]


def raw_get(port: int, path: str) -> bytes:
    """A GET exactly as written: HTTP clients would tidy the dots away before sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
