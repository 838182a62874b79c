"""The opened index of one installation: catalogue, vector store and embedder, created once and passed down."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import IndexBusyError, IndexMismatchError, WriteForbiddenError
from .imaging import HALF_REGIONS
from .model.embedder import Embedder
from .stores import EpisodeStatus, VectorStore
from .stores.host import Stores, connect
from .stores.rpc import AnyCatalogue

log = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"  # catalogue meta: how the index's vectors were made (IndexParameters)


@dataclass(frozen=True)
class IndexParameters:
    """What search must know of how an index was built (recorded at indexing, read back at search)."""

    model: str
    half_frames: bool
    half_codes: bool = False  # the halves stored as binary codes (features.half_entries "binary")

    @property
    def vectors_per_frame(self) -> int:
        """Entries per kept frame: the whole frame, plus its four halves with half-frame entries."""
        return 1 + len(HALF_REGIONS) if self.half_frames else 1


def refresh_stats(catalogue: AnyCatalogue) -> dict[str, Any]:
    """Recompute library totals from the catalogue and store them for /status and frameCount."""
    stats = library_stats(catalogue)
    catalogue.put_meta("stats", stats)
    return stats


def library_stats(catalogue: AnyCatalogue) -> dict[str, Any]:
    """Library totals computed from the catalogue's episode records."""
    stats: dict[str, Any] = {"series": 0, "episodes": 0, "failed": 0, "vectors": 0, "video_seconds": 0.0}
    series, aspects = set(), set()
    for record in catalogue.episodes():
        if record.status == EpisodeStatus.INDEXED:
            series.add(record.series_id)
            width, height = (record.crop[2], record.crop[3]) if record.crop else (record.width, record.height)
            if width and height:
                aspects.add(round(width / height, 3))
            stats["episodes"] += 1
            stats["vectors"] += record.vectors or record.frames_kept
            stats["video_seconds"] += record.duration
        elif record.status == EpisodeStatus.FAILED:
            stats["failed"] += 1
    stats["series"] = len(series)
    stats["aspects"] = sorted(aspects)  # the library's frame shapes (width / height), for finding windows
    return stats


class Index:
    """The stores (through the store host, see stores/host.py) and the CNN, opened once per process."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, store: Stores | None = None):
        """Open the index; `embedder` and `store` let a caller share ones it already holds."""
        self.settings = settings
        self.store = store or connect(settings)
        self.catalogue = self.store.catalogue
        try:
            self.embedder = embedder or Embedder.from_settings(settings)
            # Milvus Lite lives in the store host; a restarted host serves it on a new socket, which the vector
            # store follows by asking the store client each time.
            uri = settings.milvus.uri if settings.milvus_server else (lambda: self.store.vectors_uri)
            self.vectors = VectorStore.from_settings(settings, uri, self.embedder.dim)
        except BaseException:
            self.store.close()
            raise

    @contextlib.contextmanager
    def writing(self):
        """Hold the index's writer lock: one `process` or `train-pca` at a time (searches go on meanwhile)."""
        if self.settings.web_node:
            raise WriteForbiddenError(
                'this is a web node (stores.catalogue "milvus"): it serves the index the indexing node writes; '
                "run process, repair and train-pca on the indexing node"
            )
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
    def vectors_uri(self) -> str:
        """Where the vectors are: the configured Milvus server, or the store host's Milvus Lite socket."""
        return self.vectors.uri

    @property
    def model_name(self) -> str:
        """What the index records of how its vectors were made: the model, and whether halves have entries."""
        features = self.settings.features
        if not features.half_frames:
            return self.embedder.model_name
        return self.embedder.model_name + ("+half-codes" if features.coded_halves else "+halves")

    def configured_parameters(self) -> IndexParameters:
        """The parameters this configuration indexes with."""
        features = self.settings.features
        return IndexParameters(self.model_name, features.half_frames, features.coded_halves)

    def parameters(self) -> IndexParameters:
        """The parameters the index was built with (the configured ones for an empty index)."""
        recorded = self.catalogue.get_meta(PARAMETERS_KEY)
        return IndexParameters(**recorded) if recorded else self.configured_parameters()

    def record_parameters(self) -> None:
        """Record the configured parameters as the index's (after its first vectors are written)."""
        parameters = self.configured_parameters()
        self.catalogue.put_meta(PARAMETERS_KEY, dataclasses.asdict(parameters))
        self.catalogue.put_meta("model", parameters.model)  # read by indexes made before parameters were recorded

    def indexed_model(self) -> str | None:
        """The model the stored vectors were made with (None for an empty index)."""
        recorded = self.catalogue.get_meta(PARAMETERS_KEY)
        return recorded["model"] if recorded else self.catalogue.get_meta("model")

    def check_model(self) -> None:
        """Refuse to mix vectors of different models."""
        stored = self.indexed_model()
        if self.vectors.stored_dim != self.vectors.dim or (stored and stored != self.model_name):
            raise IndexMismatchError(
                f"the index was built with {stored or 'another model'} "
                f"({self.vectors.stored_dim}-d vectors) but the configuration uses "
                f"{self.model_name} ({self.vectors.dim}-d): run `python run.py process --reindex`"
            )

    def refresh_stats(self) -> dict[str, Any]:
        """Recompute library totals from the catalogue and store them for /status and frameCount."""
        return refresh_stats(self.catalogue)

    def reset(self) -> None:
        """Empty the index entirely (vectors first, then the catalogue's episodes and frames)."""
        self.vectors.drop()
        self.catalogue.clear()
        self.catalogue.put_meta("model", None)
        self.catalogue.put_meta(PARAMETERS_KEY, None)

    def close(self) -> None:
        self.vectors.close()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
