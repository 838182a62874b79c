"""Hostile input, replayed: writes without a key, metadata that would poison later answers, addresses that lead
back inside the network, and config errors that would print secrets."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from animeback.config import load_settings, updated
from animeback.errors import ConfigError
from animeback.web import create_app
from animeback.web.fetch import address_allowed

ELSEWHERE = {"REMOTE_ADDR": "198.51.100.23"}  # a caller on another machine


def _png(seed: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _add(client, filepath: str, metadata: str | None = None, **kw):
    data = {"filepath": filepath, "image": (io.BytesIO(_png()), "a.png")}
    if metadata is not None:
        data["metadata"] = metadata
    return client.post("/match/add", data=data, **kw)


@pytest.fixture
def index(indexed):
    return indexed[0]


def test_writes_need_an_admin_key_or_this_machine(index):
    client = create_app(index.settings, warm=False, index=index).test_client()
    response = _add(client, "hostile/a.png", environ_base=ELSEWHERE)
    assert response.status_code == 403 and "only from this machine" in response.get_json()["error"][0]
    response = client.delete("/match/delete", data={"filepath": "hostile/a.png"}, environ_base=ELSEWHERE)
    assert response.status_code == 403 and response.get_json()["status"] == "fail"
    assert _add(client, "hostile/a.png").status_code == 200  # from loopback, while no admin key is configured

    keys = {"k-admin": {"id": "ops", "admin": True}, "k-user": {"id": "user"}}
    guarded = create_app(updated(index.settings, api={"keys": keys}), warm=False, index=index).test_client()
    response = _add(guarded, "hostile/b.png")  # with an admin key configured, loopback alone is not enough
    assert response.status_code == 403 and "admin API key" in response.get_json()["error"][0]
    assert _add(guarded, "hostile/b.png", headers={"x-trace-key": "k-user"}).status_code == 403
    assert _add(guarded, "hostile/b.png", headers={"x-trace-key": "k-admin"}, environ_base=ELSEWHERE).status_code == 200
    for path in ("hostile/a.png", "hostile/b.png"):
        response = guarded.delete("/match/delete", data={"filepath": path}, headers={"x-trace-key": "k-admin"})
        assert response.status_code == 200


def test_match_reads_count_against_the_search_limits(index):
    limited = updated(index.settings, api={"anonymous_quota": 1})
    client = create_app(limited, warm=False, index=index).test_client()
    image = {"image": (io.BytesIO(_png(5)), "q.png")}
    address = {"REMOTE_ADDR": "198.51.100.77"}
    assert client.post("/match/search", data=image, environ_base=address).status_code == 200
    response = client.post("/match/search", data={"image": (io.BytesIO(_png(5)), "q.png")}, environ_base=address)
    assert response.status_code == 402 and response.get_json()["error"] == ["Search quota depleted"]


@pytest.mark.parametrize(
    "metadata,message",
    [
        ('{"v": NaN}', "NaN is not a JSON value"),
        ('{"v": Infinity}', "Infinity is not a JSON value"),
        ('{"v": -Infinity}', "-Infinity is not a JSON value"),
        ("[" * 100_000 + "]" * 100_000, "larger than"),
        ('{"a":' + "[" * 5000 + "]" * 5000 + "}", "nested more than 32 levels"),
        ('{"a": "\\ud800"}', "not valid Unicode"),
        ('{"n": ' + "9" * 5000 + "}", "not valid JSON"),
        ('["an", "array"]', "must be a JSON object"),
        ("{'single': 'quotes'}", "not valid JSON"),
    ],
)
def test_metadata_that_would_poison_later_answers_is_refused(index, metadata, message):
    client = create_app(index.settings, warm=False, index=index).test_client()
    response = _add(client, "hostile/poison.png", metadata)
    body = json.loads(response.data)  # strict: a bare NaN would fail here
    assert response.status_code == 400 and body["status"] == "fail" and message in body["error"][0]
    assert client.get("/match/list").get_json()["result"].count("hostile/poison.png") == 0


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the cloud metadata service
        "64:ff9b:1::7f00:1",  # local-use NAT64 of 127.0.0.1
        "::127.0.0.1",  # IPv4-compatible loopback
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
        "fec0::1",  # site-local
        "192.0.0.8",  # the IPv4 dummy address
        "::ffff:127.0.0.1",
        "::1",
    ],
)
def test_addresses_that_lead_back_inside_are_refused(address):
    assert not address_allowed(address, [])


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_stay_allowed_also_when_wrapped(address):
    assert address_allowed(address, [])


def test_config_errors_never_print_api_keys_or_the_bilibili_cookie(tmp_path):
    secret_key, cookie = "k-7f3a9c-very-secret", "SESSDATA-do-not-print"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"api": {"keys": {secret_key: {"id": "ops", "quota": "lots"}}}, "bilibili": {"sessdata": cookie}})
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config, environ={})
    assert "'ops'" in err.value.message and secret_key not in err.value.message and cookie not in err.value.message


def test_status_gives_away_no_path_of_the_installation(index):
    client = create_app(index.settings, warm=False, index=index).test_client()
    text = client.get("/status").get_data(as_text=True)
    for secret in (str(index.settings.data_path), str(index.settings.library_path), str(index.settings.base_dir)):
        assert secret not in text and secret.replace("/", "\\/") not in text


def test_a_config_secret_of_the_wrong_type_is_not_printed(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"bilibili": {"sessdata": 8675309}}))
    with pytest.raises(ConfigError) as err:
        load_settings(config, environ={})
    assert "bilibili.sessdata" in err.value.message and "8675309" not in err.value.message


def test_a_data_dir_that_is_a_file_is_a_clear_config_error(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": "data"}))
    with pytest.raises(ConfigError, match="config key 'data_dir' names .*data, which is a file, not a folder"):
        load_settings(config, environ={})


def test_the_config_file_and_the_data_folder_are_the_owners_alone(tmp_path):
    from animeback.config import Settings, write_default_config
    from animeback.stores.host import connect

    config = tmp_path / "config.json"
    assert write_default_config(config) and config.stat().st_mode & 0o777 == 0o600
    settings = updated(
        Settings(base_dir=tmp_path), data_dir=str(tmp_path / "fresh" / "data"), stores={"host_idle_s": 1.0}
    )
    store = connect(settings)
    try:
        assert settings.data_path.stat().st_mode & 0o777 == 0o700
        assert (settings.data_path / "host.key").stat().st_mode & 0o777 == 0o600
    finally:
        store.close()
