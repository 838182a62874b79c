"""A live AnimeBack under gunicorn on loopback: indexing while serving, a store host that heals, slow clients, and
malformed requests that must never produce a 500 or stop the server (the trace.moe clients: test_clients.py; the
website in Chromium: test_website.py)."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from animeback.sources.synthetic import episode_scenes, grab_frame, make_episode
from tests.conftest import LIBRARY, ROOT
from tests.live_server import Live
from tests.live_server import get as _get

pytestmark = pytest.mark.live  # gunicorn, headless Chromium and a trace.moe client over HTTP


@pytest.fixture(scope="module")
def live(tmp_path_factory, library_template):
    live = Live(tmp_path_factory.mktemp("live"), library_template)
    with live.indexed_and_serving():
        yield live


def _shot(live: Live, entry: int, scene: int = 1) -> tuple[Path, float]:
    series, name, seed, duration = LIBRARY[entry]
    _, start, end = episode_scenes(seed, duration)[scene]
    at = round(start + (end - start) * 0.6, 2)
    return grab_frame(live.library / series / name, at, live.tmp / f"shot-{entry}-{scene}.png"), at


def test_indexing_while_serving_is_visible_without_restart(live):
    """`process` runs beside gunicorn; the new episode is searchable as soon as process returns."""
    new = make_episode(live.library / "303" / "New Show - 07.mp4", seed=7, duration=12.0)
    _, start, end = episode_scenes(7, 12.0)[1]
    at = round(start + (end - start) * 0.6, 2)
    shot = grab_frame(new, at, live.tmp / "new-shot.png").read_bytes()
    answers = []
    indexer = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "-q", "process"],
        env=live.env,
        cwd=live.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while indexer.poll() is None:  # searches keep being answered while the index is written
        answers.append(_post(live, "/search", shot, "image/png")[0])
    assert indexer.returncode == 0, indexer.stderr
    finished = time.monotonic()
    status, body = _post(live, "/search", shot, "image/png")
    best = json.loads(body)["result"][0]
    visible_after = time.monotonic() - finished
    assert status == 200 and best["anilist"] == 303 and best["episode"] == 7 and abs(best["at"] - at) <= 1.5
    assert answers and set(answers) == {200}
    assert visible_after < 5.0


def _post(live: Live, path: str, body: bytes, content_type: str, headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_killed_store_host_heals_without_a_reload(live):
    """kill -9 of the store host while gunicorn serves: at most a few clean 503s, then answers again."""
    from animeback.config import load_settings
    from animeback.stores.host import connect

    shot, at = _shot(live, 0)
    png = shot.read_bytes()
    assert _post(live, "/search", png, "image/png")[0] == 200
    store = connect(load_settings(environ=live.env))
    host = store.host_pid
    store.close()
    os.kill(host, signal.SIGKILL)
    statuses, started = [], time.monotonic()
    while time.monotonic() - started < 60:
        status, body = _post(live, "/search", png, "image/png")
        statuses.append(status)
        if status == 200:
            break
        error = json.loads(body)["error"]
        assert status == 503 and ("store host" in error or "Milvus" in error), (status, error)
    healed = time.monotonic() - started
    assert statuses[-1] == 200 and healed < 30, (statuses, healed)
    best = json.loads(body)["result"][0]
    assert best["filename"] == LIBRARY[0][1] and abs(best["at"] - at) <= 1.5
    for _ in range(4):  # every worker heals, not only the one that answered first
        assert _post(live, "/search", png, "image/png")[0] == 200
        assert _get(f"{live.base}/me")[0] == 200


def test_slow_clients_do_not_hold_up_a_search(live):
    """20 connections that never finish their request (headers dripped, or a body that never comes) beside
    normal searches: the searches are answered as if they were not there."""
    png = _shot(live, 0)[0].read_bytes()
    assert _post(live, "/search", png, "image/png")[0] == 200  # warm
    slow = []
    for i in range(20):
        connection = socket.create_connection(("127.0.0.1", live.port), timeout=30)
        if i % 2:  # a lying Content-Length: the body never comes
            connection.sendall(
                b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n\x89PNG"
            )
        else:  # headers that never end
            connection.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        slow.append(connection)
    try:
        time.sleep(1.0)
        for _ in range(3):
            started = time.monotonic()
            status, _ = _post(live, "/search", png, "image/png")
            assert status == 200 and time.monotonic() - started < 10.0
    finally:
        for connection in slow:
            connection.close()


def test_malformed_requests_never_yield_500(live):
    shot, _ = _shot(live, 0)
    png = shot.read_bytes()
    boundary = "XyZ"
    cases = [
        (
            "/search",
            b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + png[:50],
            f"multipart/form-data; boundary={boundary}",
        ),  # truncated multipart
        ("/search", b"garbage", "multipart/form-data"),  # no boundary
        ("/search", png[: len(png) // 3], "image/png"),  # truncated image
        ("/search", b"GIF89a" + b"\xff" * 20, "image/gif"),
        (
            "/search",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x00\x00\x00\x01\x00\x00\x08\x02\x00\x00\x00",
            "image/png",
        ),
        ("/search", b'{"vector": [1, 2, 3]}', "application/json"),
        ("/search", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        ("/search?anilistID=" + "9" * 5000, png, "image/png"),
        ("/search?anilistID=%00%01", png, "image/png"),
        ("/search?url=http://%5B::1%5D:1/", b"", "text/plain"),
        ("/search?url=" + "a" * 5000, b"", "text/plain"),
        ("/search?cutBorders=%ff%fe&anilistInfo=%00", png, "image/png"),
        ("/match/search?limit=99999999999999999999", png, "image/png"),
        ("/match/compare", b"", "multipart/form-data; boundary=x"),
        ("/match/add", b"filepath=%ff%fe&metadata=%7B", "application/x-www-form-urlencoded"),
        ("/video/%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"", "text/plain"),
    ]
    for path, body, content_type in cases:
        status, data = _post(live, path, body, content_type)
        assert (status != 500 and 400 <= status < 500) or status == 200, (path, status, data[:200])
        assert json.loads(data)  # always JSON
    for path in ("/video/abc.def", "/image/" + "A" * 3000 + ".x", "/search?url=gopher://x", "/nope", "/me?key=bad"):
        status, data = _get(live.base + path)
        assert 400 <= status < 500 and "error" in json.loads(data), (path, status)
    # a declared huge upload is refused from its header, before the body is read
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    connection.putrequest("POST", "/search")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(10 * 1024**3))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "too large" in json.loads(response.read())["error"]
    connection.close()
    for content_type in ("image/png", "multipart/form-data; boundary=XyZ"):  # a malformed chunked body
        with socket.create_connection(("127.0.0.1", live.port), timeout=30) as raw:
            raw.sendall(
                f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nnot a chunk\r\n".encode()
            )
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"could not be read" in body, answer[:300]
    for raw_request in (
        b"GARBAGE\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", live.port), timeout=30) as raw:  # refused by gunicorn itself
            raw.sendall(raw_request)
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b" 4" in head.split(b"\r\n")[0] and b"application/json" in head, answer[:300]
        assert json.loads(body)["error"]
    assert _get(f"{live.base}/status")[0] == 200  # still answering


def _multipart(fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body; values are str, or (filename, bytes) for files."""
    boundary = "AnimeBackTestBoundary"
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\nContent-Type: image/png'
            parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + value[1] + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_match_api_previews_and_openapi_over_http(live):
    shot, _ = _shot(live, 1)
    body, content_type = _multipart(
        {"filepath": "live/visual.png", "metadata": '{"from": "live"}', "image": ("visual.png", shot.read_bytes())}
    )
    status, data = _post(live, "/match/add", body, content_type)
    assert status == 200 and json.loads(data)["status"] == "ok"
    body, content_type = _multipart({"image": ("q.png", shot.read_bytes()), "limit": "1"})
    status, data = _post(live, "/match/search", body, content_type)
    result = json.loads(data)["result"]
    assert status == 200 and result[0]["filepath"] == "live/visual.png" and result[0]["score"] > 99
    status, data = _post(live, "/search?anilistID=101", shot.read_bytes(), "image/png")
    image_url = json.loads(data)["result"][0]["image"]
    request = urllib.request.Request(image_url, headers={"Accept": "image/webp"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"] == "image/webp" and response.read(4) == b"RIFF"
    status, data = _get(f"{live.base}/openapi.json")
    assert status == 200 and json.loads(data)["openapi"].startswith("3.1")
