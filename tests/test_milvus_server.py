"""The server path: `milvus.uri` pointing at a Milvus over TCP goes through exactly the code the embedded default
uses. Each test runs against two servers: Milvus Lite's own gRPC server on loopback, and a real Milvus standalone
(2.3.5, the PyPI package `milvus`, pinned in requirements-dev.txt) started by the tests.

A Milvus standalone listens on every interface: it is started only in a private network namespace with loopback
alone, which `scripts/test.sh` runs the tests in (`unshare --net`)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.query.search import Searcher
from animeback.sources.synthetic import grab_frame
from animeback.stores import FrameRow, VectorStore
from animeback.stores.catalogue import frame_id
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.slow  # Milvus servers and indexes of their own


def _wait_for(uri: str, what: str, timeout_s: float = 60.0) -> None:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            MilvusClient(uri=uri).close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer at {uri} within {timeout_s:.0f} s") from None
            time.sleep(0.3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lite_server(tmp_path_factory) -> Iterator[str]:
    """Milvus Lite's gRPC server on a loopback port, one per test (it starts in a moment; shared by tests, it ends
    up refusing pymilvus's keep-alive pings, "too_many_pings", and pymilvus does not reconnect to it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from milvus_lite.server import Server
    port = _free_port()
    server = Server(str(tmp_path_factory.mktemp("lite") / "served.db"), address=f"127.0.0.1:{port}")
    assert server.init() and server.start()
    uri = f"http://127.0.0.1:{port}"
    _wait_for(uri, "Milvus Lite's server")
    yield uri
    server.stop()


@pytest.fixture(scope="module")
def standalone_server(tmp_path_factory) -> Iterator[str]:
    """A real Milvus standalone (embedded etcd, local storage, rocksmq), in this private network namespace."""
    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        pytest.fail(
            f"a Milvus standalone listens on every interface, and this network namespace has {interfaces}: "
            "run the tests through scripts/test.sh (a private network namespace with loopback only)"
        )
    import milvus

    server = milvus.MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("standalone")))
    server.start()  # waits for its health endpoint
    uri = f"http://127.0.0.1:{server.listen_port}"
    _wait_for(uri, "the Milvus standalone")
    yield uri
    process = server.server_proc
    process.send_signal(signal.SIGINT)  # Milvus's clean stop
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    server.server_proc = None
    server.stop()  # closes its log files


@pytest.fixture(params=["lite-server", "standalone"])
def milvus_uri(request) -> str:
    return request.getfixturevalue("lite_server" if request.param == "lite-server" else "standalone_server")


def _collection(name: str) -> dict:
    """Settings sections for a collection of this test's own on a server shared by the module."""
    return {"collection": name.replace("-", "_").replace("[", "_").replace("]", "")[:60]}


def test_index_and_search_through_a_milvus_uri(milvus_uri, library_template, tmp_path, embedder, request):
    settings = make_settings(tmp_path, library_template, milvus={"uri": milvus_uri, **_collection(request.node.name)})
    with Index(settings, embedder) as index:
        assert index.vectors_uri == milvus_uri
        report = process_library(index, progress=False)
        assert report.indexed == len(LIBRARY)
        assert index.vectors.count() == index.catalogue.count_frames() == report.vectors_written
        series, name, _seed, _duration = LIBRARY[2]
        shot = grab_frame(library_template / series / name, 7.7, tmp_path / "q.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.filename == name and abs(best.at - 7.7) <= 1.0
        index.vectors.drop()
    assert not (tmp_path / "data" / "milvus.db").exists()  # nothing embedded was opened


def test_vector_store_operations(milvus_uri, request):
    store = VectorStore(milvus_uri, "", _collection(request.node.name)["collection"], dim=8)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        FrameRow(
            frame_id(1 + i // 10, i % 10), 1 + i // 10, "a" if i < 20 else 'b "quoted"', i % 10, i % 10, i % 10 + 1, v
        )
        for i, v in enumerate(vectors)
    ]
    try:
        store.insert(rows)
        store.flush()
        assert store.count() == 30 and store.count(2) == 10 and store.episode_ids() == {1, 2, 3}
        (hits,) = store.search(vectors[:1], 5)
        assert hits[0].id == rows[0].id and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
        (outside,) = store.search(vectors[:1], 5, series=["a"], exclude_episode=1)
        assert outside and all(h.episode == 2 for h in outside)
        (quoted,) = store.search(vectors[:1], 5, series=['b "quoted"'])
        assert quoted and all(h.episode == 3 for h in quoted)
        assert store.search(vectors[:1], 5, series=[]) == [[]]
        store.delete_ids([rows[1].id, rows[2].id])
        store.delete_episode(3)
        store.flush()
        assert store.count() == 18 and store.count(1) == 8 and store.episode_ids() == {1, 2}
    finally:
        store.drop()
        store.close()


def test_a_repeated_episode_is_stored_once_and_milvus_is_repaired_from_the_frame_map(
    milvus_uri, library, tmp_path, embedder, request
):
    series, name, _seed, _duration = LIBRARY[0]
    shutil.copy(library / series / name, library / series / "[Sub] Show One - 09 [1080p].mp4")  # a copy
    settings = make_settings(tmp_path, library, milvus={"uri": milvus_uri, **_collection(request.node.name)})
    with Index(settings, embedder) as index:
        report = process_library(index, progress=False)
        records = {r.relpath.split("/", 1)[1]: r for r in index.catalogue.episodes()}
        copy = records["[Sub] Show One - 09 [1080p].mp4"]
        assert copy.vectors_elsewhere > 0 and index.catalogue.repeats_of(copy.id)
        assert index.vectors.count() == index.catalogue.count_frames() == report.vectors_written
        shot = grab_frame(library / series / name, 4.4, tmp_path / "q.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.filename == name and [o.filename for o in best.occurrences] == [copy.filename]
        # Behind the index's back the server loses part of an episode: the next run indexes it again.
        damaged = records[LIBRARY[2][1]]
        ids = index.catalogue.frame_ids(damaged.id)
        index.vectors.delete_ids(ids[: len(ids) // 2])
        index.vectors.flush()
        again = process_library(index, progress=False)
        assert (again.verified_missing, again.indexed) == (1, 1)
        assert index.vectors.count() == index.catalogue.count_frames()
        index.vectors.drop()
