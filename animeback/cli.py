"""Command line: parses arguments and calls the core; errors end as one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import config as config_module
from .errors import AnimeBackError, BadParameterError, ConfigError
from .stores import EpisodeStatus

log = logging.getLogger("animeback")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _format_time(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def _open_index(settings):
    from .index import Index

    return Index(settings)


def cmd_init(args, settings) -> int:
    path = config_module.config_path(args.config)
    if config_module.write_default_config(path):
        print(f"wrote {path} with every setting at its default (config.md explains each key)")
    else:
        print(f"{path} already exists; left as it is")
    print(f"next: put episodes in {settings.library_path}/<series id>/<episode file>, then run `python run.py process`")
    return 0


def cmd_process(args, settings) -> int:
    from .ingest.indexer import process_library

    if args.watch:
        if args.reindex or args.allow_empty or args.allow_removal:
            raise ConfigError("--watch takes none of --reindex, --allow-empty, --allow-removal; run those once first")
        args.settle, args.polling = None, False
        return cmd_watch(args, settings)

    with _open_index(settings) as index:
        report = process_library(
            index,
            reindex=args.reindex,
            progress=not args.quiet,
            allow_empty=args.allow_empty,
            allow_removal=args.allow_removal,
        )
    print(report.summary())  # each failure was logged once as it happened
    return EXIT_ERROR if report.failed and not report.indexed and not report.skipped else 0


def cmd_watch(args, settings) -> int:
    import signal
    import threading

    from .ingest.watch import watch_library

    process = {}
    if args.settle is not None:
        process["watch_settle_s"] = args.settle
    if args.polling:
        process["watch_polling"] = True
    settings = config_module.updated(settings, process=process) if process else settings

    def stop_on_term(signum, frame):  # systemctl stop, docker stop: the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    stop = threading.Event()
    with _open_index(settings) as index:
        try:
            watch_library(index, stop)
        except KeyboardInterrupt:
            stop.set()
            print("watch stopped; an episode being indexed is finished by the next run", file=sys.stderr)
    return 0


def cmd_search(args, settings) -> int:
    from .query.decode import decode_query
    from .query.search import Searcher
    from .web.responses import segment_label, trace_moe_response, trace_moe_result

    path = Path(args.image)
    try:
        query = decode_query(settings.search, path.read_bytes())  # before loading the model: bad input fails at once
    except OSError as exc:
        raise AnimeBackError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except AnimeBackError as exc:
        raise type(exc)(f"{path}: {exc.message}") from None
    with _open_index(settings) as index:
        searcher = Searcher(index)
        outcome = searcher.search(
            query.rgb,
            cut_borders=not args.no_cut_borders,
            series=searcher.series_folders(args.series) if args.series else None,
            limit=args.limit,
            scale=query.scale,
        )
        series_info = {m.series_id: index.catalogue.get_series(m.series_id) or {} for m in outcome.matches}
    if args.json:
        results = [
            trace_moe_result(m, series_info[m.series_id] if args.anilist_info else None) for m in outcome.matches
        ]
        print(json.dumps(trace_moe_response(outcome, results), ensure_ascii=False, indent=2))
        return 0
    if not outcome.matches:
        print("no match")
        return 0
    print(f"{'sim':>6}  {'series':<16} {'ep':>5}  {'from':>7} {'at':>7} {'to':>7}  file")
    for m in outcome.matches:
        title = series_info[m.series_id].get("title") or m.series_id
        episode = "-" if m.episode is None else str(m.episode)
        print(
            f"{m.similarity:6.3f}  {str(title)[:16]:<16} {episode:>5}  {_format_time(m.start):>7} "
            f"{_format_time(m.at):>7} {_format_time(m.end):>7}  {m.filename}"
        )
        if m.segment is not None:
            print(
                f"{'':8}{segment_label(m)}: also "
                + ", ".join(f"{o.filename} at {_format_time(o.at)}" for o in m.occurrences)
            )
    return 0


def cmd_train_pca(args, settings) -> int:
    from .training.pca import train_library_pca

    report = train_library_pca(
        settings, dim=args.dim, samples=args.samples, reindex=not args.no_reindex, progress=not args.quiet
    )
    print(report)
    return 0


def cmd_train(args, settings) -> int:
    from .training.train import TrainOptions, train_model

    for name in ("rounds", "views", "fps"):
        if getattr(args, name) <= 0:
            raise BadParameterError(f"--{name} must be positive (got {getattr(args, name)})")
    options = TrainOptions(rounds=args.rounds, views=args.views, fps=args.fps, seed=args.seed)
    out = settings.path(str(args.out)) if args.out else None
    print(train_model(settings, [settings.path(str(v)) for v in args.videos], out, options, progress=not args.quiet))
    return 0


def cmd_download_bilibili(args, settings) -> int:
    from .sources.download import download_queue

    queue = list(args.season) if args.season else None
    report = download_queue(settings, queue=queue, progress=not args.quiet, process=True if args.process else None)
    print(report.summary())  # each failure was logged once as it happened
    return EXIT_ERROR if report.failed else 0


def cmd_status(args, settings) -> int:
    from .index import PARAMETERS_KEY, library_stats, refresh_stats
    from .model.embedder import check_model_files
    from .stores.host import connect

    check_model_files(settings)  # a configuration that could not index or search is said at once
    store = connect(settings)  # the catalogue alone: no model to load for a report
    try:
        # a web node reads the published catalogue: it does not write it
        stats = library_stats(store.catalogue) if settings.web_node else refresh_stats(store.catalogue)
        failed = [r for r in store.catalogue.episodes() if r.status == EpisodeStatus.FAILED]
        recorded = store.catalogue.get_meta(PARAMETERS_KEY) or {}
        model = recorded.get("model") or store.catalogue.get_meta("model") or "none yet (nothing indexed)"
    finally:
        store.close()
    print(f"library: {settings.library_path}")
    print(
        f"index: {stats['series']} series, {stats['episodes']} episodes, {stats['video_seconds'] / 3600:.2f} h, "
        f"{stats['vectors']} vectors; model {model}; Milvus {settings.milvus_uri}"
    )
    for r in failed:
        print(f"failed: {r.error}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .training.train import TrainOptions

    parser = argparse.ArgumentParser(
        prog="run.py",
        description="AnimeBack: find the anime, episode and moment of a screenshot.",
        epilog="Run without a command to write a default config.json.",
    )
    parser.add_argument("--config", help="config file (default: $ANIMEBACK_CONFIG or ./config.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="write a default config.json (never overwrites)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "process",
        help="index new and changed episodes of the library, drop vanished ones",
        description="Index every episode of the library not yet indexed; resumable at any point.",
    )
    p.add_argument("--reindex", action="store_true", help="drop the whole index and rebuild it (after a model change)")
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a missing or empty library folder (and so remove every indexed episode)",
    )
    p.add_argument(
        "--allow-removal",
        action="store_true",
        help="remove however many vanished episodes (above process.max_removal_share of the index)",
    )
    p.add_argument("--watch", action="store_true", help="keep running and index files as they land (as `watch`)")
    p.set_defaults(func=cmd_process)

    p = sub.add_parser(
        "watch",
        help="keep running: index new and changed episodes as they land, drop vanished ones",
        description="Watch the library and index each new or changed episode once it is complete (its size and "
        "time unchanged for process.watch_settle_s), remove vanished ones; Ctrl-C or SIGTERM stops it. "
        "Runs beside the web server; an episode is searchable as soon as it is indexed.",
    )
    p.add_argument(
        "--settle", type=float, default=None, help="seconds a file must stand still (process.watch_settle_s)"
    )
    p.add_argument("--polling", action="store_true", help="scan for changes instead of file events (network mounts)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("search", help="find the scene of a screenshot", description="Find the scene of a screenshot.")
    p.add_argument("image", help="image file (JPEG, PNG, WebP, GIF, BMP)")
    p.add_argument("--json", action="store_true", help="print the web API's JSON (trace.moe's shape)")
    p.add_argument("--series", help="only search this series: its integer id (as `anilist` in results) or folder name")
    p.add_argument("--limit", type=int, default=None, help="at most this many results (default: search.max_results)")
    p.add_argument("--no-cut-borders", action="store_true", help="do not look for the picture inside black borders")
    p.add_argument("--anilist-info", action="store_true", help="with --json: series metadata instead of the id")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "train-pca",
        help="refit PCA on the library's own frames, then re-index",
        description="Fit PCA on frames sampled from the library and re-index with it.",
    )
    p.add_argument("--dim", type=int, default=256, help="output dimensions (default 256)")
    p.add_argument("--samples", type=int, default=20000, help="frames to fit on (default 20000)")
    p.add_argument("--no-reindex", action="store_true", help="only write the PCA file")
    p.set_defaults(func=cmd_train_pca)

    defaults = TrainOptions()
    p = sub.add_parser(
        "train",
        help="fine-tune the embedding on the library's frames (a new models/animeback-v<N>)",
        description="Fine-tune the embedding self-supervised on frames of the library (and --videos): "
        "each frame must be found again under crops, flips, text, resizes, JPEG, tints, "
        "borders, player chrome and photo-like warps, and told apart from its neighbours. "
        "Writes the next models/animeback-v<N>; an interrupted run resumes where it "
        "stopped. Uses a GPU when TensorFlow sees one.",
    )
    p.add_argument(
        "--videos",
        action="append",
        default=[],
        metavar="DIR",
        help="also train on the videos in this folder (recursively); repeatable",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="model folder (default: the unfinished models/animeback-v<N> to resume, else the next version)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help=f"rounds of fresh distorted views (default {defaults.rounds})",
    )
    p.add_argument(
        "--views",
        type=int,
        default=defaults.views,
        help=f"distorted views per frame and round (default {defaults.views})",
    )
    p.add_argument(
        "--fps", type=float, default=defaults.fps, help=f"frames sampled per second of video (default {defaults.fps})"
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the distortions (default 0)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "download-bilibili",
        help="fetch the seasons queued in bilibili.queue into the library",
        description="Download the bilibili seasons queued in config.json (bilibili.queue) with their "
        "metadata into the library; resumable, skips what is already there.",
    )
    p.add_argument(
        "--season",
        action="append",
        metavar="REF",
        help="download this season instead of the queue (ss12345, md12345 or a URL); repeatable",
    )
    p.add_argument("--process", action="store_true", help="index each episode as soon as it lands")
    p.set_defaults(func=cmd_download_bilibili)

    p = sub.add_parser("status", help="what is indexed, and which files failed")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of run.py."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.config and args.command not in (None, "init") and not Path(args.config).expanduser().exists():
            raise ConfigError(
                f"config file {args.config} not found (`python run.py init --config {args.config}` writes one)"
            )
        settings = config_module.load_settings(args.config)
        if args.command is None:
            return cmd_init(args, settings)
        return args.func(args, settings)
    except AnimeBackError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; run the same command again to finish (nothing is lost or duplicated)", file=sys.stderr)
        return EXIT_INTERRUPTED
