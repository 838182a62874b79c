"""What a search of binary half-frame codes costs in Milvus Lite as the codes grow (BIN_FLAT: a scan of every code).

    .venv/bin/python benchmarks/code_scan.py [--sizes 1000000,4000000] [--searches 10]

Random 256-bit codes in an id-only collection, as `features.half_entries "binary"` stores them (4 a frame), and
searches of 3 query codes with limit 500 each, as one search sends them (the picture, its mirror, a region; 100
candidates times 5 entries a frame). Prints insert-and-load seconds and the search p50 with its range per size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import percentile

from animeback.stores.milvus_client import milvus_client_class

BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000", help="codes in the collection, growing")
    parser.add_argument("--searches", type=int, default=10)
    args = parser.parse_args()
    from pymilvus import DataType

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        client = milvus_client_class()(uri=str(Path(tmp) / "codes.db"))
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=256)
        index = client.prepare_index_params()
        index.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        client.create_collection("codes", schema=schema, index_params=index)
        written = 0
        for size in (int(n) for n in args.sizes.split(",")):
            started = time.perf_counter()
            while written < size:
                codes = rng.integers(0, 256, (BATCH, 32), dtype=np.uint8)
                client.insert("codes", [{"id": written + i, "code": code.tobytes()} for i, code in enumerate(codes)])
                written += BATCH
            client.flush("codes")
            client.release_collection("codes")
            client.load_collection("codes")
            loaded_s = time.perf_counter() - started
            queries = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(3)]
            params = {"metric_type": "HAMMING"}
            client.search("codes", data=queries, limit=500, search_params=params)  # warm-up
            times = []
            for _ in range(args.searches):
                started = time.perf_counter()
                client.search("codes", data=queries, limit=500, search_params=params)
                times.append((time.perf_counter() - started) * 1000)
            print(
                f"{written:>10} codes: insert and load {loaded_s:6.1f} s; search p50 {percentile(times, 50):6.1f} ms "
                f"({min(times):.1f}-{max(times):.1f})",
                flush=True,
            )
        client.close()


if __name__ == "__main__":
    main()
