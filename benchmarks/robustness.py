"""Robust search: top-1 at the 1% false-match threshold, per distortion, for AnimeBack and a colour-layout baseline.

    .venv/bin/python benchmarks/robustness.py [--queries 20] [--seed 7] [--holdout tom_and_jerry_trap_happy.mp4] \
        [--model models/animeback-v3] [--compare-repeats] [--no-halves] [--binary-halves] \
        [--also-with search.confident=1.0]

Same protocol as accuracy.py (seeded query times per clip, correct = right file and `at` within 1 s or the true
time inside from..to), with the distortions people really post (benchmarks/common.py ROBUST_DISTORTIONS). For
each method, the not-indexed screenshots (the holdout clip's queries under every distortion, searched in an index
without it) set the threshold that at most 1% of them reach; a correct answer counts only at or above it.
Every method sees the same queries in the same run: ImageNet + PCA (the default), the same with half-frame index
entries (features.half_frames), each --model, and the colour-layout baseline. Query times whose frame is blank are
drawn again (accuracy.query_frames); the line under the header says which, and whether each method declined
them. Also prints index bytes per second of video and search latency. --compare-repeats adds the default with
repeats.enabled off (the clips form one series, so repeat detection runs across all of them: the accuracy
before and after storing repeated sequences once); --no-halves leaves out the half-frame index; --binary-halves
adds it with its halves stored as 256-bit binary codes (features.half_entries "binary").

Every query is searched by every method in turn (A B C, A B C, ...), so the machine's load falls on all alike.
The moment table then gives, of each method's right answers above its threshold, |at - t| percentiles, the share
that is exact (`at` within 0.5 s of the true time, or showing the same picture: every frame of the clips decoded
small and grey, mean difference under 2 of 255) and the from..to width of queries outside still shots (the
picture changes within 0.5 s of t), then the exact share of each distortion; `--also-with search.refine=0` adds
the search without the exact moment.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from accuracy import build, describe_blanks, query_frames
from colour_layout import ColourLayoutIndex
from common import ROBUST_DISTORTIONS, ROOT, add_setting_option, percentile, shared_clips

from animeback.config import Settings, updated
from animeback.model.embedder import Embedder
from animeback.query.refine import FrameReader
from animeback.query.search import Searcher
from animeback.stores.codes import code_bits


class ClipFrames:
    """Every frame of the clips, small and grey, to tell whether two moments show the same picture."""

    WIDTH = 160
    SAME = 2.0  # mean absolute grey difference (of 255) below which two frames show the same picture

    def __init__(self, clips: list[Path]):
        self.frames = {}
        for clip in clips:
            with FrameReader(clip, None) as reader:
                times, frames = reader.read(0.0, float("inf"))
            self.frames[clip] = (np.asarray(times), frames)

    def at(self, clip: Path, t: float) -> np.ndarray:
        """The frame on screen at time t."""
        times, frames = self.frames[clip]
        return frames[max(0, int(np.searchsorted(times, t + 1e-6)) - 1)]

    def same_picture(self, clip: Path, a: float, b: float) -> bool:
        return float(np.abs(self.at(clip, a) - self.at(clip, b)).mean()) < self.SAME

    def still(self, clip: Path, t: float, reach: float = 0.5) -> bool:
        """Whether the picture at t stays the same from t - reach to t + reach."""
        times, _ = self.frames[clip]
        return all(self.same_picture(clip, t, u) for u in times[(times >= t - reach) & (times <= t + reach)])


def _ours(searcher: Searcher):
    def search(rgb):
        outcome = searcher.search(rgb, cut_borders=True)
        m = outcome.matches[0] if outcome.matches else None
        return (m.filename, m.start, m.at, m.end, m.similarity) if m else None

    return search


def _baseline(index: ColourLayoutIndex):
    def search(rgb):
        from animeback.imaging import content_box, is_cropped

        box = content_box(rgb)  # trace.moe's cutBorders, as the benchmark's queries would be sent with it
        if is_cropped(box, rgb.shape):
            rgb = box.crop(rgb)
        return index.search(rgb)

    return search


def _vector_bytes(index) -> int:
    """Bytes of an index's vectors and codes (float32 vectors, packed codes), without Milvus's costs per row."""
    codes = index.vectors.count_codes()
    return (index.vectors.count() - codes) * index.embedder.dim * 4 + codes * code_bits(index.embedder.dim) // 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout", default="tom_and_jerry_trap_happy.mp4")
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        default=[],
        help="also measure this trained model folder (models/animeback-v3); repeatable",
    )
    parser.add_argument(
        "--compare-repeats",
        action="store_true",
        help="also measure the default with repeats.enabled off (the clips are one series: nothing should change)",
    )
    parser.add_argument("--no-halves", action="store_true", help="leave out the half-frame entries' index")
    parser.add_argument(
        "--binary-halves",
        action="store_true",
        help='also measure half-frame entries stored as binary codes (features.half_entries "binary")',
    )
    add_setting_option(
        parser, "--also-with", "also measure the default with this setting (e.g. search.confident=1.0); repeatable"
    )
    args = parser.parse_args()
    clips = shared_clips()
    holdout = [c for c in clips if c.name == args.holdout]
    kept = [c for c in clips if c not in holdout]
    plan, frames, blanks = query_frames(clips, args.queries, args.seed)
    queries = {}  # the same distorted image for both methods
    for name, distort in ROBUST_DISTORTIONS.items():
        rng = np.random.default_rng(args.seed)
        queries[name] = [distort(frames[key], rng) for key in plan]

    settings = Settings(base_dir=ROOT)
    # name: (embedder, setting overrides); None: the installation's default (ImageNet CNN + shipped PCA)
    embedders: dict = {"imagenet": (None, {})}
    if args.compare_repeats:
        embedders["imagenet-no-repeats"] = (None, {"repeats.enabled": False})
    if not args.no_halves:
        embedders["imagenet+halves"] = (None, {"features.half_frames": True})
    if args.binary_halves:
        embedders["imagenet+half-codes"] = (None, {"features.half_frames": True, "features.half_entries": "binary"})
    for key, value in args.also_with:
        embedders[f"imagenet {key}={json.dumps(value)}"] = (None, {key: value})
    for folder in args.model:
        embedders[folder.name] = (Embedder.from_settings(updated(settings, features={"model": str(folder)})), {})
    methods = {}
    declined = {}
    with tempfile.TemporaryDirectory() as tmp:
        negative_search, indexes = {}, []
        for name, (embedder, overrides) in embedders.items():
            index_a, _ = build(Path(tmp) / f"{name}-a", clips, embedder, overrides, False)
            index_b, _ = build(Path(tmp) / f"{name}-b", kept, index_a.embedder, overrides, False)
            indexes += [index_a, index_b]
            video_seconds = sum(r.duration for r in index_a.catalogue.episodes())
            methods[name] = (
                _ours(Searcher(index_a)),
                _vector_bytes(index_a) / video_seconds,
            )
            negative_search[name] = _ours(Searcher(index_b))
            declined[name] = sum(
                Searcher(index_a).search(frame, cut_borders=True).uninformative for _, _, frame in blanks
            )
        cld_a = ColourLayoutIndex.build(clips)
        methods["colour_layout"] = (_baseline(cld_a), cld_a.bytes / video_seconds)
        negative_search["colour_layout"] = _baseline(ColourLayoutIndex.build(kept))
        results = {
            method: {"answers": {name: [] for name in ROBUST_DISTORTIONS}, "latency": [], "negative_latency": []}
            for method in methods
        }
        for name in ROBUST_DISTORTIONS:
            for image in queries[name]:
                for method, (search, _) in methods.items():  # interleaved, so the machine's load hits all alike
                    started = time.perf_counter()
                    results[method]["answers"][name].append(search(image))
                    results[method]["latency"].append((time.perf_counter() - started) * 1000)
        negatives = [
            image for name in ROBUST_DISTORTIONS for (clip, _t), image in zip(plan, queries[name]) if clip in holdout
        ]
        sims: dict[str, list[float]] = {method: [] for method in negative_search}
        for image in negatives:
            for method, search in negative_search.items():  # interleaved too
                started = time.perf_counter()
                answer = search(image)
                results[method]["negative_latency"].append((time.perf_counter() - started) * 1000)
                sims[method].append(answer[4] if answer else 0.0)
        for method, method_sims in sims.items():
            results[method]["threshold"] = percentile(method_sims, 99)
        for index in indexes:
            index.close()

    print(
        f"{len(plan)} queries per distortion ({args.queries} per clip, seed {args.seed}); "
        f"not-indexed: {args.holdout} under every distortion"
    )
    print(
        describe_blanks(blanks)
        + "; declined as uninformative: "
        + ", ".join(f"{name} {count}/{len(blanks)}" for name, count in declined.items())
    )
    header = f"{'distortion':<18}" + "".join(f"{m[:16] + ' top-1':>22}{'@1%':>8}" for m in results)
    print(header)
    for name in ROBUST_DISTORTIONS:
        row = f"{name:<18}"
        for data in results.values():
            ok = ok_above = 0
            for (clip, t), answer in zip(plan, data["answers"][name]):
                if answer is None:
                    continue
                file, lo, at, hi, sim = answer
                right = file == clip.name and (abs(at - t) <= 1.0 or lo - 1e-3 <= t <= hi + 1e-3)
                ok += right
                ok_above += right and sim >= data["threshold"]
            row += f"{ok / len(plan):22.1%}{ok_above / len(plan):8.1%}"
        print(row)
    for method, data in results.items():
        # Time localisation, strictly: of the right answers above the threshold, the share whose from..to
        # contains the true time AND whose `at` is within 1 s of it.
        right = strict = 0
        for name in ROBUST_DISTORTIONS:
            for (clip, t), answer in zip(plan, data["answers"][name]):
                if answer and answer[0] == clip.name and answer[4] >= data["threshold"]:
                    file, lo, at, hi, sim = answer
                    if abs(at - t) <= 1.0 or lo - 1e-3 <= t <= hi + 1e-3:
                        right += 1
                        strict += abs(at - t) <= 1.0 and lo - 1e-3 <= t <= hi + 1e-3
        print(f"{method}: {strict}/{right} right answers have the true time inside from..to and `at` within 1 s")
    truth = ClipFrames(clips)
    print("the moment, of the right answers above the threshold (exact: `at` within 0.5 s of the true time, or")
    print("showing the same picture; from..to width: of queries outside still shots)")
    print(f"{'method':<26}{'answers':>8}{'exact':>8}{'|at-t| p50':>11}{'p90':>7}{'p99':>7}{'width p50':>10}{'p90':>7}")
    exact_by_row: dict = {method: {} for method in results}
    for method, data in results.items():
        errors, exact, widths = [], 0, []
        for name in ROBUST_DISTORTIONS:
            row_exact = exact_by_row[method][name] = []
            for (clip, t), answer in zip(plan, data["answers"][name]):
                if answer and answer[0] == clip.name and answer[4] >= data["threshold"]:
                    file, lo, at, hi, sim = answer
                    if not (abs(at - t) <= 1.0 or lo - 1e-3 <= t <= hi + 1e-3):
                        continue
                    errors.append(abs(at - t))
                    row_exact.append(abs(at - t) <= 0.5 or truth.same_picture(clip, at, t))
                    exact += row_exact[-1]
                    if not truth.still(clip, t):
                        widths.append(hi - lo)
        print(
            f"{method[:25]:<26}{len(errors):>8}{exact / max(1, len(errors)):>8.1%}{percentile(errors, 50):>11.2f}"
            f"{percentile(errors, 90):>7.2f}{percentile(errors, 99):>7.2f}{percentile(widths, 50):>10.2f}"
            f"{percentile(widths, 90):>7.2f}"
        )
    print("exact share of each distortion's right answers above the threshold")
    print(f"{'distortion':<18}" + "".join(f"{m[:20]:>22}" for m in results))
    for name in ROBUST_DISTORTIONS:
        shares = [exact_by_row[m][name] for m in results]
        print(f"{name:<18}" + "".join(f"{sum(e) / max(1, len(e)):>16.1%} of {len(e):>3}" for e in shares))
    for method, data in results.items():
        print(
            f"{method}: 1% false-match threshold {data['threshold']:.3f}; index {methods[method][1]:.0f} "
            f"bytes per second of video; search p50 {percentile(data['latency'], 50):.1f} ms, "
            f"p95 {percentile(data['latency'], 95):.1f} ms; not-indexed screenshots' search p50 "
            f"{percentile(data['negative_latency'], 50):.1f} ms"
        )


if __name__ == "__main__":
    main()
