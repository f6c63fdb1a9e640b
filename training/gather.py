"""Gather training images from a web image search into one folder per class.

Every URL that a search returns is untrusted: downloads are capped in size and time, checked to be
images by their first bytes, and saved under a name made from their content, never from the URL.
A `sources.json` manifest in each folder makes a re-run fetch only what it has not fetched yet.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "DdgsSearch",
    "DownloadError",
    "DownloadLimits",
    "GatherReport",
    "ImageSearch",
    "JsonSearch",
    "SearchError",
    "download_image",
    "gather_class",
]

# Some image hosts refuse Python's default User-Agent.
_HEADERS = {
    "User-Agent": ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"),
    "Accept": "image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.5",
}
_CHUNK = 64 * 1024
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_MANIFEST = "sources.json"
# Failures that would fail the same way again; a re-run skips their URLs unless the manifest says
# "retry" (an HTTP 5xx or 429 is an "http error" too, but the server may be back next time).
_PERMANENT = frozenset({"http error", "not an image", "too large", "bad url"})


@dataclass(frozen=True)
class DownloadLimits:
    """How much one download may cost before it is given up."""

    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0  # seconds for connecting and for each read
    deadline: float = 30.0  # total seconds for one URL, retries included: a trickling server cannot stall us
    attempts: int = 3  # tries per URL for connection errors, timeouts and HTTP 5xx/429 (never for 4xx)
    backoff: float = 0.5  # seconds before the 2nd try, doubled after each


class SearchError(RuntimeError):
    """An image search that could not be made; the message is fit for a terminal user."""


class ImageSearch(Protocol):
    def image_urls(self, query: str, n: int) -> list[str]: ...


class DdgsSearch:
    """DuckDuckGo image search through the `ddgs` package, as in the fastai course."""

    def __init__(self, timeout: int = 10) -> None:
        self.timeout = timeout

    def image_urls(self, query: str, n: int) -> list[str]:
        """Up to `n` image URLs for `query`."""
        import ddgs  # imported here so that the module attribute can be replaced in tests

        try:
            results = ddgs.DDGS(timeout=self.timeout).images(query, max_results=n)
        # ddgs raises its own exceptions and, from its HTTP backends, others: all mean no search.
        except Exception as e:
            raise SearchError(f"Image search failed for {query!r}: {e} (is there internet?)") from e
        return _image_field(results)[:n]


class JsonSearch:
    """A self-hosted search endpoint answering `?q=...&max_results=n` with ddgs-shaped JSON results."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def image_urls(self, query: str, n: int) -> list[str]:
        """Up to `n` image URLs for `query`."""
        sep = "&" if "?" in self.base_url else "?"
        url = f"{self.base_url}{sep}{urllib.parse.urlencode({'q': query, 'max_results': n})}"
        fail = f"Image search failed for {query!r} at {self.base_url}"
        try:
            with _open(url, self.timeout) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise SearchError(f"{fail}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            raise SearchError(f"{fail}: could not reach it ({e})") from e
        try:
            results = json.loads(body)
        except ValueError as e:
            raise SearchError(f"{fail}: the answer is not JSON") from e
        if not isinstance(results, list):
            raise SearchError(f"{fail}: the answer is not a JSON list of results")
        return _image_field(results)[:n]


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    return urllib.request.urlopen(urllib.request.Request(url, headers=_HEADERS), timeout=timeout)


def _image_field(results: list) -> list[str]:
    """The "image" URL of each ddgs-shaped result, skipping malformed ones."""
    return [r["image"] for r in results if isinstance(r, dict) and isinstance(r.get("image"), str)]


class DownloadError(Exception):
    """A URL that gave no image; `reason` is one of a few short phrases, for counting."""

    transient = False  # whether a later try might succeed (a timeout, a server error)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Transient(DownloadError):
    """A failure worth another try: the network or the server may do better in a moment."""

    transient = True


def download_image(url: str, limits: DownloadLimits = DownloadLimits()) -> bytes:
    """The bytes of the image at `url`, or DownloadError saying why not."""
    _check_url(url)
    # Search results may hold spaces or non-ASCII letters, which http.client refuses to send as they are.
    url = urllib.parse.quote(url, safe=_URL_SAFE)
    deadline = time.monotonic() + limits.deadline
    wait, attempt = limits.backoff, 1
    while True:
        try:
            return _fetch_once(url, limits, deadline)
        except _Transient:
            if attempt >= limits.attempts or time.monotonic() + wait >= deadline:
                raise
        time.sleep(wait)
        wait, attempt = wait * 2, attempt + 1


def _check_url(url: str) -> None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise DownloadError("bad url", url) from e
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DownloadError("bad url", url)


def _fetch_once(url: str, limits: DownloadLimits, deadline: float) -> bytes:
    timeout = min(limits.timeout, deadline - time.monotonic())
    if timeout <= 0:
        raise DownloadError("timeout", f"over {limits.deadline}s for {url}")
    try:
        with _open(url, timeout) as r:
            _check_headers(r.headers, url, limits)
            body = _read_capped(r, url, limits, deadline)
    except urllib.error.HTTPError as e:
        e.close()
        error = _Transient if e.code >= 500 or e.code == 429 else DownloadError
        raise error("http error", f"HTTP {e.code} for {url}") from e
    except (http.client.InvalidURL, ValueError) as e:
        raise DownloadError("bad url", url) from e
    except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # urllib wraps a timeout while connecting in URLError; one while reading comes bare.
        cause = e.reason if isinstance(e, urllib.error.URLError) else e
        reason = "timeout" if isinstance(cause, TimeoutError) else "connection failed"
        raise _Transient(reason, f"{cause} for {url}") from e
    if _image_suffix(body) is None:
        raise DownloadError("not an image", f"unknown content for {url}")
    return body


def _check_headers(headers: http.client.HTTPMessage, url: str, limits: DownloadLimits) -> None:
    length = headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > limits.max_bytes:
        raise DownloadError("too large", f"{length} bytes at {url}")
    kind = headers.get_content_type() if headers.get("Content-Type") else ""
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise DownloadError("not an image", f"{kind} at {url}")


def _read_capped(response: http.client.HTTPResponse, url: str, limits: DownloadLimits, deadline: float) -> bytes:
    # read1 returns after one socket read, so the cap and the deadline are checked at least once per
    # `timeout` seconds; read(n) would block until n bytes came, however slowly.
    body = bytearray()
    while chunk := response.read1(_CHUNK):
        body += chunk
        if len(body) > limits.max_bytes:
            raise DownloadError("too large", f"over {limits.max_bytes} bytes at {url}")
        if time.monotonic() > deadline:
            raise DownloadError("timeout", f"over {limits.deadline}s for {url}")
    return bytes(body)


def _image_suffix(data: bytes) -> str | None:
    """The file extension that the first bytes of `data` call for, or None if not a known image."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data.startswith(b"BM"):
        return ".bmp"
    return None


@dataclass
class GatherReport:
    """What one class's gathering did, for the caller to print."""

    name: str  # the class
    found: int = 0  # distinct URLs the searches returned
    downloaded: int = 0  # new files written this run
    already_had: int = 0  # URLs skipped because an earlier run settled them
    duplicates: int = 0  # downloads whose bytes equal a file already in the folder
    had_before: int = 0  # image files in the folder before the run
    failed: Counter[str] = field(default_factory=Counter)  # reason -> count
    search_errors: list[str] = field(default_factory=list)  # messages of failed searches, for the user

    def kept(self) -> int:
        """Image files in the folder after the run."""
        return self.had_before + self.downloaded


def gather_class(
    name: str,
    queries: Sequence[str],
    folder: Path,
    search: ImageSearch,
    per_query: int = 50,
    limits: DownloadLimits = DownloadLimits(),
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> GatherReport:
    """Search for each query and download the images found into `folder`, resuming an earlier run."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = GatherReport(name)
    urls = _search_all(queries, search, per_query, report)
    report.found = len(urls)
    manifest = _load_manifest(folder)
    todo = [url for url in urls if not _settled(manifest.get(url), folder)]
    report.already_had = len(urls) - len(todo)
    images = _image_files(folder)
    report.had_before = len(images)
    # Hashed whatever their names, so that a photo the user put there is not downloaded again.
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in images}
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(download_image, url, limits): url for url in todo}
        for done, future in enumerate(as_completed(futures), 1):
            url = futures[future]
            try:
                data = future.result()
            except DownloadError as e:
                report.failed[e.reason] += 1
                manifest[url] = {"file": None, "reason": e.reason, "retry": e.transient}
            else:
                manifest[url] = {"file": _keep(data, folder, by_hash, report), "reason": None}
            if progress is not None:
                progress(done, len(todo))
    finally:
        # On Ctrl-C: drop the queued downloads and still record what was fetched.
        pool.shutdown(wait=False, cancel_futures=True)
        _write_manifest(folder, manifest)
    return report


def _search_all(queries: Sequence[str], search: ImageSearch, per_query: int, report: GatherReport) -> list[str]:
    """Distinct URLs of all queries, in the order found; a failing query is counted and skipped."""
    urls: dict[str, None] = {}
    for query in queries:
        try:
            found = search.image_urls(query, per_query)
        except SearchError as e:
            report.failed["search failed"] += 1
            report.search_errors.append(str(e))
            continue
        urls.update(dict.fromkeys(found[:per_query]))
    return list(urls)


def _settled(entry: object, folder: Path) -> bool:
    """Whether a manifest entry means the URL need not be fetched again."""
    if not isinstance(entry, dict):
        return False
    file = entry.get("file")
    if isinstance(file, str) and file:
        return (folder / Path(file).name).is_file()
    return entry.get("reason") in _PERMANENT and not entry.get("retry", False)


def _keep(data: bytes, folder: Path, by_hash: dict[str, str], report: GatherReport) -> str:
    """Save `data` under its content hash unless the folder has it already; the file's name."""
    digest = hashlib.sha256(data).hexdigest()
    file = f"{digest[:16]}{_image_suffix(data)}"
    if digest in by_hash or (folder / file).exists():
        report.duplicates += 1
        return by_hash.get(digest, file)
    _write_atomic(folder / file, data)
    by_hash[digest] = file
    report.downloaded += 1
    return file


def _write_atomic(path: Path, data: bytes) -> None:
    # The temporary name has no image suffix, so a crash never leaves a half image for training.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _image_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]


def _load_manifest(folder: Path) -> dict[str, dict]:
    # A damaged manifest only costs re-downloads (which then de-duplicate), so it is not an error.
    try:
        data = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(folder: Path, manifest: dict[str, dict]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
    _write_atomic(folder / _MANIFEST, text.encode("utf-8"))
