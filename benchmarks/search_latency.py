"""Search latency on a warm index of the shared clips: p50/p95 of a whole search (decode, borders,
CNN, Milvus, grouping) from JPEG bytes.

    .venv/bin/python benchmarks/search_latency.py [--queries 200]
    .venv/bin/python benchmarks/search_latency.py --compare-blas [--rounds 10]
    .venv/bin/python benchmarks/search_latency.py --compare-half-codes [--rounds 10]

--compare-blas measures the web workers' setting (numpy's BLAS held to one thread) against numpy's default, in
one run, interleaved: rounds of one block of each (20 searches), the order alternating (A B, B A, ...).
--compare-half-codes measures, the same way, the default index against one with binary half-frame entries
(features.half_frames with half_entries "binary"), both of the shared clips, searched in one process.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from common import grab_rgb, link_library, percentile, settings_for, shared_clips
from PIL import Image

from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.ingest.media import probe
from animeback.query.search import Searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--compare-blas", action="store_true", help="one BLAS thread vs numpy's default, interleaved")
    parser.add_argument(
        "--compare-half-codes", action="store_true", help="the default index vs binary half entries, interleaved"
    )
    parser.add_argument("--rounds", type=int, default=10, help="with --compare-*: rounds of one block of each")
    args = parser.parse_args()
    clips = shared_clips()
    rng = np.random.default_rng(args.seed)
    payloads = []
    for i in range(min(args.queries, 40)):
        clip = clips[i % len(clips)]
        rgb = grab_rgb(clip, float(rng.uniform(0.2, probe(clip).duration - 0.3)))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=90)
        payloads.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "library"
        link_library(library, clips)
        with Index(settings_for(Path(tmp), library)) as index:
            process_library(index, progress=False)
            searcher = Searcher(index)
            for data in payloads[:5]:
                searcher.search_bytes(data)  # warm-up: compiled CNN call, loaded collection
            if args.compare_blas:
                compare_blas(searcher, payloads, args.rounds)
                return
            if args.compare_half_codes:
                coded = settings_for(
                    Path(tmp) / "codes", library, **{"features.half_frames": True, "features.half_entries": "binary"}
                )
                with Index(coded, index.embedder) as coded_index:
                    process_library(coded_index, progress=False)
                    coded_searcher = Searcher(coded_index)
                    for data in payloads[:5]:
                        coded_searcher.search_bytes(data)
                    interleaved(
                        {
                            "default": lambda: _block(searcher, payloads),
                            "half codes": lambda: _block(coded_searcher, payloads),
                        },
                        args.rounds,
                    )
                return
            times = []
            for i in range(args.queries):
                started = time.perf_counter()
                searcher.search_bytes(payloads[i % len(payloads)])
                times.append((time.perf_counter() - started) * 1000)
            vectors = index.vectors.count()
    print(f"warm index: {len(clips)} clips, {vectors} vectors; {args.queries} searches of {len(payloads)} JPEG queries")
    print(
        f"search latency: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms, "
        f"max {max(times):.1f} ms"
    )


BLOCK = 20  # searches per block of the interleaved comparisons


def _block(searcher: Searcher, payloads: list[bytes]) -> float:
    """The median latency (ms) of one block of searches."""
    times = []
    for i in range(BLOCK):
        started = time.perf_counter()
        searcher.search_bytes(payloads[i % len(payloads)])
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50)


def interleaved(blocks: dict, rounds: int) -> None:
    """Print block medians of two ways of searching (name -> a block's median), run A B, B A, ..., and their ratio."""
    (a, run_a), (b, run_b) = blocks.items()
    got: dict[str, list[float]] = {a: [], b: []}
    ratios = []
    for r in range(rounds):
        order = ((a, run_a), (b, run_b)) if r % 2 == 0 else ((b, run_b), (a, run_a))
        medians = {name: run() for name, run in order}
        for name, value in medians.items():
            got[name].append(value)
        ratios.append(medians[a] / medians[b])
    print(f"{rounds} rounds of {BLOCK} searches per setting, interleaved (block medians)")
    for name, values in got.items():
        print(f"  {name:16s} p50 {percentile(values, 50):.1f} ms (blocks {min(values):.1f}-{max(values):.1f})")
    print(f"  ratio {a}/{b}: median {percentile(ratios, 50):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")


def compare_blas(searcher: Searcher, payloads: list[bytes], rounds: int) -> None:
    """Block medians of search latency with BLAS on one thread and numpy's default, interleaved."""
    from threadpoolctl import threadpool_limits

    def run_block(single: bool) -> float:
        with threadpool_limits(limits=1 if single else None, user_api="blas"):
            return _block(searcher, payloads)

    interleaved({"one BLAS thread": lambda: run_block(True), "numpy default": lambda: run_block(False)}, rounds)


if __name__ == "__main__":
    main()
