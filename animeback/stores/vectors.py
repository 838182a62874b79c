"""Frame vectors in Milvus through pymilvus: one code path for embedded Milvus Lite and a Milvus server."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import StoreUnavailableError
from .catalogue import FRAME_ID_BITS, whole_frame_id
from .codes import binary_codes, code_bits, code_similarity
from .milvus_client import milvus_answers, milvus_client_class, strong_scan

MAX_TOPK = 16384  # the most results Milvus returns per query vector

log = logging.getLogger(__name__)

INSERT_BATCH = 1000  # Milvus Lite slows down sharply on larger insert batches


def default_index_params(index_type: str, nlist: int, dim: int) -> dict:
    """The build parameters of an index type, before milvus.params overrides them."""
    if index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": nlist}
    if index_type == "IVF_PQ":  # m sub-vectors of 8 bits: dim / 4 bytes per vector, 1/16 of float32
        return {"nlist": nlist, "m": max(1, dim // 16), "nbits": 8}
    if index_type == "HNSW":
        return {"M": 16, "efConstruction": 200}
    return {}


def default_search_params(index_type: str, nprobe: int) -> dict:
    """The search parameters of an index type, before milvus.search_params overrides them."""
    if index_type.startswith("IVF_"):
        return {"nprobe": nprobe}
    if index_type == "HNSW":
        return {"ef": 128}
    return {}


@dataclass(frozen=True)
class FrameSpan:
    """An indexed frame: its id, episode, series, time, and the span [start, end) of video it stands for."""

    id: int
    episode: int
    series: str
    time: float
    start: float
    end: float


@dataclass(frozen=True)
class FrameRow(FrameSpan):
    """A frame to write, with its vector."""

    vector: np.ndarray


@dataclass(frozen=True)
class Hit(FrameSpan):
    """A search hit, with its cosine similarity to the query (estimated from binary codes when `coded`)."""

    similarity: float
    coded: bool = False


HIT_FIELDS = ["episode", "series", "time", "span_start", "span_end"]
CODED_REACH = 0.15  # coded hits further below a query's best coded hit are left out (see _search_codes)
CODES_SUFFIX = "_half_codes"  # the collection of binary-coded region entries (features.half_entries "binary")


class VectorStore:
    """A Milvus collection of frame vectors (inner product on unit vectors = cosine similarity).

    `uri` is always a server's: a Milvus server or cluster, or the store host's Milvus Lite socket."""

    def __init__(
        self,
        uri: str | Callable[[], str],
        token: str,
        collection: str,
        dim: int,
        nlist: int = 128,
        nprobe: int = 16,
        index_type: str = "IVF_FLAT",
        params: dict | None = None,
        search_params: dict | None = None,
        timeout_s: float | None = None,
        fallback_index_type: str | None = None,
        coded_regions: bool = False,
    ):
        """`uri` may be a callable: it is asked before every call, and a new answer (the store host restarted and
        serves Milvus Lite on a new socket) reopens the client, and the collections, there. `params` and
        `search_params` override the index type's defaults. A new collection gets an index of `index_type` (or
        `fallback_index_type` when the server cannot build that one); an existing one keeps its own, and is
        searched with that type's parameters. With `coded_regions`, the entries of parts of frames (ids with region
        bits) are stored as binary codes in a second collection (152 B a row in Milvus Lite instead of 1369)."""
        self._uri_source: Callable[[], str] = uri if callable(uri) else (lambda: uri)
        self._token, self.collection, self.dim, self.nlist, self.nprobe = token, collection, dim, nlist, nprobe
        self.timeout_s, self.fallback_index_type = timeout_s, fallback_index_type
        self.coded_regions, self.codes_collection = coded_regions, collection + CODES_SUFFIX
        self._params, self._search_overrides = params or {}, search_params or {}
        self._use_index_type(index_type)
        self._reopened: list[Callable[[Any], None]] = []
        self.uri = ""
        self._client: Any = None
        self._open(self._uri_source())

    @classmethod
    def from_settings(cls, settings: Settings, uri: str | Callable[[], str], dim: int) -> VectorStore:
        """The frame collection at uri (the configured server's, or the store host's Milvus Lite socket)."""
        milvus = settings.milvus
        return cls(
            uri,
            milvus.token,
            milvus.collection,
            dim,
            milvus.nlist,
            milvus.nprobe,
            settings.milvus_index_type,
            milvus.params,
            milvus.search_params,
            milvus.timeout_s,
            # the default server type, on a server that cannot build it (Milvus Lite's own gRPC server)
            "IVF_FLAT" if not milvus.index_type else None,
            settings.features.coded_halves,
        )

    def search_params(self, limit: int) -> dict:
        """Milvus's search parameters for `limit` results (HNSW must look at least `limit` candidates)."""
        params = dict(self._search_params)
        if self.index_type == "HNSW":
            params["ef"] = max(int(params.get("ef", 0)), limit)
        return params

    def _open(self, uri: str) -> None:
        MilvusClient = milvus_client_class()

        try:
            client = MilvusClient(uri=uri, token=self._token)
        except Exception as exc:  # pymilvus raises its own types
            raise StoreUnavailableError(f"cannot reach Milvus at {uri}: {exc}") from None
        previous, self._client, self.uri = self._client, client, uri
        if previous is not None:
            with contextlib.suppress(Exception):  # the old server is gone: nothing to close cleanly
                previous.close()
        self._ensure_collection()
        for reopened in self._reopened:
            reopened(client)

    @property
    def client(self) -> Any:
        """The pymilvus client, reopened first when Milvus has moved (a restarted store host)."""
        uri = self._uri_source()
        if uri != self.uri:
            log.info("Milvus is now at %s (the store host restarted): reconnecting", uri)
            self._open(uri)
        return self._client

    def _use_index_type(self, index_type: str) -> None:
        self.index_type = index_type
        self.index_params = {**default_index_params(index_type, self.nlist, self.dim), **self._params}
        self._search_params = {**default_search_params(index_type, self.nprobe), **self._search_overrides}

    def on_reopen(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` with the new client whenever it is reopened on a new Milvus (so that other collections
        are loaded there too)."""
        self._reopened.append(callback)

    def _ensure_collection(self) -> None:
        from pymilvus import DataType

        client = self._client
        if client.has_collection(self.collection):
            fields = client.describe_collection(self.collection)["fields"]
            vector = next(f for f in fields if f["name"] == "vector")
            self.stored_dim = int(vector["params"]["dim"])
            if self.stored_dim != self.dim:
                return  # vectors of another model: Index.check_model refuses to use them until a reindex drops them
            built = client.describe_index(self.collection, "vector").get("index_type")
            if built and built != self.index_type:
                self._use_index_type(built)  # searched as what it is (a reindex builds the configured type)
        else:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("episode", DataType.INT64)
            schema.add_field("series", DataType.VARCHAR, max_length=256)
            schema.add_field("time", DataType.FLOAT)
            schema.add_field("span_start", DataType.FLOAT)
            schema.add_field("span_end", DataType.FLOAT)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            self._create(schema)
            self.stored_dim = self.dim
        client.load_collection(self.collection)
        if self.coded_regions:
            self._ensure_codes_collection()

    def _ensure_codes_collection(self) -> None:
        from pymilvus import DataType
        from pymilvus.exceptions import MilvusException

        client = self._client
        if not client.has_collection(self.codes_collection):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            # the id alone (its episode is in its bits, catalogue.frame_id): a coded entry's series, time and span
            # are its whole frame's, read from there; a field more would cost 26 bytes a row (benchmarks/row_bytes.py)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("code", DataType.BINARY_VECTOR, dim=code_bits(self.dim))
            for index_type in ("BIN_IVF_FLAT", "BIN_FLAT"):  # Milvus Lite builds only BIN_FLAT
                index = client.prepare_index_params()
                params = {"nlist": self.nlist} if index_type == "BIN_IVF_FLAT" else {}
                index.add_index("code", index_type=index_type, metric_type="HAMMING", params=params)
                try:
                    client.create_collection(self.codes_collection, schema=schema, index_params=index)
                    break
                except MilvusException as exc:
                    if index_type == "BIN_FLAT" or "index" not in str(exc.message).lower():
                        raise
                    client.drop_collection(self.codes_collection)
        client.load_collection(self.codes_collection)

    def _create(self, schema: Any) -> None:
        from pymilvus.exceptions import MilvusException

        client = self._client
        index = client.prepare_index_params()
        index.add_index("vector", index_type=self.index_type, metric_type="IP", params=self.index_params)
        try:
            client.create_collection(self.collection, schema=schema, index_params=index)
        except MilvusException as exc:
            if self.fallback_index_type is None or "index" not in str(exc.message).lower():
                raise
            log.info(
                "Milvus at %s cannot build %s (%s): building %s",
                self.uri,
                self.index_type,
                exc.message,
                self.fallback_index_type,
            )
            client.drop_collection(self.collection)  # created, its index refused
            self._use_index_type(self.fallback_index_type)
            self._create(schema)

    def insert(self, rows: list[FrameRow]) -> None:
        """Insert frame rows (in batches Milvus handles well); with coded regions, parts of frames as codes."""
        coded = [r for r in rows if self.coded_regions and r.id != whole_frame_id(r.id)]
        if coded:
            rows = [r for r in rows if r.id == whole_frame_id(r.id)]
            codes = binary_codes(np.stack([r.vector for r in coded]))
            with milvus_answers("the insert"):
                for i in range(0, len(coded), INSERT_BATCH):
                    self.client.insert(
                        self.codes_collection,
                        [
                            {"id": r.id, "code": code.tobytes()}
                            for r, code in zip(coded[i : i + INSERT_BATCH], codes[i : i + INSERT_BATCH])
                        ],
                    )
        with milvus_answers("the insert"):
            for i in range(0, len(rows), INSERT_BATCH):
                self.client.insert(
                    self.collection,
                    [
                        {
                            "id": r.id,
                            "episode": r.episode,
                            "series": r.series,
                            "time": r.time,
                            "span_start": r.start,
                            "span_end": r.end,
                            "vector": r.vector.tolist(),
                        }
                        for r in rows[i : i + INSERT_BATCH]
                    ],
                )

    def delete_episode(self, episode: int) -> None:
        """Remove every vector of an episode."""
        with milvus_answers("the delete"):
            for collection in self._collections():
                self.client.delete(collection, filter=self._of_episode(collection, episode))

    def delete_ids(self, ids: list[int]) -> None:
        """Remove some vectors by id."""
        with milvus_answers("the delete"):
            for collection in self._collections():
                for i in range(0, len(ids), INSERT_BATCH):
                    self.client.delete(collection, ids=[int(fid) for fid in ids[i : i + INSERT_BATCH]])

    def _collections(self) -> list[str]:
        """The collections this store writes: the frames', and with coded regions the codes'."""
        return [self.collection, self.codes_collection] if self.coded_regions else [self.collection]

    def count(self, episode: int | None = None) -> int:
        """Number of entries (vectors and codes), in all or of one episode."""
        return sum(self._count(collection, episode) for collection in self._collections())

    def count_codes(self) -> int:
        """Number of coded entries (parts of frames stored as binary codes)."""
        return self._count(self.codes_collection) if self.coded_regions else 0

    def _of_episode(self, collection: str, episode: int, outside: bool = False) -> str:
        """A filter for the entries of one episode (or outside it); coded entries know it by their id's range."""
        if collection == self.collection:
            return f"episode {'!=' if outside else '=='} {int(episode)}"
        first, end = int(episode) << FRAME_ID_BITS, (int(episode) + 1) << FRAME_ID_BITS
        return f"id < {first} or id >= {end}" if outside else f"id >= {first} and id < {end}"

    def _count(self, collection: str, episode: int | None = None) -> int:
        flt = "" if episode is None else self._of_episode(collection, episode)
        with milvus_answers("the count"):
            # Strong: a server answers after every earlier write (its default, Bounded, may miss the last ones)
            result = self.client.query(collection, filter=flt, output_fields=["count(*)"], consistency_level="Strong")
        return int(result[0]["count(*)"])

    def episode_ids(self) -> set[int]:
        """The distinct episode ids that have vectors (a full scan: for checks, not for serving)."""
        seen: set[int] = set()
        with milvus_answers("the scan of episodes"):
            for row in strong_scan(self.client, self.collection, "id", ["episode"]):
                seen.add(int(row["episode"]))
            if self.coded_regions:
                seen.update(
                    int(row["id"]) >> FRAME_ID_BITS for row in strong_scan(self.client, self.codes_collection, "id", [])
                )
        return seen

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        series: Sequence[str] | None = None,
        exclude_episode: int | None = None,
        regions: bool = True,
    ) -> list[list[Hit]]:
        """Nearest entries for each query vector (at most `limit` of each kind, whole-frame and coded, and at most
        MAX_TOPK), best first, optionally within some series (by folder name; none at all when `series` is empty)
        and outside one episode; `regions` False leaves out the coded entries of parts of frames."""
        limit = min(limit, MAX_TOPK)
        conditions = []
        series_condition = ""
        if series is not None:
            if not series:
                return [[] for _ in vectors]
            quoted = ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' for name in series)
            series_condition = "series in [" + ", ".join(quoted) + "]"
            conditions.append(series_condition)
        if exclude_episode is not None:
            conditions.append(self._of_episode(self.collection, exclude_episode, outside=True))
        # indexing (outside one episode) must see every episode written before; a query may lag a moment
        consistency = "Strong" if exclude_episode is not None else "Bounded"
        with milvus_answers("the search"):
            answers = self.client.search(
                self.collection,
                data=[v.tolist() for v in vectors],
                limit=limit,
                filter=" and ".join(conditions),
                output_fields=HIT_FIELDS,
                search_params={"metric_type": "IP", "params": self.search_params(limit)},
                timeout=self.timeout_s,
                consistency_level=consistency,
            )
            found = [[_hit(h["id"], h["entity"], h["distance"]) for h in answer] for answer in answers]
            if self.coded_regions and regions:
                codes_condition = (
                    "" if exclude_episode is None else self._of_episode(self.codes_collection, exclude_episode, True)
                )
                for hits, coded in zip(found, self._search_codes(vectors, limit, codes_condition, series_condition)):
                    hits.extend(coded)
                    hits.sort(key=lambda h: -h.similarity)
        return found

    def _search_codes(self, vectors: np.ndarray, limit: int, codes_condition: str, series_condition: str):
        """The nearest coded entries of each query vector, as hits with their whole frame's series, time and span
        and the cosine their Hamming distance estimates."""
        bits = code_bits(self.dim)
        answers = self.client.search(
            self.codes_collection,
            data=[code.tobytes() for code in binary_codes(vectors)],
            limit=limit,
            filter=codes_condition,
            search_params={"metric_type": "HAMMING", "params": {"nprobe": self.nprobe}},
            timeout=self.timeout_s,
        )
        # Only the coded hits near each query's best are worth their frame's fields: one further below cannot
        # lead a scene (after search's penalty it is below that best too), and reading fields costs per id.
        near = [_near_best([(h, code_similarity(h["distance"], bits)) for h in answer]) for answer in answers]
        wanted = sorted({whole_frame_id(int(h["id"])) for answer in near for h, _ in answer})
        frames: dict[int, dict] = {}
        for i in range(0, len(wanted), INSERT_BATCH):
            flt = f"id in [{', '.join(map(str, wanted[i : i + INSERT_BATCH]))}]"
            rows = self.client.query(
                self.collection,
                filter=f"{flt} and {series_condition}" if series_condition else flt,
                output_fields=HIT_FIELDS,
                timeout=self.timeout_s,
            )
            frames.update((int(r["id"]), r) for r in rows)
        return [
            [
                dataclasses.replace(_hit(h["id"], frame, similarity), coded=True)
                for h, similarity in answer
                if (frame := frames.get(whole_frame_id(int(h["id"])))) is not None
            ]
            for answer in near
        ]

    def flush(self) -> None:
        """Make written rows durable."""
        with milvus_answers("the flush"):
            for collection in self._collections():
                self.client.flush(collection)

    def drop(self) -> None:
        """Delete the whole collection and create it empty again."""
        with milvus_answers("the drop of the vectors"):
            self.client.drop_collection(self.collection)
            # codes written under another configuration are dropped as well
            if self.client.has_collection(self.codes_collection):
                self.client.drop_collection(self.codes_collection)
            self._ensure_collection()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a Milvus that is gone already
            self._client.close()


def _near_best(scored: list[tuple[dict, float]]) -> list[tuple[dict, float]]:
    """The (hit, similarity) pairs within CODED_REACH of the best one."""
    best = max((similarity for _, similarity in scored), default=0.0)
    return [(h, similarity) for h, similarity in scored if similarity >= best - CODED_REACH]


def _hit(fid: Any, fields: dict, similarity: float) -> Hit:
    """A hit from an entry's id, its frame's fields as Milvus returns them, and its similarity."""
    return Hit(
        int(fid),
        int(fields["episode"]),
        fields["series"],
        float(fields["time"]),
        float(fields["span_start"]),
        float(fields["span_end"]),
        float(similarity),
    )
