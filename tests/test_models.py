"""PCA refits and model versions: vectors of different models never mix."""

from __future__ import annotations

import pytest

from animeback.config import updated
from animeback.errors import IndexMismatchError
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.model.embedder import Embedder, PcaModel, pca_path
from animeback.query.search import Searcher
from animeback.sources.synthetic import grab_frame
from animeback.training.pca import train_library_pca
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.slow  # each test indexes the library twice


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
    other_embedder = Embedder.imagenet(settings, other)
    with Index(settings, other_embedder) as index:
        with pytest.raises(IndexMismatchError, match="process --reindex"):
            process_library(index, progress=False)
        with pytest.raises(IndexMismatchError):
            Searcher(index).search_bytes(
                grab_frame(library / "101" / LIBRARY[0][1], 2.0, tmp_path / "q.png").read_bytes()
            )
        report = process_library(index, reindex=True, progress=False)
        assert report.indexed == len(LIBRARY) and index.indexed_model() == other_embedder.model_name
        assert index.vectors.count() == index.catalogue.count_frames()


def test_half_frame_entries_find_a_half_screenshot_and_need_a_reindex(library, tmp_path, embedder):
    import numpy as np
    from PIL import Image

    from animeback.imaging import halves

    series, name, _seed, _duration = LIBRARY[0]
    for other_series, other, _, _ in LIBRARY[1:]:
        (library / other_series / other).unlink()
    shot = np.asarray(Image.open(grab_frame(library / series / name, 18.0, tmp_path / "q.png")).convert("RGB"))
    # The vectors' similarity, not the exact moment's (a half placed on its frame would be sure either way).
    settings = make_settings(tmp_path, library, search={"refine": 0})
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        plain = [Searcher(index).search(half).matches[0].similarity for half in halves(shot)]
    settings = updated(settings, features={"half_frames": True})
    with Index(settings, embedder) as index:
        with pytest.raises(IndexMismatchError, match=r"\+halves.*process --reindex"):
            process_library(index, progress=False)
        report = process_library(index, reindex=True, progress=False)
        (record,) = index.catalogue.episodes()
        assert record.vectors == 5 * record.frames_kept == report.vectors_written > 0
        assert index.vectors.count() == index.catalogue.count_frames() == record.vectors
        for half, before in zip(halves(shot), plain):
            best = Searcher(index).search(half).matches[0]
            assert best.filename == name and abs(best.at - 18.0) <= 1.0
            assert best.similarity > max(before + 0.03, 0.9)  # a half now meets its own entry


def test_binary_half_entries_find_a_half_screenshot_in_a_sixth_of_the_bytes(library, tmp_path, embedder):
    import numpy as np
    from PIL import Image

    from animeback.imaging import halves

    series, name, _seed, _duration = LIBRARY[0]
    for other_series, other, _, _ in LIBRARY[1:]:
        (library / other_series / other).unlink()
    shot = np.asarray(Image.open(grab_frame(library / series / name, 18.0, tmp_path / "q.png")).convert("RGB"))
    settings = make_settings(
        tmp_path, library, features={"half_frames": True, "half_entries": "binary"}, search={"refine": 0}
    )  # (the codes' similarity, not the exact moment's)
    with Index(settings, embedder) as index:
        assert index.model_name.endswith("+half-codes")
        report = process_library(index, progress=False)
        (record,) = index.catalogue.episodes()
        assert record.vectors == 5 * record.frames_kept == report.vectors_written > 0
        assert index.vectors.count() == index.catalogue.count_frames() == record.vectors
        client, codes = index.vectors.client, index.vectors.codes_collection
        coded = client.query(codes, filter="", output_fields=["count(*)"], consistency_level="Strong")
        assert coded[0]["count(*)"] == 4 * record.frames_kept  # the halves, as codes; the whole frames as vectors
        for half in halves(shot):
            answer = Searcher(index).search(half)
            best = answer.matches[0]
            assert best.filename == name and abs(best.at - 18.0) <= 1.0 and best.similarity > 0.85
        assert index.vectors.count(record.id) == record.vectors and index.vectors.episode_ids() == {record.id}
        from animeback.model.pixels import to_model_input

        query = index.embedder.embed(to_model_input(halves(shot)[0])[None])
        (found,) = index.vectors.search(query, 20, series=[series])
        assert any(h.coded and h.start - 0.34 <= 18.0 <= h.end + 0.34 for h in found)
        assert index.vectors.search(query, 20, series=["another series"]) == [[]]
        index.vectors.delete_episode(record.id)
        assert index.vectors.count() == index.vectors.count(record.id) == 0
    # back to float halves: the index must be rebuilt, and the codes go with the old vectors
    settings = updated(settings, features={"half_entries": "float"})
    with Index(settings, embedder) as index:
        with pytest.raises(IndexMismatchError, match=r"\+half-codes.*process --reindex"):
            process_library(index, progress=False)
        process_library(index, reindex=True, progress=False)
        assert not index.vectors.client.has_collection(index.vectors.codes_collection)
        assert index.vectors.count() == index.catalogue.count_frames() == 5 * index.catalogue.episodes()[0].frames_kept
