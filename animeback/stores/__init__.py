"""Stores behind small interfaces: vectors (Milvus Lite or a Milvus server) and the catalogue (LevelDB)."""

from .catalogue import Catalogue, EpisodeRecord
from .vectors import FrameRow, Hit, VectorStore

__all__ = ["Catalogue", "EpisodeRecord", "FrameRow", "Hit", "VectorStore"]
