"""The opened index of one installation: catalogue, vector store and embedder, created once and passed down."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import Settings
from .errors import IndexMismatchError
from .features import Embedder, PcaModel
from .stores import Catalogue, VectorStore

log = logging.getLogger(__name__)

TRAINED_PCA_NAME = "pca.npz"


def pca_path(settings: Settings) -> Path:
    """The PCA in use: features.pca when set, else the library's own (train-pca), else the shipped default."""
    if settings.features.pca:
        return settings.path(settings.features.pca)
    trained = settings.data_path / TRAINED_PCA_NAME
    return trained if trained.exists() else settings.path("models/pca_default.npz")


class Index:
    """Opens the stores (and the CNN) for one process; close() releases their locks."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None):
        self.settings = settings
        self.embedder = embedder or Embedder(settings.path(settings.features.weights),
                                             PcaModel.load(pca_path(settings)), settings.features.batch_size,
                                             settings.features.threads)
        settings.data_path.mkdir(parents=True, exist_ok=True)
        self.catalogue = Catalogue(settings.data_path / "catalogue")
        try:
            m = settings.milvus
            self.vectors = VectorStore(settings.milvus_uri, m.token, m.collection, self.embedder.dim, m.nlist, m.nprobe)
        except BaseException:
            self.catalogue.close()
            raise

    @property
    def model_name(self) -> str:
        return self.embedder.model_name

    def indexed_model(self) -> str | None:
        """The model the stored vectors were made with (None for an empty index)."""
        return self.catalogue.get_meta("model")

    def check_model(self) -> None:
        """Refuse to mix vectors of different models."""
        stored = self.indexed_model()
        if self.vectors.stored_dim != self.vectors.dim or (stored and stored != self.model_name):
            raise IndexMismatchError(f"the index was built with {stored or 'another model'} "
                                     f"({self.vectors.stored_dim}-d vectors) but the configuration uses "
                                     f"{self.model_name} ({self.vectors.dim}-d): run `python run.py process --reindex`")

    def refresh_stats(self) -> dict:
        """Recompute library totals from the catalogue and store them for /status and frameCount."""
        stats = {"series": 0, "episodes": 0, "failed": 0, "vectors": 0, "video_seconds": 0.0}
        series = set()
        for record in self.catalogue.episodes():
            if record.status == "indexed":
                series.add(record.series_id)
                stats["episodes"] += 1
                stats["vectors"] += record.frames_kept
                stats["video_seconds"] += record.duration
            elif record.status == "failed":
                stats["failed"] += 1
        stats["series"] = len(series)
        self.catalogue.put_meta("stats", stats)
        self.catalogue.put_meta("vector_count", stats["vectors"])
        return stats

    def reset(self) -> None:
        """Empty the index entirely (vectors first, then the catalogue's episodes and frames)."""
        self.vectors.drop()
        self.catalogue.clear()
        self.catalogue.put_meta("model", None)

    def close(self) -> None:
        self.vectors.close()
        self.catalogue.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
