"""A library at scale: HTTP search latency, throughput, memory, disk, cold start and accuracy at 10k ... 3M frames.

    .venv/bin/python benchmarks/scale.py [--rows 10000,100000,1000000,3000000] [--queries 8] [--workers 2] \
        [--rounds 1] [--json scale.jsonl] [--keep DIR]

One installation grows through the sizes (each adds frames to the one before, so one build serves them all):
- **Real frames.** The shared clips but the holdout are indexed by `run.py process`, the real pipeline.
- **Distractor frames.** The rest of each size is distractor episodes of 24 minutes (2,880 frames at 2 vectors a
  second, 12 episodes a series), written with the product's own stores: frame rows in Milvus, episode records and
  frame map in the catalogue, exactly as `process` leaves them. Their vectors are drawn from a distribution
  fitted to real frame vectors of *other* real animation: the 14 training clips (`../shared/data/train`, never
  searched for here), indexed by `run.py process` into a scratch installation. A distractor shot (2 to 30
  frames) has a centre drawn from the Gaussian fitted to those vectors (mean and a Ledoit-Wolf shrunk
  covariance); its frames are the centre plus noise of the same covariance, scaled so that neighbouring frames
  are as alike (mean cosine) as neighbouring kept frames of the real clips. Every vector is L2-normalised.
- **Queries.** Seeded moments of every clip under every robustness distortion (benchmarks/common.py
  ROBUST_DISTORTIONS), sent as JPEG (q92) to `POST /search?cutBorders` of `gunicorn -w WORKERS app:flask_app`
  (gunicorn.conf.py's gthread workers). Kept clips' queries measure top-1; the holdout clip's, which is not
  indexed, set the 1% false-match threshold (the 99th percentile of their top similarity). A right answer is the
  right file with `at` within 1 s of the moment or the moment inside from..to; it counts at the threshold only
  when its similarity reaches it.

At each size: cold start (gunicorn and a fresh store host until the first search answers: Milvus Lite loads and
indexes the collection), sequential latency p50/p99 over all queries, then `--load` searches from 4 and from 16
clients at once (searches per second, p50/p99, the statuses seen), the resident memory of every process of the
stack (RSS and PSS, sampled through the run, the largest sum), and disk bytes per frame (Milvus Lite's files;
the catalogue apart). `--json` appends one JSON object per size.

`--workers 1,2 --rounds 2` compares stacks with different numbers of gunicorn workers on the same index: at each
size they are measured in turn, A B then B A for each further round, every start cold, one JSON object each.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from accuracy import query_frames
from common import ROBUST_DISTORTIONS, ROOT, free_port, link_library, percentile, post_search, shared_clips
from PIL import Image

from animeback.config import load_settings, updated
from animeback.index import Index
from animeback.stores import EpisodeRecord, EpisodeStatus, FrameRow
from animeback.stores.catalogue import frame_id

TRAIN = ROOT.parent / "shared" / "data" / "train"
DISTRACTOR_FPS = 2.0
EPISODE_FRAMES = 2880  # 24 minutes at 2 vectors a second
EPISODES_PER_SERIES = 12
WRITE_BATCH = 20_000


def run_py(config: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-q", *args],
        env={**os.environ, "ANIMEBACK_CONFIG": str(config)},
        check=True,
    )


def write_config(folder: Path, library: Path, idle_s: float) -> Path:
    config = folder / "config.json"
    config.write_text(
        json.dumps(
            {
                "library_dir": str(library),
                "data_dir": str(folder / "data"),
                "log_level": "WARNING",
                "stores": {"host_idle_s": idle_s},
            }
        )
    )
    return config


def stored_vectors(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of an index with its episode, ordered by episode and time."""
    iterator = index.vectors.client.query_iterator(
        index.vectors.collection, batch_size=1000, filter="", output_fields=["episode", "time", "vector"]
    )
    rows = []
    while batch := iterator.next():
        rows += [(int(r["episode"]), float(r["time"]), np.asarray(r["vector"], "float32")) for r in batch]
    iterator.close()
    rows.sort(key=lambda r: (r[0], r[1]))
    return np.stack([r[2] for r in rows]), np.asarray([r[0] for r in rows])


def neighbour_cosine(vectors: np.ndarray, episodes: np.ndarray) -> float:
    """Mean cosine between consecutive stored frames of one episode."""
    same = episodes[1:] == episodes[:-1]
    return float(np.mean(np.sum(vectors[1:] * vectors[:-1], axis=1)[same]))


class DistractorModel:
    """Vectors drawn from a Gaussian fitted to real frame vectors, in shots of alike frames."""

    def __init__(self, fitted: np.ndarray, target_cosine: float, seed: int):
        from sklearn.covariance import LedoitWolf

        self.mean = fitted.mean(axis=0)
        covariance = LedoitWolf().fit(fitted).covariance_
        self.factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance))).astype("float32")
        self.rng = np.random.default_rng(seed)
        self.noise = self._calibrate(target_cosine)

    def _gaussian(self, n: int) -> np.ndarray:
        return (self.rng.standard_normal((n, len(self.mean)), dtype="float32") @ self.factor.T).astype("float32")

    def _shot_frames(self, centres: np.ndarray, lengths: np.ndarray, noise: float) -> np.ndarray:
        repeated = np.repeat(centres, lengths, axis=0)
        vectors = self.mean + repeated + noise * self._gaussian(len(repeated))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("float32")

    def _calibrate(self, target: float) -> float:
        """The noise scale at which neighbouring frames of a shot are as alike as real neighbours (bisection)."""
        lo, hi = 0.0, 2.0
        for _ in range(20):
            mid = (lo + hi) / 2
            pairs = self._shot_frames(self._gaussian(2000), np.full(2000, 2), mid)
            cosine = float(np.mean(np.sum(pairs[0::2] * pairs[1::2], axis=1)))
            lo, hi = (mid, hi) if cosine > target else (lo, mid)
        return (lo + hi) / 2

    def episode(self, frames: int) -> np.ndarray:
        """The vectors of one episode's frames, shot after shot."""
        lengths = []
        while sum(lengths) < frames:
            lengths.append(int(self.rng.integers(2, 31)))
        lengths[-1] -= sum(lengths) - frames
        lengths = [n for n in lengths if n > 0]
        return self._shot_frames(self._gaussian(len(lengths)), np.asarray(lengths), self.noise)


def add_distractors(index: Index, model: DistractorModel, rows: int, first_number: int) -> int:
    """Write distractor episodes until the index holds `rows` vectors; returns the next episode number."""
    number = first_number
    while (have := index.vectors.count()) < rows:
        frames = min(EPISODE_FRAMES, rows - have)
        series = f"distractor-{number // EPISODES_PER_SERIES:04d}"
        episode_id = index.catalogue.new_episode_id()
        vectors = model.episode(frames)
        times = (np.arange(frames) + 0.5) / DISTRACTOR_FPS
        half = 0.5 / DISTRACTOR_FPS
        index.catalogue.put_episode(
            EpisodeRecord(
                episode_id,
                series,
                f"{series}/episode {number % EPISODES_PER_SERIES + 1:02d}.mkv",
                EpisodeStatus.INDEXED,
                episode=number % EPISODES_PER_SERIES + 1,
                duration=frames / DISTRACTOR_FPS,
                fps=24.0,
                width=1920,
                height=1080,
                frames_sampled=frames,
                frames_kept=frames,
                vectors=frames,
                model=index.model_name,
                indexed_at=time.time(),
                sample_fps=DISTRACTOR_FPS,
            )
        )
        ids = [frame_id(episode_id, k) for k in range(frames)]
        for start in range(0, frames, WRITE_BATCH):
            part = range(start, min(frames, start + WRITE_BATCH))
            index.vectors.insert(
                [
                    FrameRow(ids[k], episode_id, series, times[k], times[k] - half, times[k] + half, vectors[k])
                    for k in part
                ]
            )
            index.catalogue.put_frames([(ids[k], episode_id, times[k], times[k] - half, times[k] + half) for k in part])
        number += 1
        index.vectors.flush()
    index.refresh_stats()
    return number


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def disk_bytes(data: Path) -> tuple[int, int]:
    """(Milvus Lite's bytes, the catalogue's and the rest's bytes) of a data folder, previews left out."""
    milvus = other = 0
    for entry in data.iterdir():
        if entry.name == "previews":
            continue
        size = folder_bytes(entry)
        if "milvus" in entry.name:
            milvus += size
        else:
            other += size
    return milvus, other


def stack_processes(config: Path) -> list[int]:
    """The processes started with this installation's config (gunicorn, its workers, the store host, Milvus Lite)."""
    marker = f"ANIMEBACK_CONFIG={config}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS (shared pages counted once) of the processes, MiB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


class MemorySampler:
    """The largest summed resident memory of the stack, sampled every half second while it runs."""

    def __init__(self, config: Path):
        self.config, self.peak, self.count = config, (0.0, 0.0), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            pids = stack_processes(self.config)
            rss, pss = memory_mib(pids)
            if pss > self.peak[1]:
                self.peak, self.count = (rss, pss), len(pids)

    def stop(self) -> tuple[float, float, int]:
        self._stop.set()
        self._thread.join()
        return (*self.peak, self.count)


def wait_for_exit(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)


def load(port: int, payloads: list[bytes], clients: int, total: int) -> dict:
    """`total` searches from `clients` threads at once: searches/s, latency, statuses."""
    done, lock = [], threading.Lock()

    def client(offset: int) -> None:
        for i in range(offset, total, clients):
            status, ms, _ = post_search(port, payloads[i % len(payloads)])
            with lock:
                done.append((status, ms))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ok = [ms for status, ms in done if status == 200]
    statuses: dict[int, int] = {}
    for status, _ in done:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "per_s": len(ok) / elapsed,
        "p50": percentile(ok, 50),
        "p99": percentile(ok, 99),
        "statuses": statuses,
    }


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def measure(args, config: Path, port_payloads, holdout: str, rows: int, workers: int) -> dict:
    """Start the web stack (gunicorn with `workers` workers) cold, measure it, stop it."""
    payloads, keys = port_payloads
    port = free_port()
    env = {**os.environ, "ANIMEBACK_CONFIG": str(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
    sampler = MemorySampler(config)
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "app:flask_app"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            try:
                status, _, _ = post_search(port, payloads[0])
                if status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                sys.exit("gunicorn exited before answering")
            time.sleep(0.3)
        cold_s = time.monotonic() - started
        for body in payloads[: 4 * workers]:
            post_search(port, body)  # every worker's model loaded and its call compiled
        latencies, answers = [], []
        for body in payloads:
            status, ms, answer = post_search(port, body)
            if status != 200:
                sys.exit(f"search answered {status}: {answer}")
            latencies.append(ms)
            answers.append((answer.get("result") or [None])[0])
        concurrent = {clients: load(port, payloads, clients, args.load) for clients in (4, 16)}
    finally:
        os.killpg(server.pid, 15)
        server.wait()
    rss, pss, processes = sampler.stop()
    negatives = [a["similarity"] if a else 0.0 for (clip, _t, _d), a in zip(keys, answers) if clip == holdout]
    threshold = percentile(negatives, 99)
    per_row: dict[str, list[int]] = {}
    for (clip, t, distortion), answer in zip(keys, answers):
        if clip == holdout:
            continue
        right = (
            bool(answer)
            and answer["filename"] == clip
            and (abs(answer["at"] - t) <= 1.0 or answer["from"] - 1e-3 <= t <= answer["to"] + 1e-3)
        )
        per_row.setdefault(distortion, []).append(int(right) + int(right and answer["similarity"] >= threshold))
    data = Path(load_settings(config).data_path)
    milvus_bytes, catalogue_bytes = disk_bytes(data)
    return {
        "rows": rows,
        "workers": workers,
        "cold_start_s": round(cold_s, 1),
        "http_p50_ms": round(percentile(latencies, 50), 1),
        "http_p99_ms": round(percentile(latencies, 99), 1),
        "sequential_queries": len(latencies),
        "searches_per_s_4_clients": round(concurrent[4]["per_s"], 1),
        "p50_ms_4_clients": round(concurrent[4]["p50"], 1),
        "p99_ms_4_clients": round(concurrent[4]["p99"], 1),
        "statuses_4_clients": concurrent[4]["statuses"],
        "searches_per_s_16_clients": round(concurrent[16]["per_s"], 1),
        "p50_ms_16_clients": round(concurrent[16]["p50"], 1),
        "p99_ms_16_clients": round(concurrent[16]["p99"], 1),
        "statuses_16_clients": concurrent[16]["statuses"],
        "resident_mib": round(pss),
        "rss_sum_mib": round(rss),
        "processes": processes,
        "bytes_per_frame": round(milvus_bytes / rows),
        "catalogue_bytes_per_frame": round(catalogue_bytes / rows),
        "threshold": round(threshold, 4),
        "top1_pct": round(
            100 * sum(min(v, 1) for r in per_row.values() for v in r) / sum(map(len, per_row.values())), 1
        ),
        "top1_at_fmr_pct": round(
            100 * sum(v == 2 for r in per_row.values() for v in r) / sum(map(len, per_row.values())), 1
        ),
        "top1_at_fmr_pct_by_row": {
            name: round(100 * sum(v == 2 for v in r) / len(r), 1) for name, r in per_row.items()
        },
    }


def fit_distractors(folder: Path, seed: int, real: Index) -> DistractorModel:
    """The distractor distribution, fitted to the training clips' vectors (indexed in a scratch installation)."""
    if not TRAIN.is_dir():
        sys.exit(f"benchmark needs the training clips in {TRAIN} (their vectors shape the distractors); not found")
    library = folder / "library"
    link_library(library, sorted(p for p in TRAIN.iterdir() if p.suffix in (".mp4", ".webm", ".mkv")), "train")
    config = write_config(folder, library, 1.0)
    run_py(config, "process")
    with Index(load_settings(config)) as train:
        vectors, _ = stored_vectors(train)
    real_vectors, real_episodes = stored_vectors(real)
    target = neighbour_cosine(real_vectors, real_episodes)
    model = DistractorModel(vectors, target, seed)
    print(
        f"distractors: Gaussian fitted to {len(vectors)} vectors of {TRAIN.name}/; neighbouring real frames' "
        f"mean cosine {target:.3f}, noise scale {model.noise:.3f}",
        flush=True,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", default="10000,100000,1000000,3000000", help="index sizes, in frames (comma-separated)"
    )
    parser.add_argument("--queries", type=int, default=8, help="query moments per clip (each under every distortion)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout", default="tom_and_jerry_trap_happy.mp4")
    parser.add_argument(
        "--workers", default="2", help="gunicorn workers; several (comma-separated) are measured in turn at each size"
    )
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each --workers value at each size")
    parser.add_argument("--load", type=int, default=240, help="searches in each concurrent run")
    parser.add_argument("--json", type=Path, help="append one JSON object per size to this file")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.rows.split(","))
    stacks = [int(n) for n in args.workers.split(",")]
    clips = shared_clips()
    kept = [c for c in clips if c.name != args.holdout]
    plan, frames, _ = query_frames(clips, args.queries, args.seed)
    payloads, keys = [], []
    for name, distort in ROBUST_DISTORTIONS.items():
        rng = np.random.default_rng(args.seed)
        for clip, t in plan:
            payloads.append(jpeg(distort(frames[(clip, t)], rng)))
            keys.append((clip.name, t, name))
    order = np.random.default_rng(args.seed).permutation(len(payloads))  # distortions mixed, as users send them
    payloads, keys = [payloads[i] for i in order], [keys[i] for i in order]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="animeback-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        library = workdir / "library"
        link_library(library, kept)
        config = write_config(workdir, library, 30.0)
        os.environ["ANIMEBACK_CONFIG"] = str(config)  # every process of the stack carries it: how they are found
        # this process's store host stops soon after each build, so that the web stack's start is cold
        settings = updated(load_settings(config), stores={"host_idle_s": 2.0})
        started = time.monotonic()
        run_py(config, "process")
        process_s = time.monotonic() - started
        with Index(settings) as index:
            real_rows = index.vectors.count()
            model = fit_distractors(workdir / "train", args.seed, index)
        print(
            f"{len(kept)} clips indexed by run.py process in {process_s:.0f} s: {real_rows} vectors; "
            f"{len(payloads)} queries ({len(plan)} moments x {len(ROBUST_DISTORTIONS)} distortions), "
            f"{sum(k[0] == args.holdout for k in keys)} of them of {args.holdout} (not indexed); "
            f"gunicorn -w {args.workers} on {os.cpu_count()} cores",
            flush=True,
        )
        number = 0
        for rows in sizes:
            started = time.monotonic()
            with Index(settings) as index, index.writing():
                number = add_distractors(index, model, rows, number)
                host = stack_processes(config)
            build_s = time.monotonic() - started
            wait_for_exit(host, 60)  # the store host goes idle: the next start is cold
            for round_number in range(args.rounds):
                for workers in stacks if round_number % 2 == 0 else stacks[::-1]:  # A B, then B A
                    result = {
                        **measure(args, config, (payloads, keys), args.holdout, rows, workers),
                        "build_s": round(build_s),
                        "round": round_number,
                    }
                    print(json.dumps(result), flush=True)
                    if args.json:
                        with args.json.open("a") as out:
                            out.write(json.dumps(result) + "\n")
                    wait_for_exit(stack_processes(config), 90)  # its store host goes idle too: the next is cold
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
