"""Stills (key visuals, fan art, manga panels) for the match-style image API: their own Milvus collection.

An image is identified exactly by its filepath (the id is derived from it, so adding again replaces it).
Scores are cosine similarities of our embeddings mapped to 0..100.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadParameterError
from ..index import Index
from ..model.pixels import to_model_input

MAX_FILEPATH = 4096
MAX_METADATA = 16 * 1024  # characters; at most 4 bytes each within a 65535-byte VARCHAR
MAX_METADATA_DEPTH = 32  # nested objects and arrays


def parse_metadata(raw: str) -> dict:
    """A still's metadata from its JSON text: strict JSON (no NaN or Infinity, which strict parsers reject when it is
    returned), an object, at most MAX_METADATA characters and MAX_METADATA_DEPTH levels, text that is valid Unicode."""
    if len(raw) > MAX_METADATA:
        raise BadParameterError(f"metadata is larger than {MAX_METADATA} characters")

    def refuse(name: str) -> None:
        raise BadParameterError(f"metadata is not strict JSON: {name} is not a JSON value")

    try:
        value = json.loads(raw, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise BadParameterError(f"metadata is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise BadParameterError(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise BadParameterError(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadParameterError("metadata must be a JSON object")
    _check_metadata_value(value, 1)
    return value


def _check_metadata_value(value: object, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise BadParameterError(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadParameterError("metadata holds text that is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_metadata_value(key, depth)
            _check_metadata_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_metadata_value(item, depth + 1)


@dataclass(frozen=True)
class StillMatch:
    """A stored still and how alike it is to the query (0..100)."""

    filepath: str
    score: float
    metadata: dict | None


def orientations(rgb: np.ndarray) -> list[np.ndarray]:
    """The image under all eight rotations and flips (the dihedral group of the square)."""
    out = []
    for flipped in (rgb, rgb[:, ::-1]):
        for turns in range(4):
            out.append(np.ascontiguousarray(np.rot90(flipped, turns)))
    return out


def to_score(similarity: float) -> float:
    """Cosine similarity -> 0..100 (finite, rounded)."""
    value = float(similarity)
    return round(100.0 * min(1.0, max(0.0, value)), 2) if np.isfinite(value) else 0.0


def still_id(filepath: str) -> int:
    """A stable 63-bit id for a filepath."""
    return int.from_bytes(hashlib.sha256(filepath.encode()).digest()[:8], "big") >> 1


class StillStore:
    """The stills collection, on the same Milvus connection as the frames."""

    def __init__(self, index: Index):
        self.index = index
        self.collection = index.settings.match.collection
        self.dim = index.embedder.dim
        self._ensure_collection(index.vectors.client)
        index.vectors.on_reopen(self._ensure_collection)  # a restarted store host's Milvus loads it too

    @property
    def client(self) -> Any:
        """The Milvus client of the index (followed to a restarted store host's Milvus)."""
        return self.index.vectors.client

    def _ensure_collection(self, client: Any) -> None:
        from pymilvus import DataType

        if client.has_collection(self.collection):
            fields = client.describe_collection(self.collection)["fields"]
            stored = int(next(f for f in fields if f["name"] == "vector")["params"]["dim"])
            if stored != self.dim:  # stills of another model cannot be compared: start the collection again
                client.drop_collection(self.collection)
        if not client.has_collection(self.collection):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("filepath", DataType.VARCHAR, max_length=MAX_FILEPATH * 4)
            schema.add_field("metadata", DataType.VARCHAR, max_length=65535)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            params = client.prepare_index_params()
            params.add_index("vector", index_type="FLAT", metric_type="IP")
            client.create_collection(self.collection, schema=schema, index_params=params)
        client.load_collection(self.collection)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        return self.index.embedder.embed(np.stack([to_model_input(i) for i in images]))

    def add(self, filepath: str, rgb: np.ndarray, metadata: dict | None) -> None:
        """Store (or replace) the still at filepath."""
        check_filepath(filepath)
        text = json.dumps(metadata, ensure_ascii=False) if metadata is not None else ""
        if len(text) > MAX_METADATA:
            raise BadParameterError(f"metadata is larger than {MAX_METADATA} characters")
        vector = self.embed([rgb])[0]
        self.client.upsert(
            self.collection,
            [{"id": still_id(filepath), "filepath": filepath, "metadata": text, "vector": vector.tolist()}],
        )
        self.client.flush(self.collection)

    def delete(self, filepath: str) -> bool:
        """Remove the still at filepath; False when there was none."""
        check_filepath(filepath)
        if not self.client.get(self.collection, ids=[still_id(filepath)], output_fields=["id"]):
            return False
        self.client.delete(self.collection, ids=[still_id(filepath)])
        self.client.flush(self.collection)
        return True

    def search(self, rgb: np.ndarray, all_orientations: bool, limit: int) -> list[StillMatch]:
        """The stills most like an image, best first; with all_orientations each still keeps its best score."""
        images = orientations(rgb) if all_orientations else [rgb]
        answers = self.client.search(
            self.collection,
            data=[v.tolist() for v in self.embed(images)],
            limit=limit,
            output_fields=["filepath", "metadata"],
            search_params={"metric_type": "IP", "params": {}},
        )
        best: dict[str, StillMatch] = {}
        for answer in answers:
            for hit in answer:
                entity = hit["entity"]
                match = StillMatch(
                    entity["filepath"],
                    to_score(hit["distance"]),
                    json.loads(entity["metadata"]) if entity["metadata"] else None,
                )
                if match.filepath not in best or match.score > best[match.filepath].score:
                    best[match.filepath] = match
        return sorted(best.values(), key=lambda m: -m.score)[:limit]

    def compare(self, first: np.ndarray, second: np.ndarray) -> float:
        """How alike two images are, 0..100."""
        a, b = self.embed([first, second])
        return to_score(float(np.dot(a, b)))

    def count(self) -> int:
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def list(self, offset: int, limit: int) -> list[str]:
        """Stored filepaths, in a stable order (sorted)."""
        paths: list[str] = []
        iterator = self.client.query_iterator(self.collection, batch_size=1000, filter="", output_fields=["filepath"])
        while batch := iterator.next():
            paths.extend(r["filepath"] for r in batch)
        iterator.close()
        return sorted(paths)[offset : offset + limit]


def check_filepath(filepath: str) -> None:
    if not filepath or len(filepath) > MAX_FILEPATH or "\x00" in filepath:
        raise BadParameterError(f"filepath must be 1 to {MAX_FILEPATH} characters")
