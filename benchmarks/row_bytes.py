"""Disk bytes per row in Milvus Lite for candidate frame schemas: how compact can a frame's entry be?

    .venv/bin/python benchmarks/row_bytes.py [--rows 100000]

Each schema gets a fresh Milvus Lite file, `--rows` rows of random values (real vectors compress no better:
float bits are noise to a compressor), inserted in batches of 1,000 and flushed; the figure is the size of
everything Milvus Lite wrote, divided by the rows. Also the mean time of 20 searches for the top 100 of one
query vector. "fields" is the product's schema today (id, episode, series, time, span_start, span_end);
"id only" keeps the id (the episode is in its high bits, the times are in the catalogue's frame map).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient


def _bytes_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _vector(kind: DataType, dim: int, rng: np.random.Generator):
    if kind == DataType.BINARY_VECTOR:
        return rng.integers(0, 256, dim // 8, dtype=np.uint8).tobytes()
    if kind == DataType.FLOAT16_VECTOR:
        return rng.standard_normal(dim).astype(np.float16)
    return rng.standard_normal(dim).astype(np.float32).tolist()


def measure(folder: Path, rows: int, kind: DataType, dim: int, fields: str, index_type: str, metric: str) -> str:
    """Bytes per row, insert time and search time of one schema; fields: "all" (a frame's), "episode", "none"."""
    folder.mkdir()
    client = MilvusClient(str(folder / "milvus.db"))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    if fields != "none":
        schema.add_field("episode", DataType.INT64)
    if fields == "all":
        schema.add_field("series", DataType.VARCHAR, max_length=256)
        for name in ("time", "span_start", "span_end"):
            schema.add_field(name, DataType.FLOAT)
    schema.add_field("vector", kind, dim=dim)
    index = client.prepare_index_params()
    index.add_index(
        "vector", index_type=index_type, metric_type=metric, params={"nlist": 128} if "IVF" in index_type else {}
    )
    try:
        client.create_collection("frames", schema=schema, index_params=index)
    except Exception as exc:  # pymilvus raises its own types
        client.close()
        return f"refused: {str(exc)[:120]}"
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for i in range(0, rows, 1000):
        batch = []
        for k in range(i, min(rows, i + 1000)):
            row = {"id": k, "vector": _vector(kind, dim, rng)}
            if fields != "none":
                row["episode"] = k // 2880
            if fields == "all":
                row.update(series="a series folder", time=k / 2, span_start=k / 2, span_end=k / 2 + 0.5)
            batch.append(row)
        client.insert("frames", batch)
    client.flush("frames")
    insert_s = time.perf_counter() - started
    query = _vector(kind, dim, rng)
    client.search("frames", data=[query], limit=100)
    started = time.perf_counter()
    for _ in range(20):
        client.search("frames", data=[query], limit=100)
    search_ms = (time.perf_counter() - started) / 20 * 1000
    client.close()
    return f"{_bytes_of(folder) / rows:6.0f} B/row; insert {insert_s:5.1f} s; search {search_ms:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", default="", help="measure only the schemas whose name contains this")
    args = parser.parse_args()
    schemas = [
        ("float32 256-d, fields (today)", DataType.FLOAT_VECTOR, 256, "all", "IVF_FLAT", "IP"),
        ("float32 256-d, id only", DataType.FLOAT_VECTOR, 256, "none", "IVF_FLAT", "IP"),
        ("float32 64-d, fields", DataType.FLOAT_VECTOR, 64, "all", "IVF_FLAT", "IP"),
        ("float16 256-d, fields, IVF_FLAT", DataType.FLOAT16_VECTOR, 256, "all", "IVF_FLAT", "IP"),
        ("float16 256-d, fields, FLAT", DataType.FLOAT16_VECTOR, 256, "all", "FLAT", "IP"),
        ("binary 256-bit, fields", DataType.BINARY_VECTOR, 256, "all", "BIN_FLAT", "HAMMING"),
        ("binary 256-bit, id + episode", DataType.BINARY_VECTOR, 256, "episode", "BIN_FLAT", "HAMMING"),
        ("binary 256-bit, id only (half codes)", DataType.BINARY_VECTOR, 256, "none", "BIN_FLAT", "HAMMING"),
        ("float32 8-d, id only (the row's floor)", DataType.FLOAT_VECTOR, 8, "none", "FLAT", "IP"),
    ]
    print(f"Milvus Lite, {args.rows} rows per schema")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, kind, dim, fields, index_type, metric) in enumerate(schemas):
            if args.only not in name:
                continue
            print(
                f"{name:<40} {measure(Path(tmp) / str(n), args.rows, kind, dim, fields, index_type, metric)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
