"""HTTP search latency and throughput under gunicorn, on an index of the shared clips.

Indexes the clips with `run.py process`, starts `gunicorn -w WORKERS app:flask_app`, then POSTs JPEG screenshots
(640 px wide, as the website uploads them) to /search: first one at a time (latency p50/p95), then from
CLIENTS threads at once (throughput). Also prints each worker's resident memory after the run.

    .venv/bin/python benchmarks/http_search.py [--workers 2] [--clients 4] [--queries 200]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import ROOT, grab_rgb, link_library, percentile, shared_clips
from PIL import Image

from animeback.ingest.media import probe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("POST", "/search?cutBorders", body=body, headers={"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, (time.perf_counter() - started) * 1000


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    clips = shared_clips()
    rng = np.random.default_rng(args.seed)
    payloads = []
    for i in range(40):
        clip = clips[i % len(clips)]
        rgb = grab_rgb(clip, float(rng.uniform(0.2, probe(clip).duration - 0.3)))
        image = Image.fromarray(rgb)
        image = image.resize((640, max(1, round(image.height * 640 / image.width))))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        payloads.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        link_library(tmp / "library", clips)
        port = _free_port()
        (tmp / "config.json").write_text(
            json.dumps({"library_dir": str(tmp / "library"), "data_dir": str(tmp / "data"), "log_level": "WARNING"})
        )
        env = {**os.environ, "ANIMEBACK_CONFIG": str(tmp / "config.json"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([sys.executable, str(ROOT / "run.py"), "-q", "process"], env=env, check=True)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "app:flask_app"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            started = time.monotonic()
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).read()
                    break
                except OSError:
                    time.sleep(0.3)
            ready_s = time.monotonic() - started
            for data in payloads[: 4 * args.workers]:
                _post(port, data)  # every worker warm (loaded model, compiled call)
            latencies = []
            for i in range(args.queries):
                status, ms = _post(port, payloads[i % len(payloads)])
                assert status == 200, status
                latencies.append(ms)
            done, lock = [], threading.Lock()

            def client(offset: int) -> None:
                for i in range(offset, args.queries, args.clients):
                    status, ms = _post(port, payloads[i % len(payloads)])
                    with lock:
                        done.append((status, ms))

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            workers = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
            rss = [_rss_mib(int(pid)) for pid in workers]
        finally:
            server.terminate()
            server.wait()
    statuses = sorted({s for s, _ in done})
    print(f"gunicorn -w {args.workers} on {os.cpu_count()} cores; {len(clips)} clips indexed; ready in {ready_s:.1f} s")
    print(
        f"sequential: {args.queries} searches, p50 {percentile(latencies, 50):.1f} ms, "
        f"p95 {percentile(latencies, 95):.1f} ms"
    )
    print(
        f"{args.clients} concurrent clients: {len(done) / elapsed:.1f} searches/s, "
        f"p50 {percentile([m for _, m in done], 50):.1f} ms, p95 {percentile([m for _, m in done], 95):.1f} ms, "
        f"statuses {statuses}"
    )
    print("worker memory (RSS): " + ", ".join(f"{r:.0f} MiB" for r in rss))


if __name__ == "__main__":
    main()
