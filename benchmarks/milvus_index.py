"""Which index a Milvus server should build: recall against exact search, latency, build time and memory of
IVF_FLAT, IVF_SQ8, IVF_PQ and HNSW on one collection of a real Milvus standalone (2.3.5, the PyPI package).

Vectors: the real frame vectors of the shared clips (indexed by the product, default model) plus distractors
drawn from a Gaussian fitted to them (their mean and covariance), normalised like the product's vectors.
Queries: real frames' vectors with noise of the size a re-encode gives (cos ~0.97 to the stored one), so each
query's exact top 100 mixes its own frame and distractors. Recall@100 is against exact inner-product search
(numpy) over the same rows. The collection is written once; each index type is built on it in turn, the
types visited in the order given and then again reversed (A B B A), and the two medians quoted with their range.

    .venv/bin/python benchmarks/milvus_index.py --rows 300000

It runs in a private network namespace (it re-executes itself under `unshare --net` when it is not in one), as
a Milvus standalone listens on every interface."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, link_library, settings_for, shared_clips

sys.path.insert(0, str(ROOT))
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.stores import VectorStore
from animeback.stores.vectors import FrameRow, default_index_params, default_search_params
from tests.servers import MilvusStandalone, in_private_network

TYPES = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW")
K = 100


def real_vectors(workdir: Path) -> np.ndarray:
    """The vectors the product stores for the shared clips (default settings)."""
    library = workdir / "library"
    link_library(library, shared_clips())
    settings = settings_for(workdir, library)
    with Index(settings) as index:
        process_library(index, progress=False)
        client = index.vectors.client
        rows = client.query(index.vectors.collection, filter="", output_fields=["vector"], limit=16384)
    return np.asarray([r["vector"] for r in rows], dtype=np.float32)


def distractors(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Vectors drawn from a Gaussian fitted to the real ones, normalised."""
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False) + 1e-4 * np.eye(real.shape[1])
    drawn = rng.multivariate_normal(mean, cov, size=count, method="cholesky").astype(np.float32)
    return drawn / np.linalg.norm(drawn, axis=1, keepdims=True)


def noisy(vectors: np.ndarray, rng: np.random.Generator, cos: float = 0.97) -> np.ndarray:
    """Each vector moved to about `cos` of itself."""
    noise = rng.normal(size=vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    moved = cos * vectors + np.sqrt(1 - cos**2) * noise
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split()) / 1024


def build(store: VectorStore, index_type: str, nlist: int) -> tuple[float, dict]:
    """Replace the collection's index by one of this type; returns (build seconds, its parameters)."""
    client = store.client
    client.release_collection(store.collection)
    for name in client.list_indexes(store.collection):
        client.drop_index(store.collection, name)
    params = client.prepare_index_params()
    index_params = default_index_params(index_type, nlist, store.dim)
    params.add_index("vector", index_type=index_type, metric_type="IP", params=index_params)
    started = time.monotonic()
    client.create_index(store.collection, params)
    while True:  # create_index returns before the index is built
        info = client.describe_index(store.collection, "vector")
        if info.get("state") in (None, "Finished") and int(info.get("pending_index_rows", 0)) == 0:
            break
        time.sleep(0.5)
    client.load_collection(store.collection)
    store.index_type, store._search_params = index_type, default_search_params(index_type, store.nprobe)
    return time.monotonic() - started, index_params


def measure(store: VectorStore, queries: np.ndarray, exact: np.ndarray) -> dict:
    times, recalls = [], []
    for query, truth in zip(queries, exact, strict=True):
        started = time.perf_counter()
        (hits,) = store.search(query[None, :], K)
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len({h.id for h in hits} & set(truth.tolist())) / K)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * (len(times) - 1))],
        "recall": float(np.mean(recalls)),
        "worst": float(np.min(recalls)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows in the collection (real + distractors)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nlist", type=int, default=1024, help="IVF clusters (about 4 * sqrt(rows) is usual)")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF clusters visited per search")
    parser.add_argument("--types", default=",".join(TYPES))
    args = parser.parse_args()
    if not in_private_network():
        os.execvp(
            "unshare",
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv],
        )
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        real = real_vectors(work / "real")
        fake = distractors(real, args.rows - len(real), rng)
        rows = np.vstack([real, fake])
        picks = rng.integers(0, len(real), size=args.queries)
        queries = noisy(real[picks], rng)
        exact = np.argsort(-(queries @ rows.T), axis=1)[:, :K]
        print(f"{len(rows)} rows ({len(real)} real frames, {len(fake)} distractors), {args.queries} queries, k={K}")

        server = MilvusStandalone(work / "milvus").start()
        try:
            idle = rss_mib(server.pid)
            store = VectorStore(
                server.uri, "", "bench_frames", rows.shape[1], nlist=args.nlist, nprobe=args.nprobe, index_type="FLAT"
            )
            started = time.monotonic()
            batch = [FrameRow(i, i // 1000, "s", 0.0, 0.0, 0.0, v) for i, v in enumerate(rows)]
            store.insert(batch)
            store.flush()
            print(f"insert + flush: {time.monotonic() - started:.0f} s; Milvus resident {idle:.0f} MiB idle")
            types = args.types.split(",")
            results: dict[str, list[dict]] = {t: [] for t in types}
            for index_type in types + types[::-1]:
                seconds, params = build(store, index_type, args.nlist)
                result = measure(store, queries, exact)
                result.update(build_s=seconds, rss_mib=rss_mib(server.pid), params=params)
                results[index_type].append(result)
                print(
                    f"  {index_type:9s} built in {seconds:5.1f} s: recall@{K} {result['recall']:.3f} "
                    f"(worst {result['worst']:.2f}), p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                    f"Milvus resident {result['rss_mib']:.0f} MiB",
                    flush=True,
                )
            print(f"\n| index (params) | recall@{K} mean (worst) | p50 ms (range) | p99 ms | build s | resident MiB |")
            print("|---|---|---|---|---|---|")
            for index_type, runs in results.items():
                p50 = [r["p50_ms"] for r in runs]
                print(
                    f"| {index_type} {runs[0]['params']} | {np.mean([r['recall'] for r in runs]):.3f} "
                    f"({min(r['worst'] for r in runs):.2f}) | {statistics.median(p50):.1f} ({min(p50):.1f}-"
                    f"{max(p50):.1f}) | {statistics.median(r['p99_ms'] for r in runs):.1f} | "
                    f"{statistics.median(r['build_s'] for r in runs):.0f} | "
                    f"{statistics.median(r['rss_mib'] for r in runs):.0f} |"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
