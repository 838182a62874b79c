"""`?url=` fetching refuses every non-public target (literal, by DNS, by redirect) and keeps its limits.

Real HTTP servers on loopback stand in for "internal" services: 127.0.0.1 is never allowed; 127.0.0.2 plays
an allowed image host when the test lists it in server.fetch_allow_networks.
"""

from __future__ import annotations

import http.server
import io
import socket
import threading
import time
from typing import ClassVar

import pytest
from PIL import Image

from animeback.config import updated
from animeback.errors import ImageTooLargeError
from animeback.web import create_app
from animeback.web.fetch import FetchError, address_allowed, fetch_image


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).hits.append(f"{self.server.server_address[0]}{self.path}")
        if self.path == "/img.png":
            body = _png()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
        elif self.path.startswith("/loop/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(301)
            self.send_header("Location", f"/loop/{n + 1}")
            self.end_headers()
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * 300_000)
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def servers():
    """{"internal": base URL on 127.0.0.1, "allowed": base URL on 127.0.0.2}."""
    running, urls = [], {}
    for name, address in (("internal", "127.0.0.1"), ("allowed", "127.0.0.2")):
        server = http.server.ThreadingHTTPServer((address, 0), _Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
        urls[name] = f"http://{address}:{server.server_address[1]}"
    yield urls
    for server in running:
        server.shutdown()


def test_non_public_addresses_are_refused():
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
    ):
        assert not address_allowed(address, []), address
    assert address_allowed("93.184.216.34", []) and address_allowed("2606:4700::1111", [])
    assert address_allowed("10.1.2.3", ["10.1.2.0/24"]) and not address_allowed("10.1.3.3", ["10.1.2.0/24"])


def test_internal_targets_are_refused_before_any_connection(servers):
    _Handler.hits.clear()
    port = servers["internal"].rsplit(":", 1)[1]
    for url in (
        f"{servers['internal']}/img.png",
        f"http://localhost:{port}/img.png",
        f"http://[::1]:{port}/img.png",
        f"http://2130706433:{port}/img.png",
        f"http://0x7f000001:{port}/img.png",
        f"http://[::ffff:127.0.0.1]:{port}/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.png",
        "gopher://127.0.0.1:70/",
        "http://user:pw@example.com/",
        "not a url",
        "http://",
        "http://[::1/",
    ):
        with pytest.raises(FetchError):
            fetch_image(url, 10_000_000, 5.0, [])
    assert _Handler.hits == []  # nothing internal was ever contacted


def test_allowed_host_fetches_but_redirects_are_rechecked_and_capped(servers):
    allow = ["127.0.0.2/32"]
    assert fetch_image(f"{servers['allowed']}/img.png", 10_000_000, 5.0, allow) == _png()
    _Handler.hits.clear()
    with pytest.raises(FetchError, match="non-public"):
        fetch_image(f"{servers['allowed']}/redirect?to={servers['internal']}/img.png", 10_000_000, 5.0, allow)
    assert not any(hit.startswith("127.0.0.1") for hit in _Handler.hits)
    with pytest.raises(FetchError, match="Invalid image url"):
        fetch_image(f"{servers['allowed']}/redirect?to=file:///etc/passwd", 10_000_000, 5.0, allow)
    with pytest.raises(FetchError, match="redirects"):
        fetch_image(f"{servers['allowed']}/loop/0", 10_000_000, 5.0, allow)
    assert fetch_image(f"{servers['allowed']}/redirect?to=/img.png", 10_000_000, 5.0, allow) == _png()
    with pytest.raises(ImageTooLargeError):
        fetch_image(f"{servers['allowed']}/big", 100_000, 5.0, allow)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_image(f"{servers['allowed']}/missing", 100_000, 5.0, allow)


def test_search_by_url_through_the_api(indexed, servers):
    index, _ = indexed
    client = create_app(index.settings, warm=False, index=index).test_client()
    response = client.get(f"/search?url={servers['internal']}/img.png")
    assert response.status_code == 400 and "non-public" in response.get_json()["error"]
    allowing = updated(index.settings, server={"fetch_allow_networks": ["127.0.0.2/32"]})
    client = create_app(allowing, warm=False, index=index).test_client()
    response = client.get(f"/search?url={servers['allowed']}/img.png")
    assert response.status_code == 200 and response.get_json()["error"] == ""


def _dripping_server(address: str, head: bytes, drip: bytes, interval_s: float):
    """A server that sends `head`, then `drip` one byte every interval_s (bounded: at most 60 bytes), per connection."""
    listener = socket.create_server((address, 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(head)
                for byte in drip[:60]:
                    time.sleep(interval_s)
                    conn.sendall(bytes([byte]))
            except OSError:
                pass  # the client gave up: what is being tested

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://{address}:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    "head,drip",
    [
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 100),  # headers dripped a byte at a time
        (b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n", b"\x89PNG" + b"\0" * 196),  # and the body
    ],
    ids=["headers", "body"],
)
def test_the_fetch_deadline_covers_slow_headers_and_bodies(head, drip):
    listener, url = _dripping_server("127.0.0.3", head, drip, 0.2)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took too long"):
        fetch_image(f"{url}/slow.png", 10_000_000, 1.5, ["127.0.0.3/32"])
    assert time.monotonic() - started < 3.0  # the limit held, though every byte came well within it
    listener.close()
