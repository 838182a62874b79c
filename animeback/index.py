"""The opened index of one installation: catalogue, vector store and embedder, created once and passed down."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from .config import Settings
from .errors import IndexBusyError, IndexMismatchError
from .model.embedder import Embedder, PcaModel
from .imaging import HALF_REGIONS
from .stores import VectorStore
from .stores.host import RemoteCatalogue, connect

log = logging.getLogger(__name__)

TRAINED_PCA_NAME = "pca.npz"


def pca_path(settings: Settings) -> Path:
    """The PCA in use: features.pca when set, else the library's own (train-pca), else the shipped default."""
    if settings.features.pca:
        return settings.path(settings.features.pca)
    trained = settings.data_path / TRAINED_PCA_NAME
    return trained if trained.exists() else settings.path("models/pca_default.npz")


def load_embedder(settings: Settings) -> Embedder:
    """The configured model: a trained one (features.model), else the ImageNet CNN with the PCA in use."""
    f = settings.features
    if f.model:
        return Embedder(settings.path(f.weights), None, f.batch_size, f.threads, trained=settings.path(f.model))
    return Embedder(settings.path(f.weights), PcaModel.load(pca_path(settings)), f.batch_size, f.threads)


class Index:
    """The stores (through the store host, see stores/host.py) and the CNN, opened once per process."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None):
        self.settings = settings
        self.embedder = embedder or load_embedder(settings)
        self.host = connect(settings)
        self.catalogue = RemoteCatalogue(self.host)
        try:
            m = settings.milvus
            self.vectors_uri = m.uri if settings.milvus_server else self.host.hello["vectors_uri"]
            self.vectors = VectorStore(self.vectors_uri, m.token, m.collection, self.embedder.dim, m.nlist, m.nprobe)
        except BaseException:
            self.host.close()
            raise

    @contextlib.contextmanager
    def writing(self):
        """Hold the index's writer lock: one `process` or `train-pca` at a time (searches go on meanwhile)."""
        with open(self.settings.data_path / "writer.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise IndexBusyError(f"the index is being written by {holder}; wait for it to finish") from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()}")
            lock.flush()
            yield

    @property
    def model_name(self) -> str:
        """What the index records of how its vectors were made: the model, and whether halves have entries."""
        return self.embedder.model_name + ("+halves" if self.settings.features.half_frames else "")

    @property
    def vectors_per_frame(self) -> int:
        """Entries per kept frame: the whole frame, plus its four halves with features.half_frames."""
        return 1 + len(HALF_REGIONS) if self.settings.features.half_frames else 1

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
        series, aspects = set(), set()
        for record in self.catalogue.episodes():
            if record.status == "indexed":
                series.add(record.series_id)
                width, height = (record.crop[2], record.crop[3]) if record.crop else (record.width, record.height)
                if width and height:
                    aspects.add(round(width / height, 3))
                stats["episodes"] += 1
                stats["vectors"] += record.vectors or record.frames_kept
                stats["video_seconds"] += record.duration
            elif record.status == "failed":
                stats["failed"] += 1
        stats["series"] = len(series)
        stats["aspects"] = sorted(aspects)  # the library's frame shapes (width / height), for finding windows
        self.catalogue.put_meta("stats", stats)
        return stats

    def reset(self) -> None:
        """Empty the index entirely (vectors first, then the catalogue's episodes and frames)."""
        self.vectors.drop()
        self.catalogue.clear()
        self.catalogue.put_meta("model", None)

    def close(self) -> None:
        self.vectors.close()
        self.host.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
