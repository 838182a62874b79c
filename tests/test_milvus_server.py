"""The server path: `milvus.uri` pointing at a Milvus over TCP (here Milvus Lite's own gRPC server on loopback)
goes through exactly the code the embedded default uses."""

from __future__ import annotations

import socket
import time
import warnings

import pytest

from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.query.search import Searcher
from animeback.sources.synthetic import grab_frame
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.slow  # a Milvus server (Milvus Lite's own, over TCP) and a second index


@pytest.fixture
def milvus_server(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from milvus_lite.server import Server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server(str(tmp_path / "served.db"), address=f"127.0.0.1:{port}")
    assert server.init() and server.start()
    from pymilvus import MilvusClient

    deadline = time.monotonic() + 30
    while True:
        try:
            MilvusClient(uri=f"http://127.0.0.1:{port}").close()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_index_and_search_through_a_milvus_uri(milvus_server, library_template, tmp_path, embedder):
    settings = make_settings(tmp_path, library_template, milvus={"uri": milvus_server})
    with Index(settings, embedder) as index:
        assert index.vectors_uri == milvus_server
        report = process_library(index, progress=False)
        assert report.indexed == len(LIBRARY)
        assert index.vectors.count() == index.catalogue.count_frames() == report.vectors_written
        series, name, _seed, _duration = LIBRARY[2]
        shot = grab_frame(library_template / series / name, 7.7, tmp_path / "q.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.filename == name and abs(best.at - 7.7) <= 1.0
    assert not (tmp_path / "data" / "milvus.db").exists()  # nothing embedded was opened
