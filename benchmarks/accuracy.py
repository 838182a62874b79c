"""Accuracy on the shared clips: top-1 per query distortion, and the similarity of not-indexed screenshots.

    .venv/bin/python benchmarks/accuracy.py [--queries 20] [--seed 7] [--holdout tom_and_jerry_trap_happy.mp4]

Index A holds every shared clip; each clip is queried at --queries seeded random times under each distortion
(a time whose frame is blank, black or a fade, is drawn again and named in the output). A hit is correct when it
names the right file and its `at` is within 1 s of the true time or the true time lies inside its from..to.
Index B leaves out the holdout clip; its frames, queried against B, are the not-indexed screenshots that set the
similarity threshold (the 99th percentile of their top similarity).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DISTORTIONS, grab_rgb, link_library, percentile, settings_for, shared_clips

from animeback.imaging import is_uninformative
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.ingest.media import probe
from animeback.query.search import Searcher
from animeback.training.pca import train_library_pca


def query_plan(clips: list[Path], per_clip: int, seed: int) -> list[tuple[Path, float]]:
    rng = np.random.default_rng(seed)
    plan = []
    for clip in clips:
        duration = probe(clip).duration
        plan += [(clip, round(float(t), 3)) for t in rng.uniform(0.2, max(0.3, duration - 0.3), per_clip)]
    return plan


def query_frames(clips: list[Path], per_clip: int, seed: int):
    """The seeded query times and their frames. A time whose frame is blank (black, a fade) is drawn again from a
    second generator: a blank picture looks like any other blank frame, so it has no right answer (AnimeBack
    declines it as uninformative). Returns (plan, {(clip, t): RGB frame}, the blank (clip, t) drawn again)."""
    plan, frames, blanks = [], {}, []
    redraw = np.random.default_rng(seed + 1)
    for clip, t in query_plan(clips, per_clip, seed):
        frame = grab_rgb(clip, t)
        while is_uninformative(frame):
            blanks.append((clip, t, frame))
            t = round(float(redraw.uniform(0.2, max(0.3, probe(clip).duration - 0.3))), 3)
            frame = grab_rgb(clip, t)
        plan.append((clip, t))
        frames[(clip, t)] = frame
    return plan, frames, blanks


def describe_blanks(blanks) -> str:
    """One line naming the blank query times that were drawn again."""
    where = ", ".join(f"{clip.stem} {t:.2f} s" for clip, t, _ in blanks) or "none"
    return f"blank query times drawn again: {len(blanks)} ({where})"


def build(workdir: Path, clips: list[Path], embedder, overrides: dict, train_pca: bool) -> tuple[Index, float]:
    """Index the clips; with train_pca, then refit PCA on this library alone and re-index (as an operator would)."""
    library = workdir / "library"
    link_library(library, clips)
    settings = settings_for(workdir, library, **overrides)
    started = time.monotonic()
    if train_pca:
        train_library_pca(settings, dim=256, samples=20000, reindex=True, progress=False)
        return Index(settings), time.monotonic() - started
    index = Index(settings, embedder)
    process_library(index, progress=False)
    return index, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=20, help="query times per clip")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout", default="tom_and_jerry_trap_happy.mp4")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. media.sample_fps=3 (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--failures", action="store_true", help="list the queries answered wrongly")
    parser.add_argument(
        "--train-pca",
        action="store_true",
        help="fit PCA on each index's own library (`run.py train-pca`) instead of the shipped default",
    )
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}

    clips = shared_clips()
    holdout = [c for c in clips if c.name == args.holdout]
    plan, frames, blanks = query_frames(clips, args.queries, args.seed)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        index_a, seconds = build(Path(tmp) / "a", clips, None, overrides, args.train_pca)
        searcher = Searcher(index_a)
        vectors = index_a.vectors.count()
        video_seconds = sum(r.duration for r in index_a.catalogue.episodes())
        table, similarities, widths = {}, {}, []
        for name, distort in DISTORTIONS.items():
            correct, sims = 0, []
            for clip, t in plan:
                outcome = searcher.search(distort(frames[(clip, t)], rng))
                best = outcome.matches[0] if outcome.matches else None
                ok = (
                    best is not None
                    and best.filename == clip.name
                    and (abs(best.at - t) <= 1.0 or best.start - 1e-3 <= t <= best.end + 1e-3)
                )
                correct += ok
                if not ok and args.failures:
                    got = (
                        f"{best.filename} {best.start:.2f}<{best.at:.2f}<{best.end:.2f} sim {best.similarity:.3f}"
                        if best
                        else "nothing"
                    )
                    print(f"miss ({name}): {clip.name} t={t:.2f} -> {got}")
                if ok:
                    sims.append(best.similarity)
                    widths.append(best.end - best.start)
            table[name] = correct / len(plan)
            similarities[name] = sims
        index_b_dir = Path(tmp) / "b"
        index_a.close()
        index_b, _ = build(
            index_b_dir, [c for c in clips if c not in holdout], index_a.embedder, overrides, args.train_pca
        )
        negatives = []
        searcher_b = Searcher(index_b)
        for clip, t in plan:
            if clip in holdout:
                for distort in DISTORTIONS.values():
                    outcome = searcher_b.search(distort(frames[(clip, t)], rng))
                    negatives.append(outcome.matches[0].similarity if outcome.matches else 0.0)
        index_b.close()

    threshold = percentile(negatives, 99)
    print(
        f"index: {len(clips)} clips, {video_seconds:.0f} s of video, {vectors} vectors "
        f"({vectors / video_seconds:.2f}/s, {vectors * 1024 / video_seconds:.0f} vector bytes/s), built in {seconds:.1f} s"
    )
    print(
        f"queries: {len(plan)} per distortion ({args.queries} per clip, seed {args.seed}); settings "
        f"{overrides or 'default'}; PCA {'fitted on each library (train-pca)' if args.train_pca else 'shipped default'}"
    )
    print(describe_blanks(blanks))
    print(f"\n{'distortion':<18} {'top-1':>7} {'sim p5':>7} {'sim p50':>8} {'top-1 above threshold':>22}")
    for name in DISTORTIONS:
        above = sum(s >= threshold for s in similarities[name]) / len(plan)
        print(
            f"{name:<18} {table[name]:7.1%} {percentile(similarities[name], 5):7.3f} "
            f"{percentile(similarities[name], 50):8.3f} {above:22.1%}"
        )
    print(
        f"\nwidth of from..to in correct answers: median {percentile(widths, 50):.2f} s, "
        f"p90 {percentile(widths, 90):.2f} s"
    )
    print(
        f"not-indexed screenshots ({args.holdout}, {len(negatives)} queries, all distortions): top similarity "
        f"p50 {percentile(negatives, 50):.3f}, p99 {threshold:.3f}, max {max(negatives):.3f}"
    )
    print(f"threshold (99% of not-indexed screenshots below it): {threshold:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "top1": table,
                    "threshold": threshold,
                    "negatives": negatives,
                    "vectors": vectors,
                    "video_seconds": video_seconds,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
