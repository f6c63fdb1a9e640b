"""A fake web on 127.0.0.1 for tests: image routes that misbehave on request, and an image search."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeWeb"]

_TRICKLE_CHUNK = 1024


@dataclass
class _Route:
    body: bytes
    content_type: str | None
    status: int
    delay: float
    fail_times: int
    send_length: bool
    trickle: float
    location: str | None = None  # the Location header of a redirect


class FakeWeb:
    """`with FakeWeb() as web:` serves routes added with `web.add` and `/search` from `search_results`."""

    def __init__(self) -> None:
        self.base_url = ""
        self.search_results: dict[str, list[str]] = {}
        self.hits: Counter[str] = Counter()
        self.hosts: dict[str, str] = {}  # path -> the Host header of its last request
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        # Set on exit so that delayed and trickling answers stop at once instead of outliving the test.
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeWeb:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.web = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it, at the end of every test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str | None = "image/jpeg",
        status: int = 200,
        delay: float = 0.0,
        fail_times: int = 0,
        send_length: bool = True,
        trickle: float = 0.0,
    ) -> str:
        """Serve `body` at `path` (matched exactly, without the query string); its URL."""
        with self._lock:
            self._routes[path] = _Route(body, content_type, status, delay, fail_times, send_length, trickle)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer `path` with a redirect to `location` (absolute, or relative to `path`); its URL."""
        with self._lock:
            self._routes[path] = _Route(b"", "text/html", status, 0.0, 0, True, 0.0, location)
        return self.url(path)

    def _answer(self, path: str, host: str = "") -> _Route | None:
        """The route's answer to this request, counting the request and its planned failures."""
        with self._lock:
            self.hits[path] += 1
            self.hosts[path] = host
            route = self._routes.get(path)
            if route is None or route.fail_times <= 0:
                return route
            route.fail_times -= 1
            return _Route(b"busy", "text/plain", 503, route.delay, 0, True, 0.0)


class _Server(ThreadingHTTPServer):
    web: FakeWeb

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that give up (timeouts, size caps) close their end: expected, so not printed.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        web = self.server.web
        parts = urlsplit(self.path)
        if parts.path == "/search":
            web._answer(parts.path)
            self._send(_Route(_search_body(web, parts.query), "application/json", 200, 0.0, 0, True, 0.0))
            return
        route = web._answer(parts.path, self.headers.get("Host", ""))
        self._send(route or _Route(b"not found", "text/plain", 404, 0.0, 0, True, 0.0))

    def _send(self, route: _Route) -> None:
        closing = self.server.web._closing
        if route.delay and closing.wait(route.delay):
            return
        self.send_response(route.status)
        if route.content_type is not None:
            self.send_header("Content-Type", route.content_type)
        if route.location is not None:
            self.send_header("Location", route.location)
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if not route.trickle:
            self.wfile.write(route.body)
            return
        for start in range(0, len(route.body), _TRICKLE_CHUNK):
            self.wfile.write(route.body[start : start + _TRICKLE_CHUNK])
            self.wfile.flush()
            if closing.wait(route.trickle):
                return


def _search_body(web: FakeWeb, query_string: str) -> bytes:
    params = parse_qs(query_string)
    query = params.get("q", [""])[0]
    n = int(params.get("max_results", ["100"])[0])
    urls = web.search_results.get(query, [])[:n]
    return json.dumps([{"image": u, "title": query, "thumbnail": u, "url": u} for u in urls]).encode()
