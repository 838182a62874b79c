"""Generated hostile requests against every route of static/openapi.json: no answer is a 5xx, and every API
answer is JSON. The routes and their parameter names come from the document, the values from hypothesis."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from animeback.config import PROJECT_ROOT
from animeback.web import create_app

DOC = json.loads((PROJECT_ROOT / "static" / "openapi.json").read_text())
SITE_PAGES = {"/", "/library", "/static/{name}", "/openapi.json", "/favicon.ico"}  # not JSON answers
ROUTES = [(path, method, op) for path, ops in DOC["paths"].items() for method, op in ops.items()]


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


IMAGES = [_image(fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP")]
# Text a hostile client sends: control characters, lone surrogates turned to bytes, path tricks, long runs.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "%00",
            "../../etc/passwd",
            "%2e%2e%2f",
            "NaN",
            "Infinity",
            "-1",
            "1e309",
            "99999999999999999999",
            "0x7f",
            "{}",
            "[]",
            '{"a":',
            "\\ud800",
            "<script>",
            "' OR 1=1 --",
        ]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "9", "%", "\u00e9", "\U0001f600"]), st.integers(1, 5000)),
)
# Image URLs that never leave this machine: non-public literal addresses (refused before any connection) and
# schemes that are not fetched at all. No DNS name, so no lookup leaves the sandbox either.
hostile_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "ftp", "file", "gopher", "javascript", "HTTP"]),
    st.sampled_from(
        [
            "127.0.0.1",
            "[::1]",
            "10.0.0.1",
            "169.254.169.254",
            "[64:ff9b::a9fe:a9fe]",
            "0.0.0.0",
            "2130706433",
            "0x7f.1",
            "[::ffff:127.0.0.1]",
            "192.168.0.1",
            "user:pass@127.0.0.1",
        ]
    ),
    st.sampled_from(["", ":0", ":1", ":65536", ":99999", ":-1", ":http"]),
    st.text(max_size=20),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(IMAGES).map(lambda data: data[: len(data) // 2]),  # truncated images
    st.sampled_from(
        [
            b"GIF89a" + b"\xff" * 20,
            b"\x89PNG\r\n\x1a\n" + b"\0" * 30,
            b"\xff\xd8\xff" + b"\0" * 30,
            b"RIFF\0\0\0\0WEBP",
            b"BM" + b"\0" * 50,
            b"<svg/>",
            b'{"vector": [1]}',
        ]
    ),
)
content_types = st.sampled_from(
    [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/json",
        "text/plain",
        "",
        "image/",
    ]
)


@st.composite
def requests(draw):
    path, method, op = draw(st.sampled_from(ROUTES))
    query, headers, concrete = {}, {}, path
    for parameter in op.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            concrete = concrete.replace("{" + name + "}", re.sub(r"[/?#]", "_", draw(hostile_text)) or "x")
        elif draw(st.booleans()):
            value = draw(hostile_urls) if name == "url" else draw(hostile_text)
            if where == "header":
                headers[name] = (
                    value.encode("latin-1", "replace").decode("latin-1").replace("\n", " ").replace("\r", " ")
                )
            else:
                query[name] = value
    body, content_type = b"", ""
    if "requestBody" in op or draw(st.booleans()):
        body, content_type = draw(bodies), draw(content_types)
    if method in ("post", "delete") and path.startswith("/match") and draw(st.booleans()):
        fields = {
            name: draw(hostile_text)
            for name in draw(
                st.sets(
                    st.sampled_from(["filepath", "metadata", "limit", "all_orientations", "url", "url1", "url2"]),
                    max_size=4,
                )
            )
        }
        fields["image"] = (io.BytesIO(draw(bodies)), "x.png")
        return concrete, method, query, headers, None, fields
    return concrete, method, query, headers, (body, content_type), None


@pytest.fixture(scope="module")
def client(indexed):
    index, _ = indexed
    return create_app(index.settings, warm=False, index=index).test_client()


@pytest.mark.slow  # 1,000 requests
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_no_generated_hostile_request_gets_a_5xx_or_a_non_json_api_answer(client, request):
    path, method, query, headers, raw, form = request
    call = getattr(client, method)
    if form is not None:
        response = call(path, query_string=query, headers=headers, data=form, content_type="multipart/form-data")
    else:
        body, content_type = raw
        response = call(path, query_string=query, headers=headers, data=body, content_type=content_type or None)
    assert response.status_code < 500, (path, method, query, response.status_code, response.data[:300])
    documented = next(p for p, m, _ in ROUTES if m == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]*", p), path))
    media = documented in ("/video/{id}", "/image/{id}") and response.status_code == 200
    if documented not in SITE_PAGES and not media:
        assert response.is_json, (path, response.status_code, response.mimetype, response.data[:200])
        json.loads(response.data, parse_constant=lambda c: pytest.fail(f"{c} in an answer"))  # strict JSON
