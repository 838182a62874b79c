"""Several machines, one index: a real Milvus standalone and a real redis-server, one indexing node (`run.py
process`) and two web nodes (gunicorn), each node with its own config, data folder and temp folder (tests/cluster.py).
The web nodes share only Milvus (the vectors, and the catalogue the indexing node publishes there), Redis (the API
counters) and the previews' folder. The tests run in order: each leaves every part running for the next.

The figures (search latency through each node, recovery after each kill) are benchmarks/scale_out.py's."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from animeback.sources.synthetic import grab_frame
from tests.cluster import QUOTA_KEY, Cluster, request, wait_until
from tests.conftest import LIBRARY

pytestmark = pytest.mark.slow  # a Milvus standalone, Redis, and three AnimeBack nodes with a CNN each

FIRST, SECOND, THIRD = LIBRARY  # (series, file name, seed, duration)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, library_template, standalone_milvus) -> Iterator[Cluster]:
    # the session's Milvus standalone (a second one beside it did not start in CI), with collections of its own
    running = Cluster(tmp_path_factory.mktemp("scale-out"), standalone_milvus).start(web_nodes=2)
    running.add_episode(library_template / FIRST[0] / FIRST[1], FIRST[0])
    out = running.process()
    assert out.returncode == 0, out.stderr
    for node in running.nodes:
        node.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shots(library_template, tmp_path_factory) -> dict[str, bytes]:
    """A screenshot of each generated episode (PNG), at a moment inside it."""
    folder = tmp_path_factory.mktemp("shots")
    return {
        name: grab_frame(library_template / series / name, 6.3, folder / f"{seed}.png").read_bytes()
        for series, name, seed, _ in LIBRARY
    }


def _finds(node, shot: bytes, name: str) -> bool:
    status, answer, _ = node.search(shot)
    best = (answer.get("result") or [{}])[0]
    return status == 200 and best.get("filename") == name and abs(best.get("at", -99) - 6.3) <= 1.0


def test_both_web_nodes_answer_from_the_one_index(cluster, shots):
    for node in cluster.nodes:
        assert _finds(node, shots[FIRST[1]], FIRST[1]), node.log_tail()
        assert not (node.folder / "data" / "catalogue").exists()  # nothing of the index is a web node's own
        assert not (node.folder / "data" / "milvus.db").exists()
        status, body, _ = request(f"{node.base}/status")
        assert status == 200 and json.loads(body)["episodes"] == 1


def test_an_episode_indexed_is_found_by_both_nodes_right_after_process(cluster, shots, library_template):
    for series, name, _seed, _duration in (SECOND, THIRD):
        cluster.add_episode(library_template / series / name, series)
    out = cluster.process()
    assert out.returncode == 0, out.stderr
    for node in cluster.nodes:
        # Milvus's Bounded consistency lets a reader lag a write by its grace time (a few seconds)
        for _, name, _seed, _duration in (SECOND, THIRD):
            found, waited = wait_until(lambda n=node, m=name: _finds(n, shots[m], m), timeout_s=10)
            assert found, f"{node.name} did not find {name} within {waited:.1f} s of process"


def test_a_quota_holds_across_both_nodes(cluster, shots):
    a, b = cluster.nodes
    shot = shots[FIRST[1]]
    statuses = [(a if i % 2 == 0 else b).search(shot, key=QUOTA_KEY)[0] for i in range(10)]
    assert statuses == [200] * 10
    for node in (a, b):
        status, answer, _ = node.search(shot, key=QUOTA_KEY)
        assert status == 402 and "quota" in answer["error"].lower()
        status, body, _ = request(f"{node.base}/me", headers={"x-trace-key": QUOTA_KEY})
        me = json.loads(body)
        assert status == 200 and me["quotaUsed"] == 10 and me["quota"] == 10


def test_previews_play_from_either_node(cluster, shots):
    a, b = cluster.nodes
    status, answer, _ = a.search(shots[SECOND[1]])
    assert status == 200
    video, image = answer["result"][0]["video"], answer["result"][0]["image"]
    assert video.startswith(a.base) and image.startswith(a.base)
    for node in (a, b):  # a link node a gave out plays on node b: one secret, one folder of previews
        status, body, _ = request(node.base + video[len(a.base) :])
        assert status == 200 and body[4:8] == b"ftyp", (node.name, status, body[:200])
        status, body, _ = request(node.base + image[len(a.base) :])
        assert status == 200 and body[:3] == b"\xff\xd8\xff", (node.name, status, body[:200])


def test_killing_a_web_node_loses_nothing(cluster, shots):
    a, b = cluster.nodes
    a.kill()
    assert request(f"{a.base}/status", timeout=5)[0] == 0
    assert _finds(b, shots[THIRD[1]], THIRD[1])  # the other node goes on alone
    a.start()
    for node in (a, b):
        assert _finds(node, shots[THIRD[1]], THIRD[1])
        body = request(f"{node.base}/me", headers={"x-trace-key": QUOTA_KEY})[1]
        assert json.loads(body)["quotaUsed"] == 10  # the counts lived in Redis, not in the node
    assert json.loads(request(f"{a.base}/status")[1])["episodes"] == len(LIBRARY)


def _clean_503(node, shot: bytes) -> None:
    status, answer, seconds = node.search(shot)
    assert status == 503, (node.name, status, answer)
    assert set(answer) >= {"error"} and "Traceback" not in answer["error"], answer
    assert seconds < 20, f"{node.name} took {seconds:.1f} s to give up"


@pytest.mark.parametrize("part, back_within_s", [("redis", 30), ("milvus", 180)])
def test_a_killed_server_gives_clean_503s_and_the_nodes_recover_by_themselves(cluster, shots, part, back_within_s):
    shot = shots[FIRST[1]]
    server = cluster.redis if part == "redis" else cluster.milvus
    server.kill()
    for node in cluster.nodes:
        _clean_503(node, shot)
    server.start()  # on the same port and files
    for node in cluster.nodes:
        found, waited = wait_until(lambda n=node: _finds(n, shot, FIRST[1]), back_within_s, interval_s=0.5)
        assert found, f"{node.name} did not recover within {waited:.0f} s of {part}'s restart: {node.log_tail()}"
        body = request(f"{node.base}/me", headers={"x-trace-key": QUOTA_KEY})[1]
        assert json.loads(body)["quotaUsed"] == 10  # Redis's append-only file kept the counts
