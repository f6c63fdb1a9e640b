"""The web page's guards against strangers on the network: the names it answers to (and what each may reach), how
many uploads it takes at once and for how long, and which addresses count as one client for the rate limit.

Policy only, no HTTP: `web_adapter.py` answers with it, `settings.py` checks `WEB_ALLOWED_HOSTS` with it.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_UPLOAD_SECONDS",
    "LOCAL_NAMES",
    "PROBE_PATHS",
    "Access",
    "AllowedHosts",
    "UploadSlots",
    "WebGuards",
    "WebhookHost",
    "client_key",
    "host_entry",
    "proxy_networks",
]

# A person on the page sends one photo at a time; a few scripts beside them fit too. Each upload may hold up to
# MAX_PHOTO_MB until it is answered, so this also bounds the memory the page can take: 8 x 20 MB.
DEFAULT_MAX_UPLOADS = 8
# A 20 MB photo takes under 30 s at 6 Mbit/s; a sender slower than that holds a place others could use.
DEFAULT_UPLOAD_SECONDS = 30.0
# The names this machine always has for itself: no one else's DNS can point them elsewhere.
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Listen addresses that mean "every address": the names the page is reached by cannot be known from them.
_EVERY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})
# Labels of letters, digits, hyphens and underscores, joined by dots (IPv4 addresses are such names too).
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a load balancer or an orchestrator asks a replica by its address: whether it lives, and whether it is ready.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

Entry = tuple[str, int | None]  # a name (IPv6 addresses in brackets) and a port, None for any port


def host_entry(text: str) -> Entry:
    """`text` (a name or an address, with a port or without, as in a Host header) as (name, port).

    Raises ValueError for anything else (a URL, a path, spaces, a port out of range).
    """
    text = text.strip().lower()
    port: str | None = None
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not a host: {text!r}")
        port = rest[1:] if rest else None
        name = f"[{ipaddress.IPv6Address(name).compressed}]"
    elif text.count(":") > 1:  # a bare IPv6 address, as WEB_HOST takes it: no port can follow
        name = f"[{ipaddress.IPv6Address(text).compressed}]"
    else:
        name, colon, after = text.partition(":")
        port = after if colon else None
        name = name.rstrip(".")  # "localhost." is localhost
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a host: {text!r}")
    if port is None:
        return name, None
    if not (port.isdigit() and 0 < int(port) < 65_536):
        raise ValueError(f"not a port: {port!r}")
    return name, int(port)


@dataclass(frozen=True)
class AllowedHosts:
    """The names the page answers to (a Host header naming another is refused): what keeps a web site whose
    DNS name is re-pointed at this machine (DNS rebinding) from reading the page or sending it photos."""

    entries: frozenset[Entry]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> AllowedHosts:
        """From `WEB_ALLOWED_HOSTS`'s entries; raises ValueError for one that is not a host."""
        return cls(frozenset(host_entry(text) for text in texts))

    @classmethod
    def default(cls, listen_host: str = "127.0.0.1") -> AllowedHosts:
        """This machine's own names, and the address it listens on when that is one address."""
        entries = {host_entry(name) for name in LOCAL_NAMES}
        if listen_host.strip() not in _EVERY_ADDRESS:
            # One that is no host at all is left out: binding to it fails, and says so, first.
            with contextlib.suppress(ValueError):
                entries.add(host_entry(listen_host))
        return cls(frozenset(entries))

    @classmethod
    def configured(cls, texts: Iterable[str], listen_host: str) -> AllowedHosts:
        """`WEB_ALLOWED_HOSTS` when it names any host (it replaces the default), else the default."""
        texts = [text for text in texts if text.strip()]
        return cls.parse(texts) if texts else cls.default(listen_host)

    def allows(self, host: str | None, default_port: int = 80) -> bool:
        """Whether `host` (a Host header, or the host of an Origin) is one of ours; no Host is not."""
        try:
            name, port = host_entry(host or "")
        except ValueError:
            return False
        return (name, None) in self.entries or (name, port or default_port) in self.entries

    def allows_origin(self, origin: str, host: str) -> bool:
        """Whether a page at `origin` may send photos to this server, reached as `host` (an allowed Host).

        The origin must be one of our names, on the port the request came to: another port of this machine
        is another program's page. The request's own Host is never the measure, since a rebound name is sent
        as the Host too.
        """
        parts = urlsplit(origin)
        default_port = _DEFAULT_PORTS.get(parts.scheme)
        if default_port is None or not parts.netloc:  # "null", file://, a sandboxed frame
            return False
        try:
            origin_port = host_entry(parts.netloc)[1] or default_port
            host_port = host_entry(host)[1] or default_port
        except ValueError:
            return False
        return origin_port == host_port and self.allows(parts.netloc, default_port)

    def __str__(self) -> str:
        return ", ".join(sorted(name if port is None else f"{name}:{port}" for name, port in self.entries))


class Access(enum.Enum):
    """What a request may reach, by the name it was sent to (its Host)."""

    EVERYTHING = "everything"  # one of WEB_ALLOWED_HOSTS (by default this machine's own names)
    WEBHOOK = "webhook"  # the webhook's public host: Telegram's POSTs to its path, nothing else
    PROBE = "probe"  # an address: /healthz and /readyz, as load balancers ask, without /readyz's reasons
    NOTHING = "nothing"


@dataclass(frozen=True)
class WebhookHost:
    """The webhook's public name (from TELEGRAM_WEBHOOK_URL) and its path: all that name may reach."""

    hosts: AllowedHosts
    path: str

    @classmethod
    def of(cls, url: str) -> WebhookHost:
        parts = urlsplit(url)
        return cls(AllowedHosts.parse([parts.netloc]), parts.path or "/")


def _is_address(host: str | None) -> bool:
    """Whether a Host header names an IP address (with a port or without): never a rebound DNS name."""
    try:
        name, _ = host_entry(host or "")
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def proxy_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """`WEB_TRUSTED_PROXIES`'s entries (addresses or CIDR networks) as networks; ValueError for any other."""
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts if text.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(remote: str | None) -> str:
    """Who counts as one sender for the rate limit: an IPv4 address, or an IPv6 /64.

    A home or a phone is given a whole /64 and picks new addresses in it at will, so one address each would
    be no limit. An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is the same client as over IPv4.
    """
    if not remote:
        return "local"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:  # a Unix socket's path, say
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return str(address)


class UploadSlots:
    """At most `limit` uploads read and answered at once; a full house answers "busy" at once, never queues.

    Used from the event loop only, so a plain count is enough.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        """True and a place is taken (give it back with `give_back`), or False when all are taken."""
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


@dataclass(frozen=True)
class WebGuards:
    """How the page guards itself, from `WEB_ALLOWED_HOSTS`, `WEB_MAX_UPLOADS`, `WEB_UPLOAD_SECONDS`,
    `WEB_TRUSTED_PROXIES` and the webhook's URL."""

    hosts: AllowedHosts = field(default_factory=AllowedHosts.default)
    max_uploads: int = DEFAULT_MAX_UPLOADS
    upload_seconds: float = DEFAULT_UPLOAD_SECONDS
    webhook: WebhookHost | None = None
    trusted_proxies: tuple[Network, ...] = ()

    def access(self, host: str | None, method: str, path: str) -> Access:
        """What a request for `path`, sent to the name `host`, may reach.

        The webhook's public name reaches its path and nothing more: the page, `/api/classify` and `/metrics` stay
        on the names of WEB_ALLOWED_HOSTS. A probe by address (any IP literal: behind a load balancer or a port
        mapping the replica cannot know which address it is reached by, and an address is never a rebound DNS
        name) reaches `/healthz` and `/readyz` on any configuration.
        """
        if self.hosts.allows(host):
            return Access.EVERYTHING
        webhook = self.webhook
        if webhook is not None and path == webhook.path and method == "POST" and webhook.hosts.allows(host):
            return Access.WEBHOOK
        if path in PROBE_PATHS and method in ("GET", "HEAD") and _is_address(host):
            return Access.PROBE
        return Access.NOTHING

    def client_address(self, peer: str | None, forwarded: Sequence[str] = ()) -> str | None:
        """The sender's address: the connecting `peer`'s, or, when the peer is one of WEB_TRUSTED_PROXIES, what
        X-Forwarded-For (`forwarded`, each header's value in order) says the proxies saw.

        Each proxy appends the address it was reached from, so the list is read from the right: the right-most
        address that is not itself a trusted proxy is the sender (what lies left of it, the sender wrote itself).
        """
        if not self.trusted_proxies or not self._trusted(peer):
            return peer
        client = peer
        hops = [hop for header in forwarded for hop in header.split(",")]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:  # not an address: no proxy of ours wrote it, so nothing left of it is believed
                break
            client = str(address)
            if not self._trusted(client):
                break
        return client

    def _trusted(self, remote: str | None) -> bool:
        address = _address(remote or "")
        return address is not None and any(address in network for network in self.trusted_proxies)
