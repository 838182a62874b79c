"""HTTP search latency and throughput under gunicorn, on an index of the shared clips; optionally two
configurations side by side on the same index.

Indexes the clips with `run.py process`, starts `gunicorn -w WORKERS app:flask_app`, then POSTs JPEG screenshots
(640 px wide, as the website uploads them; with --robust, the robustness benchmark's distorted screenshots) to
/search: one at a time (latency p50/p95), then from CLIENTS threads at once (throughput), and the CPU time each
process of the stack spent per search. Also prints each worker's resident memory after the run.

With --compare KEY=VALUE (repeatable), a second gunicorn serves the same index with those settings changed, and
the two are measured interleaved: sequential queries alternate A B A B, and the concurrent runs alternate A B A B
for --rounds rounds; the figures are medians over rounds with their range.

    .venv/bin/python benchmarks/http_search.py [--workers 2] [--clients 4] [--queries 200] [--rounds 3] \
        [--robust] [--compare search.confident=1.0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import (
    ROBUST_DISTORTIONS,
    ROOT,
    add_setting_option,
    free_port,
    grab_rgb,
    link_library,
    percentile,
    post_search,
    shared_clips,
)
from PIL import Image

from animeback.ingest.media import probe


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _jpeg(rgb: np.ndarray, width: int | None) -> bytes:
    image = Image.fromarray(rgb)
    if width:
        image = image.resize((width, max(1, round(image.height * width / image.width))))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _payloads(clips: list[Path], robust: bool, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(40):
        clip = clips[i % len(clips)]
        frames.append(grab_rgb(clip, float(rng.uniform(0.2, probe(clip).duration - 0.3))))
    if not robust:
        return [_jpeg(rgb, 640) for rgb in frames]
    distortions = list(ROBUST_DISTORTIONS.values())
    return [_jpeg(distortions[i % len(distortions)](rgb, rng), None) for i, rgb in enumerate(frames)]


class Server:
    """One gunicorn serving the index with a config of its own."""

    def __init__(self, name: str, config: Path, workers: int):
        self.name, self.config, self.port = name, config, free_port()
        env = {**os.environ, "ANIMEBACK_CONFIG": str(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "app:flask_app"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5).read()
                break
            except OSError:
                time.sleep(0.3)
        self.ready_s = time.monotonic() - started
        self.sequential: list[float] = []
        self.rates: list[float] = []
        self.concurrent: list[float] = []
        self.statuses: set[int] = set()
        self.cpu_ms: list[float] = []

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def _store_processes(data: Path) -> list[int]:
    """The store host and its Milvus Lite, which both servers share (they serve one data folder)."""
    out = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split() if int(pid) != os.getpid()]


def _load(server: Server, payloads: list[bytes], clients: int, total: int) -> None:
    done, lock = [], threading.Lock()

    def client(offset: int) -> None:
        for i in range(offset, total, clients):
            status, ms, _ = post_search(server.port, payloads[i % len(payloads)])
            with lock:
                done.append((status, ms))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    workers = server.workers()
    cpu_before = sum(_cpu_seconds(pid) for pid in workers)
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    server.cpu_ms.append(1000 * (sum(_cpu_seconds(pid) for pid in workers) - cpu_before) / len(done))
    server.rates.append(len(done) / elapsed)
    server.concurrent += [ms for _, ms in done]
    server.statuses |= {s for s, _ in done}


def _spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.1f} {unit} (range {min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="concurrent runs per server (interleaved)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--robust", action="store_true", help="send the robustness benchmark's distorted screenshots")
    add_setting_option(
        parser, "--compare", "a second server with this setting changed (e.g. search.confident=1.0); repeatable"
    )
    args = parser.parse_args()
    clips = shared_clips()
    payloads = _payloads(clips, args.robust, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        link_library(tmp / "library", clips)
        base = {"library_dir": str(tmp / "library"), "data_dir": str(tmp / "data"), "log_level": "WARNING"}
        configs = {"A": base}
        if args.compare:
            changed = json.loads(json.dumps(base))
            for key, value in args.compare:
                section, _, name = key.rpartition(".")
                (changed.setdefault(section, {}) if section else changed)[name] = value
            configs["B"] = changed
        for name, config in configs.items():
            (tmp / f"{name}.json").write_text(json.dumps(config))
        env = {**os.environ, "ANIMEBACK_CONFIG": str(tmp / "A.json"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([sys.executable, str(ROOT / "run.py"), "-q", "process"], env=env, check=True)
        servers = [Server(name, tmp / f"{name}.json", args.workers) for name in configs]
        try:
            for server in servers:
                for data in payloads[: 4 * args.workers]:
                    post_search(server.port, data)  # every worker warm (loaded model, compiled call)
            for i in range(args.queries):
                for server in servers if i % 2 == 0 else servers[::-1]:
                    status, ms, _ = post_search(server.port, payloads[i % len(payloads)])
                    assert status == 200, status
                    server.sequential.append(ms)
            store = _store_processes(tmp / "data")
            store_cpu = dict.fromkeys(store, 0.0)
            for round_ in range(args.rounds):
                for server in servers if round_ % 2 == 0 else servers[::-1]:
                    before = {pid: _cpu_seconds(pid) for pid in store}
                    _load(server, payloads, args.clients, args.queries)
                    if server is servers[0]:
                        for pid in store:
                            store_cpu[pid] += _cpu_seconds(pid) - before[pid]
            rss = {server.name: [_rss_mib(pid) for pid in server.workers()] for server in servers}
        finally:
            for server in servers:
                server.stop()
    print(f"gunicorn -w {args.workers} on {os.cpu_count()} cores; {len(clips)} clips indexed")
    for server in servers:
        changes = ", ".join(f"{key}={json.dumps(value)}" for key, value in args.compare)
        label = server.name + (f" ({changes})" if server.name == "B" else " (as configured)")
        print(f"{label}: ready in {server.ready_s:.1f} s")
        print(
            f"  sequential: {len(server.sequential)} searches, p50 {percentile(server.sequential, 50):.1f} ms, "
            f"p95 {percentile(server.sequential, 95):.1f} ms"
        )
        print(
            f"  {args.clients} concurrent clients, {args.rounds} rounds: {_spread(server.rates, 'searches/s')}; "
            f"p50 {percentile(server.concurrent, 50):.1f} ms, p95 {percentile(server.concurrent, 95):.1f} ms, "
            f"statuses {sorted(server.statuses)}; workers' CPU {_spread(server.cpu_ms, 'ms per search')}"
        )
        print("  worker memory (RSS): " + ", ".join(f"{r:.0f} MiB" for r in rss[server.name]))
    searches = args.rounds * args.queries
    print(
        "store host and Milvus Lite CPU per search (A's runs): "
        + ", ".join(f"pid {pid} {1000 * s / searches:.1f} ms" for pid, s in store_cpu.items())
    )


if __name__ == "__main__":
    main()
