"""The OpenAPI document matches the routes and the bodies they send; the match-compatible API under /match."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from animeback.config import PROJECT_ROOT
from animeback.sources.synthetic import grab_frame
from animeback.web import create_app
from tests.conftest import LIBRARY

DOC = json.loads((PROJECT_ROOT / "static" / "openapi.json").read_text())


@pytest.fixture
def client(indexed):
    index, _ = indexed
    return create_app(index.settings, warm=False, index=index).test_client()


def _conforms(response, path: str, method: str) -> dict:
    """Check a JSON response against the document's schema for its path, method and status."""
    body = json.loads(response.data, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))  # no NaN/Infinity
    spec = DOC["paths"][path][method]["responses"][str(response.status_code)]
    schema = spec["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DOC["components"]}).validate(body)
    return body


def test_the_openapi_document_is_a_valid_openapi_3_1_document():
    from openapi_spec_validator import validate

    validate(DOC)  # raises, naming the first error


def test_every_route_is_documented_and_every_documented_route_exists(client):
    documented = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper()) for path, ops in DOC["paths"].items() for method in ops
    }
    served = {
        (re.sub(r"<[^>]+>", "{}", rule.rule), method)
        for rule in client.application.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == documented
    assert client.get("/openapi.json").get_json() == DOC


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def stills(tmp_path_factory, library_template):
    """Four distinct frames of the test episodes, as RGB arrays."""
    tmp = tmp_path_factory.mktemp("stills")
    frames = []
    for i, (series, name, _seed, _duration) in enumerate(LIBRARY):
        for at in (2.0, 10.0):
            path = grab_frame(library_template / series / name, at, tmp / f"{i}-{at}.png")
            frames.append(np.asarray(Image.open(path).convert("RGB")))
    return frames[:4]


def test_documented_bodies_for_search_me_status_and_errors(client, stills):
    body = _conforms(
        client.post("/search?anilistInfo", data=_png(stills[0]), content_type="image/png"), "/search", "post"
    )
    assert body["result"]
    _conforms(client.get("/search"), "/search", "get")
    _conforms(client.post("/search", data=b"junk", content_type="image/png"), "/search", "post")
    _conforms(client.get("/me"), "/me", "get")
    _conforms(client.get("/status"), "/status", "get")
    assert _conforms(client.get("/series"), "/series", "get")["series"]
    _conforms(client.get("/me?period=hour"), "/me", "get")
    _conforms(client.get("/video/forged.token"), "/video/{id}", "get")
    _conforms(client.post("/anilist", json={"query": "{ Media(id: 101) { id title { romaji } } }"}), "/anilist", "post")


def test_match_add_search_in_any_orientation_compare_list_delete(client, stills):
    names = [f"stills/{i}.png" for i in range(len(stills))]
    for i, (name, rgb) in enumerate(zip(names, stills)):
        body = _conforms(
            client.post(
                "/match/add",
                data={"filepath": name, "metadata": json.dumps({"n": i}), "image": (io.BytesIO(_png(rgb)), "x.png")},
            ),
            "/match/add",
            "post",
        )
        assert body == {"status": "ok", "error": [], "method": "add", "result": []}
    assert _conforms(client.get("/match/count"), "/match/count", "get")["result"][0] >= len(names)
    listed = _conforms(client.get("/match/list?offset=0&limit=10000"), "/match/list", "get")["result"]
    assert set(names) <= set(listed) and listed == sorted(listed)

    target = stills[2]
    for variant in (target, target[:, ::-1], np.rot90(target), np.rot90(target[::-1], 3)):
        body = _conforms(
            client.post(
                "/match/search",
                data={"image": (io.BytesIO(_png(np.ascontiguousarray(variant))), "q.png"), "limit": "3"},
            ),
            "/match/search",
            "post",
        )
        assert body["result"][0]["filepath"] == names[2] and body["result"][0]["metadata"] == {"n": 2}
        assert body["result"][0]["score"] > 95 and len(body["result"]) <= 3
        assert len({r["filepath"] for r in body["result"]}) == len(body["result"])  # best score per image
    same = _conforms(
        client.post(
            "/match/compare",
            data={"image1": (io.BytesIO(_png(target)), "a.png"), "image2": (io.BytesIO(_png(target)), "b.png")},
        ),
        "/match/compare",
        "post",
    )["result"][0]["score"]
    other = client.post(
        "/match/compare",
        data={"image1": (io.BytesIO(_png(target)), "a.png"), "image2": (io.BytesIO(_png(stills[0])), "b.png")},
    ).get_json()
    assert same > 99 and other["result"][0]["score"] < same

    # exact filepath identity: near-identical paths are different images, and are not deleted
    assert client.delete("/match/delete", data={"filepath": names[1] + " "}).status_code == 404
    assert client.delete("/match/delete", data={"filepath": "stills/1"}).status_code == 404
    assert (
        _conforms(client.delete("/match/delete", data={"filepath": names[1]}), "/match/delete", "delete")["status"]
        == "ok"
    )
    assert names[1] not in client.get("/match/list?limit=10000").get_json()["result"]


def test_match_rejects_bad_input_with_a_message(client, stills):
    cases = [
        client.post("/match/add", data={"filepath": "x", "image": (io.BytesIO(b"not an image"), "x.png")}),
        client.post(
            "/match/add", data={"filepath": "x", "metadata": "{broken", "image": (io.BytesIO(_png(stills[0])), "x.png")}
        ),
        client.post(
            "/match/add", data={"filepath": "x", "metadata": "[1, 2]", "image": (io.BytesIO(_png(stills[0])), "x.png")}
        ),
        client.post("/match/add", data={"image": (io.BytesIO(_png(stills[0])), "x.png")}),
        client.post("/match/search", data={}),
        client.post("/match/search", data={"image": (io.BytesIO(_png(stills[0])), "x.png"), "limit": "-4"}),
        client.get("/match/list?offset=abc"),
        client.post("/match/search", data={"url": "http://127.0.0.1:1/x.png"}),
    ]
    for response in cases:
        body = _conforms(response, "/match/add", "post") if response.status_code == 400 else None
        assert response.status_code == 400, response.get_json()
        assert response.mimetype == "application/json" and body["status"] == "fail" and body["error"][0]
