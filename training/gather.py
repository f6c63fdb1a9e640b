"""Gather training images from a web image search into one folder per class.

Every URL that a search returns is untrusted: downloads are capped in size and time, checked to be
images by their first bytes, and saved under a name made from their content, never from the URL.
A `sources.json` manifest in each folder makes a re-run fetch only what it has not fetched yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from .download import HEADERS, DownloadError, DownloadLimits, DownloadPolicy, download_image, image_suffix

__all__ = [
    "DdgsSearch",
    "DownloadError",
    "DownloadLimits",
    "DownloadPolicy",
    "GatherReport",
    "ImageSearch",
    "JsonSearch",
    "SearchError",
    "download_image",
    "gather_class",
]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_MANIFEST = "sources.json"
# Failures that would fail the same way again; a re-run skips their URLs unless the manifest says
# "retry" (an HTTP 5xx or 429 is an "http error" too, but the server may be back next time).
_PERMANENT = frozenset(
    {
        "http error",
        "not an image",
        "too large",
        "bad url",
        "private address",
        "redirect to a bad url",
        "redirect to a private address",
        "too many redirects",
    }
)


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
            # The user named this server, so it is trusted: its redirects are followed as they come.
            response = httpx.get(url, headers=HEADERS, timeout=self.timeout, follow_redirects=True)
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as e:
            raise SearchError(f"{fail}: could not reach it ({e})") from e
        if response.is_error:
            raise SearchError(f"{fail}: HTTP {response.status_code} {response.reason_phrase}")
        try:
            results = response.json()
        except ValueError as e:
            raise SearchError(f"{fail}: the answer is not JSON") from e
        if not isinstance(results, list):
            raise SearchError(f"{fail}: the answer is not a JSON list of results")
        return _image_field(results)[:n]


def _image_field(results: list) -> list[str]:
    """The "image" URL of each ddgs-shaped result, skipping malformed ones."""
    return [r["image"] for r in results if isinstance(r, dict) and isinstance(r.get("image"), str)]


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
    limits: DownloadLimits | None = None,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
    policy: DownloadPolicy | None = None,
) -> GatherReport:
    """Search for each query and download the images found into `folder`, resuming an earlier run.

    Downloads reach only public addresses unless `policy` trusts the server (see `download_image`).
    """
    limits, policy = limits or DownloadLimits(), policy or DownloadPolicy()
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
        futures = {pool.submit(download_image, url, limits, policy): url for url in todo}
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
    file = f"{digest[:16]}{image_suffix(data)}"
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
