"""The exact moment's cost and yield per distortion: search with search.refine on and off, and with search and the
exact moment as another git revision has them, side by side.

    .venv/bin/python benchmarks/refine_cost.py [--queries 6] [--seed 7] [--against HEAD~1]

One default index of the shared clips (ImageNet + PCA, no half-frame entries), the robustness benchmark's queries
(benchmarks/common.py ROBUST_DISTORTIONS, seeded query times per clip). Every query is searched by every method in
turn (A B C, A B C, ...), so the machine's load falls on all alike. --against REV loads animeback/query/refine.py and
search.py as of that revision (git show) and answers with their search, exact moment and frame readers, the rest
being this checkout's: a change to either is then measured against what it replaces, in the same run.

Printed per distortion: each method's median search time, and the share of its right answers (right file, `at`
within 1 s or the true time inside from..to) that are exact (`at` within 0.5 s of the true time, or showing the
same picture, as in robustness.py; no false-match threshold here). Then over all queries: each method's p50 with
p25..p75, and the ratio of each method's time to the time without the exact moment, query by query (median, p10..p90).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from accuracy import build, query_frames
from common import ROBUST_DISTORTIONS, ROOT, percentile, shared_clips
from robustness import ClipFrames

from animeback.query.search import Searcher


def _module_at(revision: str, name: str, workdir: Path):
    """animeback/query/<name>.py as of a git revision, loaded as a module of this checkout's package."""
    try:
        source = subprocess.run(
            ["git", "show", f"{revision}:animeback/query/{name}.py"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as exc:
        sys.exit(f"--against {revision}: {exc.stderr.decode().strip()}")
    path = workdir / f"{name}_at_revision.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(f"animeback.query.{name}_at_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # an older file that no longer fits this checkout's package
        sys.exit(f"--against {revision}: its {name}.py does not load with this checkout ({exc})")
    return module


def search_at(revision: str, workdir: Path):
    """search.py as of a git revision, with refine.py as of it too (what search imports from .refine is the
    revision's)."""
    refine = _module_at(revision, "refine", workdir)
    own = sys.modules["animeback.query.refine"]
    sys.modules["animeback.query.refine"] = refine  # for search's `from .refine import ...`, while it loads
    try:
        return _module_at(revision, "search", workdir)
    finally:
        sys.modules["animeback.query.refine"] = own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=6, help="query times per clip")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="also measure search.py and refine.py as of this git revision")
    args = parser.parse_args()
    clips = shared_clips()
    with tempfile.TemporaryDirectory() as tmp:
        module = search_at(args.against, Path(tmp)) if args.against else None  # a bad revision fails first
        plan, frames, _ = query_frames(clips, args.queries, args.seed)
        truth = ClipFrames(clips)
        index, _ = build(Path(tmp) / "index", clips, None, {}, False)
        plain = Searcher(index)
        methods: dict = {"refine": plain}
        if module is not None:
            methods[f"refine@{args.against}"] = module.Searcher(index)
        methods["no refine"] = Searcher(index, dataclasses.replace(index.settings.search, refine=0))
        times: dict = {m: {name: [] for name in ROBUST_DISTORTIONS} for m in methods}
        exact: dict = {m: {name: [0, 0] for name in ROBUST_DISTORTIONS} for m in methods}
        for name, distort in ROBUST_DISTORTIONS.items():
            rng = np.random.default_rng(args.seed)
            for key in plan:
                image = distort(frames[key], rng)
                clip, t = key
                for method, searcher in methods.items():
                    started = time.perf_counter()
                    outcome = searcher.search(image, cut_borders=True)
                    times[method][name].append((time.perf_counter() - started) * 1000)
                    match = outcome.matches[0] if outcome.matches else None
                    if (
                        match
                        and match.filename == clip.name
                        and (abs(match.at - t) <= 1.0 or match.start <= t <= match.end)
                    ):
                        exact[method][name][0] += 1
                        exact[method][name][1] += abs(match.at - t) <= 0.5 or truth.same_picture(clip, match.at, t)
        index.close()

    print(
        f"{len(plan)} queries per distortion ({args.queries} per clip, seed {args.seed}); default index of {len(clips)} clips"
    )
    print(f"{'distortion':<18}" + "".join(f"{m[:20] + ' ms':>24}{'exact':>8}" for m in methods))
    for name in ROBUST_DISTORTIONS:
        row = f"{name:<18}"
        for method in methods:
            right, exact_answers = exact[method][name]
            row += f"{np.median(times[method][name]):24.1f}{exact_answers / max(right, 1):8.1%}"
        print(row)
    baseline = np.concatenate([times["no refine"][name] for name in ROBUST_DISTORTIONS])
    for method in methods:
        pooled = np.concatenate([times[method][name] for name in ROBUST_DISTORTIONS])
        right = sum(exact[method][name][0] for name in ROBUST_DISTORTIONS)
        exact_answers = sum(exact[method][name][1] for name in ROBUST_DISTORTIONS)
        ratios = pooled / baseline
        print(
            f"{method:<22} p50 {percentile(pooled, 50):6.1f} ms (p25 {percentile(pooled, 25):.1f} .. p75 "
            f"{percentile(pooled, 75):.1f}); p50 / no refine's {percentile(pooled, 50) / percentile(baseline, 50):.2f}; "
            f"per query x{np.median(ratios):.2f} (p10 {percentile(ratios, 10):.2f} .. p90 {percentile(ratios, 90):.2f}); "
            f"exact {exact_answers}/{right}"
        )


if __name__ == "__main__":
    main()
