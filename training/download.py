"""Download one image from an untrusted URL: capped in size and time, every redirect hop checked.

A search result may point anywhere, and so may its redirects: each hop must be http(s) and reach
only public addresses, unless the caller's `DownloadPolicy` trusts that server (the tests' fake web
on 127.0.0.1, a self-hosted search).
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

__all__ = ["HEADERS", "DownloadError", "DownloadLimits", "DownloadPolicy", "download_image", "image_suffix"]

# Some image hosts refuse Python's default User-Agent.
HEADERS = {
    "User-Agent": ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"),
    "Accept": "image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.5",
    # The size cap counts the bytes as sent: a compressed answer could unpack to far more.
    "Accept-Encoding": "identity",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The IPv6 prefix that NAT64 gateways translate to the IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class DownloadLimits:
    """How much one download may cost before it is given up."""

    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0  # seconds for connecting and for each read
    deadline: float = 30.0  # total seconds for one URL, retries included: a trickling server cannot stall us
    attempts: int = 3  # tries per URL for connection errors, timeouts and HTTP 5xx/429 (never for 4xx)
    backoff: float = 0.5  # seconds before the 2nd try, doubled after each
    max_redirects: int = 5  # hops from a search result to its image; image hosts need one or two


def _resolve(host: str, port: int) -> list[str]:
    """Every address of `host`, in the order the system's resolver prefers them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class DownloadPolicy:
    """Which servers a download may reach: only public addresses, unless the user named the server.

    Search results, and where they redirect, are chosen by strangers: followed blindly they could
    make the training script fetch from this machine (127.0.0.1), a cloud's metadata service
    (169.254.169.254) or the local network, and keep the answer as a training photo.
    """

    # URLs whose server (scheme, host and port) may be private: a self-hosted search, a test's server.
    trusted: Sequence[str] = ()
    # host, port -> its addresses; a test may answer for names that no DNS server knows.
    resolve: Callable[[str, int], Sequence[str]] = _resolve

    def __post_init__(self) -> None:
        for url in self.trusted:
            if _web_url(url) is None:
                raise ValueError(f"Not a web address to trust for downloads: {url!r}")

    def trusts(self, url: httpx.URL) -> bool:
        """Whether `url` is on a server that the user named, so that its address need not be public."""
        return any(_origin(url) == _origin(httpx.URL(t)) for t in self.trusted)


class DownloadError(Exception):
    """A URL that gave no image; `reason` is one of a few short phrases, for counting."""

    transient = False  # whether a later try might succeed (a timeout, a server error)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Transient(DownloadError):
    """A failure worth another try: the network or the server may do better in a moment."""

    transient = True


def download_image(
    url: str, limits: DownloadLimits = DownloadLimits(), policy: DownloadPolicy = DownloadPolicy()
) -> bytes:
    """The bytes of the image at `url`, or DownloadError saying why not.

    Redirects are followed by hand, at most `limits.max_redirects` of them, and every hop must be an
    http(s) URL whose host has only public addresses (or is trusted by `policy`). The connection goes
    to one of the addresses just checked, never to a second lookup of the name, so a DNS server that
    answers "public" for the check and "127.0.0.1" a moment later (DNS rebinding) gains nothing.
    """
    if _web_url(url) is None:
        raise DownloadError("bad url", url)
    deadline = time.monotonic() + limits.deadline
    wait, attempt = limits.backoff, 1
    while True:
        try:
            return _fetch_once(url, limits, policy, deadline)
        except _Transient:
            if attempt >= limits.attempts or time.monotonic() + wait >= deadline:
                raise
        time.sleep(wait)
        wait, attempt = wait * 2, attempt + 1


def _web_url(url: str) -> httpx.URL | None:
    """`url` parsed, if it is an http(s) URL with a host; None for anything else."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    return parsed if parsed.scheme in _DEFAULT_PORTS and parsed.host else None


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme]


def _fetch_once(url: str, limits: DownloadLimits, policy: DownloadPolicy, deadline: float) -> bytes:
    hop = url
    try:
        # No proxy from the environment: the address checked must be the address connected to, and a
        # proxy would look the names up itself, out of sight of the check.
        with httpx.Client(headers=HEADERS, trust_env=False) as client:
            for redirects in range(limits.max_redirects + 1):
                with _get(client, hop, policy, _time_left(limits, deadline, url), redirected=redirects > 0) as r:
                    if not r.is_redirect:
                        return _image_body(r, hop, limits, deadline)
                    hop = _redirect_target(hop, r.headers["Location"])
    except httpx.TimeoutException as e:
        raise _Transient("timeout", f"{e or 'timed out'} for {hop}") from e
    except httpx.InvalidURL as e:
        raise DownloadError("bad url", hop) from e
    except (httpx.TransportError, OSError) as e:
        # OSError: the name could not be looked up (no network, or no such host).
        raise _Transient("connection failed", f"{e} for {hop}") from e
    raise DownloadError("too many redirects", f"over {limits.max_redirects} from {url}")


def _time_left(limits: DownloadLimits, deadline: float, url: str) -> float:
    timeout = min(limits.timeout, deadline - time.monotonic())
    if timeout <= 0:
        raise DownloadError("timeout", f"over {limits.deadline}s for {url}")
    return timeout


@contextmanager
def _get(
    client: httpx.Client, url: str, policy: DownloadPolicy, timeout: float, redirected: bool
) -> Iterator[httpx.Response]:
    """The streamed answer to GET `url`, from one of its host's checked addresses."""
    target = httpx.URL(url)
    addresses = _checked_addresses(target, policy, redirected)
    # By address, with the name in the Host header and in TLS (SNI, and the certificate's check).
    headers = {"Host": target.netloc.decode("ascii")}
    by_name = not _is_address(target.host)
    extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" and by_name else {}
    for i, address in enumerate(addresses, 1):
        direct = httpx.URL(scheme=target.scheme, host=address, port=target.port, raw_path=target.raw_path)
        request = client.build_request("GET", direct, headers=headers, extensions=extensions, timeout=timeout)
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError:
            if i == len(addresses):
                raise
            continue  # a host's IPv6 address is often unreachable from an IPv4-only network
        try:
            yield response
        finally:
            response.close()
        return


def _checked_addresses(target: httpx.URL, policy: DownloadPolicy, redirected: bool) -> list[str]:
    """The addresses of `target`'s host, all of them public unless the policy trusts the server."""
    host = target.raw_host.decode("ascii")
    addresses = list(policy.resolve(host, target.port or _DEFAULT_PORTS[target.scheme]))
    if not addresses:
        raise _Transient("connection failed", f"no address for {host}")
    if policy.trusts(target):
        return addresses
    # Every address, not just the one connected to: a name with one private address is no stranger's.
    private = [a for a in addresses if not _is_public(a)]
    if private:
        reason = "redirect to a private address" if redirected else "private address"
        raise DownloadError(reason, f"{host} is {private[0]} ({target})")
    return addresses


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_public(address: str) -> bool:
    """Whether `address` reaches the public internet, and only it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a resolver's answer we cannot read is no address we can vouch for
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address can carry an IPv4 one that the network delivers to: mapped, 6to4, NAT64.
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        embedded = ip.ipv4_mapped or ip.sixtofour or nat64
        if embedded is not None and not _is_public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect from `url` points; only to another web URL."""
    location = location.strip()
    try:
        if urllib.parse.urlsplit(location).scheme or location.startswith("//"):
            # It names a server, which must be there: joined, "http://" or "//" would keep the current one.
            target = f"{httpx.URL(url).scheme}:{location}" if location.startswith("//") else location
        else:
            target = str(httpx.URL(url).join(location))
    except (httpx.InvalidURL, ValueError) as e:
        raise DownloadError("redirect to a bad url", f"{location} from {url}") from e
    if _web_url(target) is None:
        raise DownloadError("redirect to a bad url", f"{location} from {url}")
    return target


def _image_body(response: httpx.Response, url: str, limits: DownloadLimits, deadline: float) -> bytes:
    # 3xx here are not redirects to follow: 304, or a redirect that says not where.
    if response.status_code >= 300:
        error = _Transient if response.status_code >= 500 or response.status_code == 429 else DownloadError
        raise error("http error", f"HTTP {response.status_code} for {url}")
    _check_headers(response.headers, url, limits)
    body = _read_capped(response, url, limits, deadline)
    if image_suffix(body) is None:
        raise DownloadError("not an image", f"unknown content for {url}")
    return body


def _check_headers(headers: httpx.Headers, url: str, limits: DownloadLimits) -> None:
    length = headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > limits.max_bytes:
        raise DownloadError("too large", f"{length} bytes at {url}")
    kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise DownloadError("not an image", f"{kind} at {url}")


def _read_capped(response: httpx.Response, url: str, limits: DownloadLimits, deadline: float) -> bytes:
    # iter_raw yields what each socket read gives, so the cap and the deadline are checked at least
    # once per `timeout` seconds, however slowly the bytes come.
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limits.max_bytes:
            raise DownloadError("too large", f"over {limits.max_bytes} bytes at {url}")
        if time.monotonic() > deadline:
            raise DownloadError("timeout", f"over {limits.deadline}s for {url}")
    return bytes(body)


def image_suffix(data: bytes) -> str | None:
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
