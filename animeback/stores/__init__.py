"""Stores behind small interfaces: vectors (Milvus Lite or a Milvus server) and the catalogue (LevelDB)."""

from .catalogue import Catalogue, EpisodeRecord, EpisodeStatus, Repeat, SegmentKind
from .vectors import FrameRow, Hit, VectorStore

__all__ = ["Catalogue", "EpisodeRecord", "EpisodeStatus", "FrameRow", "Hit", "Repeat", "SegmentKind", "VectorStore"]
