"""Repeated sequences: how much of a season's index an opening and an ending take, what storing them once saves,
what finding them costs, and whether the answers stay right.

    .venv/bin/python benchmarks/repeats.py [--episodes 12] [--opening 30] [--middle 40] [--ending 30] \
        [--rounds 2] [--queries 4] [--seed 500]

A season is generated with ffmpeg (animeback.sources.synthetic.make_season, into benchmarks/results/): every
episode has the same opening and ending, encoded at its own CRF; episode 3 opens with a 2 s cold open; episode 4
has its own credits burnt into the opening; the middles are distinct. The season is indexed with `repeats.enabled`
off and on, alternately (off, on, off, on, ... for --rounds), each time from an empty index, the model loaded once.
Printed: vectors stored, the copies of the opening and ending (vectors of episodes 2.. inside them when nothing
is stored once) and the share of them no longer stored, the sequences found per episode, `process` wall time
(median and range over the rounds), and the answers to screenshots at --queries seeded times in the opening,
the middle and the ending of every episode: right = the query's episode is the result or one of its occurrences,
at a time within 1 s of the true one (or the true time inside from..to), and, inside the opening or the ending,
the right segment.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, grab_rgb, settings_for

from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.model.embedder import Embedder
from animeback.query.search import Searcher
from animeback.sources.synthetic import SeasonEpisode, make_season, season_plan
from animeback.stores import SegmentKind

RESULTS = ROOT / "benchmarks" / "results"


def season(args) -> list[SeasonEpisode]:
    """The generated season, made once into benchmarks/results/ for these arguments."""
    folder = RESULTS / f"season_{args.episodes}x{args.opening:g}-{args.middle:g}-{args.ending:g}_{args.seed}" / "Season"
    made = folder.parent / "made.txt"
    if made.exists():
        return season_plan(folder, args.episodes, args.opening, args.middle, args.ending)
    started = time.monotonic()
    episodes = make_season(folder, args.episodes, args.opening, args.middle, args.ending, args.seed)
    made.write_text(f"generated in {time.monotonic() - started:.0f} s\n")
    return episodes


def copies(index: Index, episodes: list[SeasonEpisode]) -> int:
    """Vectors of episodes 2.. inside their opening or ending."""
    by_name = {r.relpath.split("/", 1)[1]: r.id for r in index.catalogue.episodes()}
    count = 0
    for episode in episodes[1:]:
        rows = index.vectors.client.query(
            index.vectors.collection,
            filter=f"episode == {by_name[episode.path.name]}",
            output_fields=["time"],
            limit=16384,
        )
        count += sum(1 for r in rows if any(lo <= r["time"] < hi for lo, hi in (episode.opening, episode.ending)))
    return count


def answers(index: Index, episodes: list[SeasonEpisode], queries: int, seed: int) -> dict[str, list[tuple[bool, bool]]]:
    """Per part of the episodes, for each screenshot: (the query's episode and moment are in the first result or
    its occurrences, the first result has the part's segment)."""
    rng = random.Random(seed)
    searcher = Searcher(index)
    right: dict[str, list[tuple[bool, bool]]] = {"opening": [], "middle": [], "ending": []}
    expected = {"opening": SegmentKind.OPENING, "middle": None, "ending": SegmentKind.ENDING}
    for episode in episodes:
        for part, (lo, hi) in (("opening", episode.opening), ("middle", episode.middle), ("ending", episode.ending)):
            for _ in range(queries):
                t = round(rng.uniform(lo + 0.5, hi - 0.5), 2)
                matches = searcher.search(grab_rgb(episode.path, t)).matches
                if not matches:
                    right[part].append((False, False))
                    continue
                best = matches[0]
                mine = [p for p in (best.place, *best.occurrences) if p.filename == episode.path.name]
                placed = bool(mine) and (abs(mine[0].at - t) <= 1.0 or mine[0].start - 1e-3 <= t <= mine[0].end + 1e-3)
                right[part].append((placed, best.segment == expected[part]))
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--opening", type=float, default=30.0)
    parser.add_argument("--middle", type=float, default=40.0)
    parser.add_argument("--ending", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=4, help="query times per part of every episode")
    parser.add_argument("--seed", type=int, default=500)
    args = parser.parse_args()
    episodes = season(args)
    library = episodes[0].path.parent.parent
    embedder = Embedder.from_settings(settings_for(ROOT, library))
    walls: dict[bool, list[float]] = {False: [], True: []}
    figures: dict[bool, dict] = {}
    for round_ in range(args.rounds):
        for enabled in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                settings = settings_for(Path(tmp), library, **{"repeats.enabled": enabled, "log_level": "WARNING"})
                with Index(settings, embedder) as index:
                    report = process_library(index, progress=False)
                    walls[enabled].append(report.wall_seconds)
                    if round_ == 0:
                        records = sorted(index.catalogue.episodes(), key=lambda r: r.relpath)
                        figures[enabled] = {
                            "vectors": index.vectors.count(),
                            "copies": copies(index, episodes),
                            "found": {
                                r.relpath.split("/", 1)[1]: [
                                    f"{x.kind} {x.start:.1f}-{x.end:.1f}" for x in index.catalogue.repeats_of(r.id)
                                ]
                                for r in records
                            },
                            "answers": answers(index, episodes, args.queries, args.seed),
                        }
    video = sum(e.ending[1] for e in episodes)
    off, on = figures[False], figures[True]
    print(
        f"season: {args.episodes} episodes, opening {args.opening:g} s, middle {args.middle:g} s, ending "
        f"{args.ending:g} s ({video / 60:.1f} min of video); {args.rounds} round(s), off/on alternately"
    )
    saved = off["vectors"] - on["vectors"]
    print(
        f"vectors stored: repeats off {off['vectors']}, on {on['vectors']} ({saved} fewer, {saved / off['vectors']:.1%})"
    )
    print(
        f"copies of the opening and ending (episodes 2..{args.episodes}): {off['copies']} vectors; "
        f"{saved / off['copies']:.1%} of them no longer stored"
    )
    for enabled in (False, True):
        times = walls[enabled]
        print(
            f"process wall time, repeats {'on ' if enabled else 'off'}: median {statistics.median(times):.1f} s "
            f"(range {min(times):.1f}-{max(times):.1f}, {len(times)} runs)"
        )
    print("sequences found (repeats on):")
    for name, found in on["found"].items():
        print(f"  {name}: {', '.join(found) if found else '-'}")
    print(f"{'screenshots from':<18}{'off: episode+time':>19}{'on: episode+time':>18}{'on: segment':>13}")
    for part in ("opening", "middle", "ending"):
        off_right, on_right = off["answers"][part], on["answers"][part]
        n = len(on_right)
        print(
            f"{part:<18}{f'{sum(p for p, _ in off_right)}/{n}':>19}{f'{sum(p for p, _ in on_right)}/{n}':>18}"
            f"{f'{sum(g for _, g in on_right)}/{n}':>13}"
        )
    print(
        "episode+time: the query's own episode, at the right moment, is the first result or one of its occurrences; "
        "segment: the first result says op / ed inside the opening / ending, nothing in the middle"
    )


if __name__ == "__main__":
    main()
