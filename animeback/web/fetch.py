"""Fetch a query image from a URL (`/search?url=`) without letting a request reach inside the network.

http and https only. The host name is resolved once, every address it resolves to must be public (or in
`server.fetch_allow_networks`), and the connection goes to that vetted address (so DNS cannot change its
answer between the check and the connection). Redirects are followed by hand, at most 5, each checked the
same way. The body is read up to the size limit and the whole fetch must finish within the time limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import urllib3

from ..errors import FetchError, ImageTooLargeError

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
        raise FetchError(f"Failed to fetch image {url}: cannot resolve {host}") from None
    addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not address_allowed(a, extra_networks)]
    if not addresses or refused:
        raise FetchError(f"Failed to fetch image {url}: {host} resolves to a non-public address")
    return scheme, host, port, addresses[0]


def fetch_image(url: str, max_bytes: int, timeout_s: float, extra_networks: list[str]) -> bytes:
    """The body of an image URL, following at most 5 redirects, within max_bytes and timeout_s."""
    if len(url) > 4096:
        raise FetchError("Invalid image url: longer than 4096 characters")
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, address = _vetted_address(url, extra_networks)
        response = _request(url, scheme, host, port, address, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise FetchError(f"Failed to fetch image {url}: HTTP {response.status}")
            return _read_body(response, url, max_bytes, deadline)
        finally:
            response.release_conn()
    raise FetchError(f"Failed to fetch image: more than {MAX_REDIRECTS} redirects")


def fetch_query_image(settings, url: str) -> bytes:
    """fetch_image with the configured limits (search.max_image_bytes, server.fetch_*)."""
    return fetch_image(
        url, settings.search.max_image_bytes, settings.server.fetch_timeout_s, settings.server.fetch_allow_networks
    )


def _request(url: str, scheme: str, host: str, port: int, address: str, deadline: float):
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        host_header += f":{port}"
    remaining = max(0.1, deadline - time.monotonic())
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":  # connect to the vetted address, verify the certificate for the host name
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    try:
        return pool.urlopen(
            "GET",
            path,
            headers={"Host": host_header, "User-Agent": "AnimeBack image fetcher", "Accept": "image/*"},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"Failed to fetch image {url}: {type(exc).__name__}") from None


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
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"Failed to fetch image {url}: {type(exc).__name__}") from None
    return bytes(body)
