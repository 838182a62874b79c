"""PCA refits and model versions: vectors of different models never mix."""

from __future__ import annotations

import pytest

from animeback.errors import IndexMismatchError
from animeback.features import Embedder, PcaModel
from animeback.index import Index, pca_path
from animeback.indexer import process_library
from animeback.pca import train_library_pca
from animeback.search import Searcher
from tests.conftest import LIBRARY, make_settings
from tests.synthetic import grab_frame


def test_train_pca_refits_on_the_library_and_reindexes(library, tmp_path, embedder):
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        old_model = index.indexed_model()
    message = train_library_pca(settings, dim=32, samples=300, progress=False)
    assert "fitted PCA 32-d" in message and f"indexed {len(LIBRARY)} episode(s)" in message
    trained = settings.data_path / "pca.npz"
    assert pca_path(settings) == trained and PcaModel.load(trained).dim == 32
    with Index(settings) as index:  # a fresh process picks the library's PCA up by itself
        assert index.embedder.dim == 32 and index.indexed_model() == index.model_name != old_model
        series, name, _seed, _duration = LIBRARY[0]
        shot = grab_frame(library / series / name, 4.4, tmp_path / "q.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.filename == name and abs(best.at - 4.4) <= 1.0


def test_a_different_model_is_refused_until_reindexed(library, tmp_path, embedder):
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
    # Same dimension, other parameters: only the recorded model name can tell them apart.
    other = PcaModel(embedder.pca.mean, -embedder.pca.components, embedder.pca.scale)
    other_embedder = Embedder(settings.path(settings.features.weights), other)
    with Index(settings, other_embedder) as index:
        with pytest.raises(IndexMismatchError, match="process --reindex"):
            process_library(index, progress=False)
        with pytest.raises(IndexMismatchError):
            Searcher(index).search_bytes(grab_frame(library / "101" / LIBRARY[0][1], 2.0,
                                                    tmp_path / "q.png").read_bytes())
        report = process_library(index, reindex=True, progress=False)
        assert report.indexed == len(LIBRARY) and index.indexed_model() == other_embedder.model_name
        assert index.vectors.count() == index.catalogue.count_frames()
