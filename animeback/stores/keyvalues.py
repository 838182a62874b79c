"""The key-value stores under the catalogue: LevelDB on the indexing node, and the catalogue it publishes in a
Milvus collection for web nodes (so that every web node reads what a search needs from the one Milvus it already
uses, and no web node needs the indexing node's disk or a protocol of ours).

Published are the keys a search or a page reads: meta, series, series numbers, episodes and repeated sequences.
The frame map (`frame/...`) stays LevelDB's: only the indexer's checks read it, and it is as large as the index.
In Milvus a key lives as a row: its hex (the primary key: any bytes, a folder name that is not UTF-8 included,
and never a quote in a filter), the hex of its group (the key up to its last part, e.g. `repeat/<holder>`: what a
prefix scan asks for), and its value."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from ..errors import AnimeBackError, IndexBusyError, StoreUnavailableError, WriteForbiddenError
from .milvus_client import milvus_answers, milvus_client_class, strong_scan

log = logging.getLogger(__name__)

Writes = dict[bytes, bytes | None]  # key -> new value, or None to delete it

# How many leading parts of a published key make its group (what a prefix scan names); unlisted: not published.
_GROUP_PARTS = {
    b"meta": 1,
    b"series": 1,
    b"series-number": 1,
    b"series-by-number": 2,
    b"episode": 1,
    b"repeat": 2,
    b"repeat-of": 2,
}
# Every key under these prefixes is published (what the store host copies to Milvus when it starts)
PUBLISHED_PREFIXES = [head + b"/" for head in _GROUP_PARTS]
MAX_VALUE = 65535  # Milvus's longest VARCHAR
# A web node reuses what it read for this long: every search reads the same few entries (the library's totals, the
# episodes it matched) again; a Bounded read of Milvus may lag a write by its grace time (5 s) anyway.
CACHE_S = 2.0
CACHE_ENTRIES = 100_000  # past this many, the cache starts empty again
OWNER_KEY = "owner"  # a row of the published collection only: which installation writes it
BATCH = 500
# Rows a read of the whole collection asks for at a time: fewer than a scan of ids, since a value may be 64 KB and
# an answer must stay well inside gRPC's message size.
PAGE = 1000


def published_collection(collection: str) -> str:
    """The Milvus collection the catalogue of the frames' collection is published in."""
    return f"{collection}_catalogue"


def published_group(key: bytes) -> bytes | None:
    """The group a key is published under (its prefix scans' unit), None for keys that are not published."""
    parts = key.split(b"/")
    depth = _GROUP_PARTS.get(parts[0])
    return None if depth is None or len(parts) <= depth else b"/".join(parts[:depth])


class KeyValues(Protocol):
    """What the catalogue needs of a key-value store."""

    def get_many(self, keys: list[bytes]) -> list[bytes | None]: ...

    def scan(self, prefixes: list[bytes]) -> list[tuple[bytes, bytes]]: ...

    def keys_between(self, start: bytes, stop: bytes) -> Iterator[bytes]: ...

    def write(self, writes: Writes, sync: bool = True) -> None: ...

    def close(self) -> None: ...


class LevelDBValues:
    """The indexing node's own store (plyvel); opened by one process (LevelDB locks its folder)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self.db.get(key) for key in keys]

    def scan(self, prefixes: list[bytes]) -> list[tuple[bytes, bytes]]:
        """Every (key, value) under these prefixes, in key order."""
        found = [item for prefix in prefixes for item in self.db.iterator(prefix=prefix)]
        return sorted(found) if len(prefixes) > 1 else found

    def keys_between(self, start: bytes, stop: bytes) -> Iterator[bytes]:
        return self.db.iterator(start=start, stop=stop, include_value=False)

    def write(self, writes: Writes, sync: bool = True) -> None:
        with self.db.write_batch(sync=sync) as batch:
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def close(self) -> None:
        self.db.close()


def _encode_value(key: bytes, value: bytes) -> str:
    # latin-1 maps every byte to one character: any value survives; long ones are compressed to fit a VARCHAR.
    text = "r" + value.decode("latin-1")
    if len(text.encode()) > MAX_VALUE:
        text = "z" + base64.b64encode(zlib.compress(value, 9)).decode()
    if len(text) > MAX_VALUE:
        raise AnimeBackError(
            f"the catalogue entry {key.decode(errors='replace')!r} is too large to publish in Milvus "
            f"({len(value)} bytes, {len(text)} compressed; the most is {MAX_VALUE})"
        )
    return text


def _decode_value(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text[1:])) if text[0] == "z" else text[1:].encode("latin-1")


class MilvusValues:
    """The published catalogue: a small Milvus collection of key rows. Web nodes read it (Bounded consistency: a
    write is seen within Milvus's few seconds of grace); the indexing node's store host writes it."""

    def __init__(self, uri: str, token: str, collection: str, writable: bool = False, timeout_s: float = 10.0):
        MilvusClient = milvus_client_class()
        self.uri, self.collection, self.writable, self.timeout_s = uri, collection, writable, timeout_s
        self._cache: dict[tuple, tuple[float, Any]] = {}  # (kind, what) -> (expiry, value): a web node's reads
        self._cache_lock = threading.Lock()
        try:
            self.client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
            self._ensure_collection()
        except AnimeBackError:
            raise
        except Exception as exc:  # pymilvus raises its own types
            raise StoreUnavailableError(f"cannot reach the published catalogue in Milvus at {uri}: {exc}") from None

    def _ensure_collection(self) -> None:
        from pymilvus import DataType

        client = self.client
        if not client.has_collection(self.collection):
            if not self.writable:
                raise StoreUnavailableError(
                    f"Milvus at {self.uri} has no published catalogue ({self.collection}) yet: start the indexing "
                    "node once (`python run.py process`) with the same milvus.uri and milvus.collection"
                )
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=2048)
            schema.add_field("grp", DataType.VARCHAR, max_length=2048)
            schema.add_field("value", DataType.VARCHAR, max_length=MAX_VALUE)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; never searched
            index = client.prepare_index_params()
            index.add_index("vector", index_type="FLAT", metric_type="L2")
            client.create_collection(self.collection, schema=schema, index_params=index)
        client.load_collection(self.collection)

    def _query(self, flt: str, consistency: str = "Bounded") -> list[tuple[bytes, bytes]]:
        with milvus_answers("the catalogue read"):
            rows = self.client.query(
                self.collection,
                filter=flt,
                output_fields=["key", "value"],
                consistency_level=consistency,
                timeout=self.timeout_s,
            )
        return sorted((bytes.fromhex(r["key"]), _decode_value(r["value"])) for r in rows if r["key"] != OWNER_KEY)

    def _cached(self, what: tuple) -> tuple[bool, Any]:
        with self._cache_lock:
            hit = self._cache.get(what)
        return (True, hit[1]) if hit is not None and hit[0] > time.monotonic() else (False, None)

    def _remember(self, items: dict[tuple, Any]) -> None:
        if self.writable:
            return  # the indexing node's host reads Milvus only to publish: nothing to reuse
        expiry = time.monotonic() + CACHE_S
        with self._cache_lock:
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.clear()
            self._cache.update({what: (expiry, value) for what, value in items.items()})

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        known: dict[bytes, bytes | None] = {}
        for key in keys:
            hit, value = self._cached(("key", key))
            if hit:
                known[key] = value
        wanted = [key for key in dict.fromkeys(keys) if key not in known]
        if wanted:
            found = dict(self._query(f"key in {json.dumps([k.hex() for k in wanted])}"))
            loaded = {key: found.get(key) for key in wanted}
            self._remember({("key", key): value for key, value in loaded.items()})
            known.update(loaded)
        return [known[key] for key in keys]

    def scan(self, prefixes: list[bytes]) -> list[tuple[bytes, bytes]]:
        """Every (key, value) under these prefixes (each a whole published group and its "/"), in key order."""
        groups = []
        for prefix in prefixes:
            group = published_group(prefix + b"x")
            if group is None or group + b"/" != prefix:
                raise AnimeBackError(f"{prefix!r} is not a published group of the catalogue")
            groups.append(group.hex())
        if not groups:
            return []
        hit, value = self._cached(("scan", tuple(groups)))
        if not hit:
            value = self._query(f"grp in {json.dumps(groups)}")
            self._remember({("scan", tuple(groups)): value})
        return value

    def keys_between(self, start: bytes, stop: bytes) -> Iterator[bytes]:
        raise WriteForbiddenError("the frame map is the indexing node's own: run this on the indexing node")

    def write(self, writes: Writes, sync: bool = True) -> None:
        """Apply writes (only published keys; the others are the indexing node's own)."""
        if not self.writable:
            raise WriteForbiddenError("a web node reads the index the indexing node publishes; write there")
        rows, deleted = [], []
        for key, value in writes.items():
            group = published_group(key)
            if group is None:
                continue
            if value is None:
                deleted.append(key.hex())
            else:
                rows.append(
                    {"key": key.hex(), "grp": group.hex(), "value": _encode_value(key, value), "vector": [0, 0]}
                )
        with milvus_answers("the catalogue write"):
            for i in range(0, len(rows), BATCH):
                self.client.upsert(self.collection, rows[i : i + BATCH], timeout=self.timeout_s)
            for i in range(0, len(deleted), BATCH):
                self.client.delete(self.collection, ids=deleted[i : i + BATCH], timeout=self.timeout_s)

    def _all(self, page: int = PAGE) -> Iterator[dict]:
        """Every row, read at Strong consistency: the repair after a crash must see the last writes."""
        with milvus_answers("the catalogue read"):
            yield from strong_scan(self.client, self.collection, "key", ["value"], page, self.timeout_s)

    def publish(self, items: Iterable[tuple[bytes, bytes]], owner: dict) -> tuple[int, int]:
        """Make the published collection hold exactly these items (published keys of the indexing node's store),
        claiming it for `owner` (refused when another installation owns it); returns (written, deleted)."""
        with milvus_answers("the catalogue check"):
            claimed = self.client.get(self.collection, ids=[OWNER_KEY], output_fields=["value"], timeout=self.timeout_s)
        if claimed:
            holder = json.loads(_decode_value(claimed[0]["value"]))
            if holder.get("installation") != owner["installation"]:
                raise IndexBusyError(
                    f"the index in Milvus at {self.uri} ({self.collection}) is written by another indexing node "
                    f"({holder.get('host')}, data folder {holder.get('data')}); one indexing node writes an index: "
                    "move that node's data folder here, or give this one its own milvus.collection"
                )
        wanted = {key: value for key, value in items if published_group(key) is not None}
        with milvus_answers("the catalogue check"):
            present = {bytes.fromhex(r["key"]): _decode_value(r["value"]) for r in self._all() if r["key"] != OWNER_KEY}
        writes: Writes = {key: value for key, value in wanted.items() if present.get(key) != value}
        writes.update({key: None for key in present.keys() - wanted.keys()})
        self.write(writes)
        owner_row = {"key": OWNER_KEY, "grp": "", "value": "r" + json.dumps(owner), "vector": [0, 0]}
        with milvus_answers("the catalogue write"):
            self.client.upsert(self.collection, [owner_row], timeout=self.timeout_s)
        written = sum(v is not None for v in writes.values())
        return written, len(writes) - written

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a Milvus that is gone already
            self.client.close()


class MirroredValues:
    """The indexing node's store with every write of a published key made in Milvus too, Milvus first: a failed
    publish leaves LevelDB as it was, and the next start of the store host publishes whatever differs."""

    def __init__(self, local: KeyValues, published: MilvusValues) -> None:
        self.local, self.published = local, published

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self.local.get_many(keys)

    def scan(self, prefixes: list[bytes]) -> list[tuple[bytes, bytes]]:
        return self.local.scan(prefixes)

    def keys_between(self, start: bytes, stop: bytes) -> Iterator[bytes]:
        return self.local.keys_between(start, stop)

    def write(self, writes: Writes, sync: bool = True) -> None:
        if any(published_group(key) is not None for key in writes):
            self.published.write(writes)
        self.local.write(writes, sync)

    def close(self) -> None:
        self.published.close()
        self.local.close()
