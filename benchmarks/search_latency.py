"""Search latency on a warm index of the shared clips: p50/p95 of a whole search (decode, borders,
CNN, Milvus, grouping) from JPEG bytes.

    .venv/bin/python benchmarks/search_latency.py [--queries 200]
    .venv/bin/python benchmarks/search_latency.py --compare-blas [--rounds 10]

--compare-blas measures the web workers' setting (numpy's BLAS held to one thread) against numpy's default, in
one run, interleaved: rounds of one block of each (20 searches), the order alternating (A B, B A, ...).
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
    parser.add_argument("--rounds", type=int, default=10, help="with --compare-blas: rounds of one block of each")
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


def compare_blas(searcher: Searcher, payloads: list[bytes], rounds: int, block: int = 20) -> None:
    """Block medians of search latency with BLAS on one thread (A) and numpy's default (B), interleaved."""
    from threadpoolctl import threadpool_limits

    def run_block(single: bool) -> float:
        times = []
        with threadpool_limits(limits=1 if single else None, user_api="blas"):
            for i in range(block):
                started = time.perf_counter()
                searcher.search_bytes(payloads[i % len(payloads)])
                times.append((time.perf_counter() - started) * 1000)
        return percentile(times, 50)

    single, default, ratios = [], [], []
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        got = {mode: run_block(mode) for mode in order}
        single.append(got[True])
        default.append(got[False])
        ratios.append(got[True] / got[False])
    print(f"{rounds} rounds of {block} searches per setting, interleaved (block medians)")
    for name, values in (("one BLAS thread", single), ("numpy default", default)):
        print(f"  {name:16s} p50 {percentile(values, 50):.1f} ms (blocks {min(values):.1f}-{max(values):.1f})")
    print(f"  ratio one/default: median {percentile(ratios, 50):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
