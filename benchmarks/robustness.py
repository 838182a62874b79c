"""Robust search: top-1 at the 1% false-match threshold, per distortion, for AnimeBack and a colour-layout baseline.

    .venv/bin/python benchmarks/robustness.py [--queries 20] [--seed 7] [--holdout tom_and_jerry_trap_happy.mp4] \
        [--model models/animeback-v2] [--compare-repeats] [--no-halves] [--also-with search.confident=1.0]

Same protocol as accuracy.py (seeded query times per clip, correct = right file and `at` within 1 s or the true
time inside from..to), with the distortions people really post (benchmarks/common.py ROBUST_DISTORTIONS). For
each method, the not-indexed screenshots (the holdout clip's queries under every distortion, searched in an index
without it) set the threshold that at most 1% of them reach; a correct answer counts only at or above it.
Every method sees the same queries in the same run: ImageNet + PCA (the default), the same with half-frame index
entries (features.half_frames), each --model, and the colour-layout baseline. Query times whose frame is blank are
drawn again (accuracy.query_frames); the line under the header says which, and whether each method declined
them. Also prints index bytes per second of video and search latency. --compare-repeats adds the default with
repeats.enabled off (the clips form one series, so repeat detection runs across all of them: the accuracy
before and after storing repeated sequences once); --no-halves leaves out the half-frame index.
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
from animeback.query.search import Searcher


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
        help="also measure this trained model folder (models/animeback-v2); repeatable",
    )
    parser.add_argument(
        "--compare-repeats",
        action="store_true",
        help="also measure the default with repeats.enabled off (the clips are one series: nothing should change)",
    )
    parser.add_argument("--no-halves", action="store_true", help="leave out the half-frame entries' index")
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
    for key, value in args.also_with:
        embedders[f"imagenet {key}={json.dumps(value)}"] = (None, {key: value})
    for folder in args.model:
        embedders[folder.name] = (Embedder.from_settings(updated(settings, features={"model": str(folder)})), {})
    results, methods = {}, {}
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
                index_a.vectors.count() * index_a.embedder.dim * 4 / video_seconds,
            )
            negative_search[name] = _ours(Searcher(index_b))
            declined[name] = sum(
                Searcher(index_a).search(frame, cut_borders=True).uninformative for _, _, frame in blanks
            )
        cld_a = ColourLayoutIndex.build(clips)
        methods["colour_layout"] = (_baseline(cld_a), cld_a.bytes / video_seconds)
        negative_search["colour_layout"] = _baseline(ColourLayoutIndex.build(kept))
        for method, (search, _) in methods.items():
            results[method] = {"answers": {}, "latency": []}
            for name in ROBUST_DISTORTIONS:
                answers = []
                for image in queries[name]:
                    started = time.perf_counter()
                    answers.append(search(image))
                    results[method]["latency"].append((time.perf_counter() - started) * 1000)
                results[method]["answers"][name] = answers
        for method, search in negative_search.items():
            sims = []
            for name in ROBUST_DISTORTIONS:
                for (clip, _t), image in zip(plan, queries[name]):
                    if clip in holdout:
                        answer = search(image)
                        sims.append(answer[4] if answer else 0.0)
            results[method]["threshold"] = percentile(sims, 99)
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
    for method, data in results.items():
        print(
            f"{method}: 1% false-match threshold {data['threshold']:.3f}; index {methods[method][1]:.0f} "
            f"bytes per second of video; search p50 {percentile(data['latency'], 50):.1f} ms, "
            f"p95 {percentile(data['latency'], 95):.1f} ms"
        )


if __name__ == "__main__":
    main()
