"""Indexing speed: `process` wall time over ffmpeg's plain decode time of the same 1080p H.264 input,
and the throughput of each stage.

    .venv/bin/python benchmarks/indexing_speed.py [--minutes 3] [--half-frames]

The input is Big Buck Bunny's first 30 s (shared clips) upscaled to 1920x1080 H.264 and looped to --minutes,
made once into benchmarks/results/. The floor is `ffmpeg -i input -map 0:v -f null -` (best of 3).
`process` is timed in-process, from the start of `process_library` to its end (model already loaded), and as
the whole CLI command for reference. The ffmpeg stage is then run alone three ways, interleaved: sampling only,
with the preview, with the preview and the moment track. --half-frames indexes with features.half_frames (entries for the halves of
every kept frame too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CLIPS, ROOT, link_library, settings_for

from animeback.index import Index
from animeback.ingest.dedupe import phash64
from animeback.ingest.indexer import process_library
from animeback.ingest.media import FrameSampler, OpenedVideo, probe
from animeback.model.embedder import Embedder
from animeback.stores import FrameRow, VectorStore

RESULTS = ROOT / "benchmarks" / "results"


def make_input(minutes: float) -> Path:
    target = RESULTS / f"bbb_1080p_{minutes:g}min.mp4"
    if not target.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        source = CLIPS / "big_buck_bunny_0_30.webm"
        if not source.exists():
            sys.exit(f"needs {source}")
        loops = int(np.ceil(minutes * 2)) - 1
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-stream_loop",
                str(loops),
                "-i",
                str(source),
                "-t",
                str(minutes * 60),
                "-vf",
                "scale=1920:1080",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "20",
                "-c:a",
                "aac",
                str(target),
            ],
            check=True,
        )
    return target


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--half-frames", action="store_true", help="index with features.half_frames on")
    args = parser.parse_args()
    video = make_input(args.minutes)
    info = probe(video)
    decode = min(
        timed(
            lambda: subprocess.run(
                ["ffmpeg", "-v", "error", "-i", str(video), "-map", "0:v", "-f", "null", "-"], check=True
            )
        )
        for _ in range(3)
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        library = tmp / "library"
        link_library(library, [video])
        overrides = {"features.half_frames": True} if args.half_frames else {}
        settings = settings_for(tmp, library, **overrides)
        embedder = Embedder.from_settings(settings)
        with Index(settings, embedder) as index:
            report = process_library(index, progress=False)
        cli_settings = tmp / "cli"
        link_library(cli_settings / "library", [video])
        if args.half_frames:
            (cli_settings / "config.json").write_text(json.dumps({"features": {"half_frames": True}}))
        cli = timed(
            lambda: subprocess.run(
                [sys.executable, str(ROOT / "run.py"), "-q", "--config", str(cli_settings / "config.json"), "process"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        )

        # Stages alone, for the per-stage figures.
        fps = settings.media.sample_fps
        frames = []
        opened = OpenedVideo(video, info, None)
        frames.extend(FrameSampler(opened, fps, settings.media))
        # The one ffmpeg's outputs, interleaved (A B C, A B C, A B C): what the preview and the moment track add.
        variants = {
            "sample": lambda: list(FrameSampler(opened, fps, settings.media)),
            "+preview": lambda: list(FrameSampler(opened, fps, settings.media, tmp / "p.mp4")),
            "+preview+moments": lambda: list(
                FrameSampler(opened, fps, settings.media, tmp / "p.mp4", moments=tmp / "m.mp4")
            ),
        }
        stage_times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(3):
            for name, run in variants.items():
                stage_times[name].append(timed(run))
        sample_only = float(np.median(stage_times["sample"]))
        moment_bytes = (tmp / "m.mp4").stat().st_size
        preview_bytes = (tmp / "p.mp4").stat().st_size
        pixels = np.stack([f.pixels for f in frames])
        hashing = timed(lambda: [phash64(p) for p in pixels])
        embedder.embed(pixels[:32])
        cnn = timed(lambda: embedder.embed(pixels))
        vectors = embedder.embed(pixels)
        store = VectorStore(str(tmp / "bench.db"), "", "bench", vectors.shape[1])
        rows = [FrameRow(i, 1, "s", i / fps, i / fps, (i + 1) / fps, v) for i, v in enumerate(vectors)]
        insert = timed(lambda: (store.insert(rows), store.flush()))
        store.close()

    n = len(pixels)
    print(f"input: {video.name}, {info.duration:.0f} s, {info.width}x{info.height} H.264")
    print(f"ffmpeg plain decode (floor): {decode:.1f} s ({info.duration / decode:.1f}x real time)")
    print(
        f"process (in-process, model loaded): {report.wall_seconds:.1f} s = {report.wall_seconds / decode:.2f}x "
        f"the floor; sampled {report.frames_sampled}, kept {report.frames_kept}, vectors {report.vectors_written}"
    )
    print(f"process (whole CLI command, incl. ~5 s start-up): {cli:.1f} s = {cli / decode:.2f}x the floor")
    print(
        f"stages at sample_fps={fps:g}: decode+sample {n / sample_only:.0f} frames/s; pHash {n / hashing:.0f} "
        f"frames/s; CNN+PCA {n / cnn:.0f} frames/s; Milvus Lite insert {n / insert:.0f} rows/s"
    )
    print("one ffmpeg, interleaved 3 times: median (min-max) s")
    for name, times in stage_times.items():
        print(f"  {name:<18} {np.median(times):6.1f} ({min(times):.1f}-{max(times):.1f})")
    print(
        f"preview {preview_bytes / info.duration / 1000:.1f} KB/s of video, moment track "
        f"{moment_bytes / info.duration / 1000:.1f} KB/s ({moment_bytes / preview_bytes:.0%} of the preview)"
    )


if __name__ == "__main__":
    main()
