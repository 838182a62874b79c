"""Stores behind small interfaces: vectors (Milvus Lite or a Milvus server) and the catalogue (LevelDB)."""

import logging

from .catalogue import Catalogue, EpisodeRecord, EpisodeStatus, Repeat, SegmentKind
from .vectors import FrameRow, Hit, VectorStore

# pymilvus logs every failed call with its traceback at ERROR (to the CLI's stderr, the server's log); the stores
# turn each failure into a domain error that says what failed, so its own reports only repeat them as tracebacks.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

__all__ = ["Catalogue", "EpisodeRecord", "EpisodeStatus", "FrameRow", "Hit", "Repeat", "SegmentKind", "VectorStore"]
