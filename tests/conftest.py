"""Shared fixtures: a generated library of synthetic episodes, settings in temp folders, one CNN per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from animeback.config import Settings, updated
from animeback.sources.synthetic import make_episode

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (series id, file name, seed, duration): two series, several containers and naming styles.
LIBRARY = [
    ("101", "[Sub] Show One - 01 [1080p].mp4", 1, 20.0),
    ("101", "[Sub] Show One - 02 [1080p].mkv", 2, 20.0),
    ("Other Show", "Other Show EP03.webm", 3, 16.0),  # a folder name that is not an AniList id
]


def make_settings(tmp: Path, library: Path, **sections) -> Settings:
    """Settings whose library and data live under tmp; keyword args override sections, e.g. media={...}."""
    # hosts of finished tests go away quickly
    stores = {"host_idle_s": 3.0, **sections.pop("stores", {})}
    return updated(
        Settings(base_dir=tmp),
        library_dir=str(library),
        data_dir=str(tmp / "data"),
        log_level="WARNING",
        stores=stores,
        **sections,
    )


def build_library(folder: Path, entries=LIBRARY) -> Path:
    for series, name, seed, duration in entries:
        make_episode(folder / series / name, seed=seed, duration=duration)
    (folder / "101" / "series.json").write_text(json.dumps({"title": "Show One", "titles": {"native": "ショーワン"}}))
    return folder


@pytest.fixture(scope="session")
def library_template(tmp_path_factory) -> Path:
    """The generated episodes, made once per test session (copy before changing them)."""
    return build_library(tmp_path_factory.mktemp("library_template"))


@pytest.fixture
def library(tmp_path, library_template) -> Path:
    """A private copy of the generated library that a test may change."""
    import shutil

    return Path(shutil.copytree(library_template, tmp_path / "library"))


@pytest.fixture(scope="session")
def standalone_milvus(tmp_path_factory):
    """A real Milvus standalone (2.3.5, PyPI `milvus`), one per test session, in the tests' private network
    namespace (tests/servers.py); each test that uses it makes collections of its own."""
    from tests.servers import MilvusStandalone

    server = MilvusStandalone(tmp_path_factory.mktemp("standalone")).start()
    yield server
    server.stop()


@pytest.fixture(params=["lite", "standalone"])
def milvus_sections(request):
    """make_settings sections for where the vectors live: embedded Milvus Lite, or a real Milvus standalone (where
    the catalogue is published too), so one test runs against both."""
    if request.param == "lite":
        yield {}
        return
    import uuid

    server = request.getfixturevalue("standalone_milvus")
    yield {"milvus": {"uri": server.uri, "collection": "t_" + uuid.uuid4().hex[:12]}}
    drop_all_collections(server.uri)


def drop_all_collections(uri: str) -> None:
    """Leave a shared Milvus standalone empty for the next test (a restarted Milvus reloads every loaded one)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    for name in client.list_collections():
        client.drop_collection(name)
    client.close()


@pytest.fixture(scope="session")
def embedder():
    """The real CNN + default PCA, loaded once for the whole session."""
    from animeback.model.embedder import Embedder

    return Embedder.from_settings(Settings(base_dir=ROOT))


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, library_template, embedder):
    """An index of the template library, built once by `process` (read-only for tests)."""
    from animeback.index import Index
    from animeback.ingest.indexer import process_library

    tmp = tmp_path_factory.mktemp("indexed")
    settings = make_settings(tmp, library_template)
    index = Index(settings, embedder)
    report = process_library(index, progress=False)
    yield index, report
    index.close()


@pytest.fixture(scope="module")
def image_host():
    """An HTTP server on 127.0.0.2 serving the files put in its folder: (folder, base URL)."""
    from tests.live_server import serving_folder

    with serving_folder() as served:
        yield served
