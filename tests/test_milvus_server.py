"""The server path: `milvus.uri` pointing at a Milvus over TCP goes through exactly the code the embedded default
uses. Each test runs against two servers: Milvus Lite's own gRPC server on loopback, and a real Milvus standalone
(2.3.5, the PyPI package `milvus`, pinned in requirements-dev.txt) started by the tests.

A Milvus standalone listens on every interface: it is started only in a private network namespace with loopback
alone, which `scripts/test.sh` runs the tests in (`unshare --net`).

With a server, the indexing node publishes its catalogue there for web nodes (stores/keyvalues.py): tested here
against both servers; the whole several-node layout is tests/test_scale_out.py's."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from animeback.config import updated
from animeback.errors import AnimeBackError, WriteForbiddenError
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.query.search import Searcher
from animeback.sources.synthetic import grab_frame
from animeback.stores import FrameRow, VectorStore
from animeback.stores.catalogue import Catalogue, frame_id
from animeback.stores.host import connect
from animeback.stores.keyvalues import MilvusValues, published_collection
from tests.cluster import wait_until
from tests.conftest import LIBRARY, drop_all_collections, make_settings
from tests.servers import free_port, process_running, wait_for_milvus

pytestmark = pytest.mark.slow  # Milvus servers and indexes of their own


@pytest.fixture
def lite_server(tmp_path_factory) -> Iterator[str]:
    """Milvus Lite's gRPC server on a loopback port, one per test (it starts in a moment; shared by tests, it ends
    up refusing pymilvus's keep-alive pings, "too_many_pings", and pymilvus does not reconnect to it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from milvus_lite.server import Server
    port = free_port()
    server = Server(str(tmp_path_factory.mktemp("lite") / "served.db"), address=f"127.0.0.1:{port}")
    assert server.init() and server.start()
    uri = f"http://127.0.0.1:{port}"
    wait_for_milvus(uri, "Milvus Lite's server")
    yield uri
    server.stop()


@pytest.fixture
def standalone_server(standalone_milvus) -> Iterator[str]:
    """A real Milvus standalone (embedded etcd, local storage, rocksmq), in this private network namespace."""
    yield standalone_milvus.uri
    drop_all_collections(standalone_milvus.uri)


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
        # the default index on a server: HNSW, or IVF_FLAT where the server cannot build it (Milvus Lite's)
        assert index.vectors.index_type == ("HNSW" if "standalone" in request.node.name else "IVF_FLAT")
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


def _soon(condition) -> bool:
    """Whether condition() holds within 15 s: a web node reads with Bounded consistency, which sees the last writes
    within Milvus's grace time (a few seconds)."""
    return bool(wait_until(condition, 15)[0])


def _web_node(settings):
    """The same installation seen from a web node: the published catalogue, no store of its own."""
    return updated(
        settings,
        data_dir=str(settings.data_path.parent / "web-node"),
        stores={"catalogue": "milvus", "redis_url": "redis://127.0.0.1:1/0"},  # no counter is used here
        server={"secret": "shared"},
    )


def test_a_web_node_reads_the_catalogue_the_indexing_node_published(milvus_uri, library, tmp_path, embedder, request):
    series, name, _seed, _duration = LIBRARY[0]
    shutil.copy(library / series / name, library / series / "[Sub] Show One - 09 [1080p].mp4")  # a repeat
    settings = make_settings(tmp_path, library, milvus={"uri": milvus_uri, **_collection(request.node.name)})
    odd = 'Ünïcödé "quoted" \\ 名前'
    big = {"title": odd, "episodes": [{"number": i, "title": f"第{i}話 " + "とても長い題名" * 8} for i in range(1500)]}
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        index.catalogue.put_series(odd, big)  # over Milvus's 64 KiB strings: published compressed
        index.catalogue.assign_series_number(odd)
        local = index.catalogue
        web = connect(_web_node(settings))
        try:
            published = web.catalogue
            # Bounded consistency: each write shows within the grace time, the later ones (the series) after the
            # episodes, so every read waits for its own
            assert _soon(lambda: list(published.episodes()) == list(local.episodes()))
            assert _soon(lambda: published.get_series(odd) == big)
            assert _soon(lambda: published.numbered_series() == local.numbered_series())
            assert published.get_series("101") == local.get_series("101")
            assert published.series_with_number(local.series_number(odd)) == [odd]
            assert published.get_meta("stats") == local.get_meta("stats") and published.get_meta("nothing") is None
            ids = [r.id for r in local.episodes()]
            assert published.repeats_touching(ids) == local.repeats_touching(ids) != []
            with pytest.raises(WriteForbiddenError):
                published.put_meta("stats", {})
        finally:
            web.close()
        with Index(_web_node(settings), embedder) as node:  # a search through the web node
            shot = grab_frame(library / series / name, 4.4, tmp_path / "q.png")
            best = Searcher(node).search_bytes(shot.read_bytes()).matches[0]
            assert best.filename == name and [o.filename for o in best.occurrences] == [
                "[Sub] Show One - 09 [1080p].mp4"
            ]
            with pytest.raises(WriteForbiddenError, match="web node"), node.writing():
                pass
        index.vectors.drop()


def test_the_repair_sees_a_write_made_a_moment_before_it(milvus_uri, request):
    """The store host's repair reads the published collection at Strong consistency: a write a moment before it
    (a crash between Milvus's write and LevelDB's, a restart at once) is seen, and undone; read a page at a time,
    every row comes back once."""
    collection = _collection(request.node.name)["collection"]
    owner = {"installation": "one", "host": "here", "data": "/data"}
    published = MilvusValues(milvus_uri, "", collection, writable=True)
    try:
        kept = [(f"meta/k{i:02d}".encode(), b"%d" % i) for i in range(23)]
        assert published.publish(kept, owner) == (23, 0)
        for _ in range(3):  # three times over: the stale read (before) failed at once
            published.write({b"meta/k05": None, b"meta/stray": b"3"})
            assert published.publish(kept, owner) == (1, 1)
        keys = [row["key"] for row in published._all(page=5)]
        assert sorted(keys) == sorted([key.hex() for key, _ in kept] + ["owner"])
    finally:
        published.client.drop_collection(collection)
        published.close()


def test_the_published_catalogue_is_repaired_and_owned_by_one_indexing_node(milvus_uri, library, tmp_path, request):
    settings = make_settings(tmp_path, library, milvus={"uri": milvus_uri, **_collection(request.node.name)})
    collection = published_collection(settings.milvus.collection)
    store = connect(settings)
    store.catalogue.put_meta("kept", {"a": 1})
    store.catalogue.put_meta("gone", 2)
    pid = store.host_pid
    store.close()
    assert wait_until(lambda: not process_running(pid), 20)[0], "the host did not exit when idle"
    # Behind the host's back (a crash between the two writes, a hand edit): Milvus lost one entry, holds a stray
    published = MilvusValues(milvus_uri, "", collection, writable=True)
    published.write({b"meta/kept": None, b"meta/stray": b"3"})
    published.close()
    store = connect(settings)  # the next host start publishes what differs
    try:
        web = Catalogue(MilvusValues(milvus_uri, "", collection))
        metas = ("kept", "stray", "gone")
        assert _soon(lambda: [web.get_meta(name) for name in metas] == [{"a": 1}, None, 2])
        store.catalogue.put_meta("gone", None)
        assert _soon(lambda: web.get_meta("gone") is None)
        web.close()
    finally:
        store.close()
    # A second indexing node (another data folder) pointed at the same index is refused: its repair would delete
    # the first one's episodes.
    other = updated(settings, data_dir=str(tmp_path / "other-indexer"))
    with pytest.raises(AnimeBackError, match="written by another indexing node"):
        connect(other)
