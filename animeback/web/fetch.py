"""Fetch a query image from a URL (`/search?url=`) without letting a request reach inside the network.

http and https only. The host name is resolved once, every address it resolves to must be public (or in
`server.fetch_allow_networks`), and the connection goes to that vetted address (so DNS cannot change its
answer between the check and the connection). Redirects are followed by hand, at most 5, each checked the
same way. The body is read up to the size limit, and the whole fetch (connecting, headers, body, redirects) must
finish within the time limit.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import BaseHTTPResponse

from ..errors import AnimeBackError, FetchError, ImageTooLargeError

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


# Networks Python's ipaddress rates global that no image is fetched from: IETF protocol assignments (192.0.0.8, the
# dummy address, among them) and IPv6 site-local addresses (deprecated, still routed inside some networks).
_NEVER_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("192.0.0.0/24", "fec0::/10"))
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215) and IPv4-compatible.
_IPV4_IN_LOW_BITS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, when it carries one: mapped (::ffff:a.b.c.d), NAT64, IPv4-compatible
    (::a.b.c.d), 6to4 (2002:AABB:CCDD::) or Teredo (its client address)."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in network for network in _IPV4_IN_LOW_BITS) and int(ip) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str, extra_networks: list[str]) -> bool:
    """True when an IP address is public, or inside one of the explicitly allowed networks."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            if ip.ipv4_mapped is None and not address_allowed(str(inner), extra_networks):
                return False  # a tunnel or translator to an address inside the network: refused whatever wraps it
            ip = inner if ip.ipv4_mapped else ip  # ::ffff:127.0.0.1 is loopback itself
    if any(ip in ipaddress.ip_network(n, strict=False) for n in extra_networks):
        return True
    if any(ip.version == network.version and ip in network for network in _NEVER_PUBLIC):
        return False
    return ip.is_global and not ip.is_multicast


def _vetted_address(url: str, extra_networks: list[str]) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) for a URL that may be fetched; raises FetchError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("Invalid image url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("Invalid image url: only http and https URLs can be fetched")
    if parts.username is not None or parts.password is not None:
        raise FetchError("Invalid image url: credentials in URLs are not accepted")
    host = parts.hostname
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(
            f"Failed to fetch image {url}: {host} is unknown or resolves to a non-public address"
        ) from None
    addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not address_allowed(a, extra_networks)]
    if not addresses or refused:
        # The same words as for an unknown name: a caller learns nothing of which internal names exist.
        raise FetchError(f"Failed to fetch image {url}: {host} is unknown or resolves to a non-public address")
    return scheme, host, port, addresses[0]


def fetch_image(url: str, max_bytes: int, timeout_s: float, extra_networks: list[str]) -> bytes:
    """The body of an image URL, following at most 5 redirects, within max_bytes and timeout_s."""
    if len(url) > 4096:
        raise FetchError("Invalid image url: longer than 4096 characters")
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, address = _vetted_address(url, extra_networks)
        with _Exchange(url, scheme, host, port, address, deadline) as response:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise FetchError(f"Failed to fetch image {url}: HTTP {response.status}")
            return _read_body(response, url, max_bytes, deadline)
    raise FetchError(f"Failed to fetch image: more than {MAX_REDIRECTS} redirects")


def fetch_query_image(settings, url: str) -> bytes:
    """fetch_image with the configured limits (search.max_image_bytes, server.fetch_*)."""
    return fetch_image(
        url, settings.search.max_image_bytes, settings.server.fetch_timeout_s, settings.server.fetch_allow_networks
    )


class _Exchange:
    """One request to a vetted address and its response, under a deadline for the whole of it: a watchdog shuts the
    socket down when the deadline passes, so a server that drips its headers or body a byte at a time (each read
    arriving within any per-read timeout) cannot hold a worker past it."""

    def __init__(self, url: str, scheme: str, host: str, port: int, address: str, deadline: float):
        self.url, self.deadline = url, deadline
        parts = urlsplit(url)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = f"[{host}]" if ":" in host else host
        self.host_header = host_header if port in (80, 443) else f"{host_header}:{port}"
        remaining = max(0.1, deadline - time.monotonic())
        self.connection: HTTPConnection
        if scheme == "https":  # connect to the vetted address, verify the certificate for the host name
            self.connection = HTTPSConnection(
                address, port, timeout=remaining, server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED"
            )
        else:
            self.connection = HTTPConnection(address, port, timeout=remaining)
        self.watchdog = threading.Timer(remaining, self._abort)
        self.watchdog.daemon = True

    def _abort(self) -> None:
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the read blocked on it, in whichever thread
            except OSError:
                pass

    def __enter__(self) -> BaseHTTPResponse:
        self.watchdog.start()
        headers = {"Host": self.host_header, "User-Agent": "AnimeBack image fetcher", "Accept": "image/*"}
        try:
            self.connection.request("GET", self.path, headers=headers, preload_content=False)
            return self.connection.getresponse()
        except BaseException as exc:
            self.__exit__(None, None, None)
            raise fetch_failure(self.url, exc, self.deadline) from None

    def __exit__(self, *exc: object) -> None:
        self.watchdog.cancel()
        self.connection.close()


def fetch_failure(url: str, exc: BaseException, deadline: float) -> BaseException:
    """The FetchError for a failed exchange (a domain error passes as it is)."""
    if isinstance(exc, AnimeBackError) or not isinstance(
        exc, (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)
    ):
        return exc
    if time.monotonic() >= deadline:
        return FetchError(f"Failed to fetch image {url}: took too long")
    return FetchError(f"Failed to fetch image {url}: {type(exc).__name__}")


def _read_body(response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLargeError(f"the image at {url} is larger than {max_bytes} bytes")
    body = bytearray()
    try:
        for chunk in response.stream(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise ImageTooLargeError(f"the image at {url} is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchError(f"Failed to fetch image {url}: took too long")
    except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
        raise fetch_failure(url, exc, deadline) from None
    if time.monotonic() > deadline:  # the watchdog may have cut the body short without an error from the stream
        raise FetchError(f"Failed to fetch image {url}: took too long")
    return bytes(body)
