"""Several machines on one: search latency through each of two web nodes, and how long the layout takes to
recover after each part is killed (tests/cluster.py builds it: a real Milvus standalone 2.3.5, redis-server, one
indexing node, web nodes with a data folder each; the test of its behaviour is tests/test_scale_out.py).

The library is the shared clips, indexed by `run.py process` on the indexing node, and again into a one-machine
installation (the embedded default) served by a third gunicorn. Queries are clean screenshots of the clips at
random moments, sent to the two web nodes and the one machine in turn (A B C, C B A, ...), one at a time; then
from 4 and 16 clients at once, spread over both web nodes, and to the one machine. Everything runs on this one
machine's cores, Milvus and Redis included, so the layout's figures are its costs, not its capacity. Each kill is repeated `--kills` times:
- a web node killed (SIGKILL to its process group): the seconds until it answers /status again once started
  (its cold start), while the other node's searches are counted;
- Redis killed: searches get 503 at once; the seconds from its restart until each node answers a search again;
- Milvus killed: searches get 503 within milvus.timeout_s; the seconds Milvus takes to start again, and from then
  until each node answers a search.

    .venv/bin/python benchmarks/scale_out.py

It runs in a private network namespace (it re-executes itself under `unshare --net` when it is not in one)."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, percentile, shared_clips

sys.path.insert(0, str(ROOT))
from tests.cluster import Cluster, WebNode, run_process, wait_until
from tests.servers import in_private_network


def screenshot(clip: Path, at: float, folder: Path) -> bytes:
    out = folder / f"{clip.stem}-{at:.2f}.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-ss", f"{at:.3f}", "-i", str(clip), "-frames:v", "1", str(out)], check=True
    )
    return out.read_bytes()


def duration(clip: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(clip)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip() or 10)


def summary(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"p50 {statistics.median(ms):.0f} ms, p99 {percentile(ms, 99):.0f} ms (n={len(ms)}, max {max(ms):.0f})"


def sequential(nodes: list[WebNode], shots: list[bytes], rounds: int) -> dict[str, list[float]]:
    """Search latency per node, the nodes asked in turn."""
    times: dict[str, list[float]] = {node.name: [] for node in nodes}
    for i in range(rounds):
        for node in nodes if i % 2 == 0 else nodes[::-1]:
            status, _, seconds = node.search(shots[i % len(shots)])
            assert status == 200, status
            times[node.name].append(seconds)
    return times


def concurrent(
    nodes: list[WebNode], shots: list[bytes], clients: int, seconds: float
) -> tuple[float, list[float], int]:
    """Searches per second, their latencies, and the searches refused (503: a worker's search queue is full,
    server.max_search_queue) with `clients` clients spread over the nodes."""
    latencies: list[float] = []
    refused: list[float] = []
    failures = []
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        node, i = nodes[k % len(nodes)], k
        while time.monotonic() < stop:
            status, _, took = node.search(shots[i % len(shots)])
            (latencies if status == 200 else refused if status == 503 else failures).append(took)
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"{len(failures)} searches failed"
    return len(latencies) / seconds, latencies, len(refused)


def answers(node: WebNode, shot: bytes) -> bool:
    return node.search(shot)[0] == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="sequential searches per node")
    parser.add_argument("--kills", type=int, default=3, help="times each part is killed")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per web node")
    args = parser.parse_args()
    if not in_private_network():
        os.execvp(
            "unshare",
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv],
        )
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cluster = Cluster(work / "cluster").start(web_nodes=2, workers=args.workers)
        try:
            clips = shared_clips()
            for clip in clips:
                cluster.add_episode(clip, "clips")
            started = time.monotonic()
            out = cluster.process()
            assert out.returncode == 0, out.stderr
            print(f"indexing node: process of {len(clips)} clips in {time.monotonic() - started:.0f} s")
            (work / "shots").mkdir()
            shots = [
                screenshot(clip, rng.uniform(0.5, duration(clip) - 0.5), work / "shots")
                for clip in clips
                for _ in range(4)
            ]
            # the same library on one machine (the embedded default: Milvus Lite, the store host), searched in the
            # same rounds as the web nodes: what the layout costs per search
            single_folder = work / "single"
            single_config = {
                "library_dir": str(cluster.library),
                "data_dir": str(single_folder / "data"),
                "log_level": "WARNING",
            }
            out = run_process(single_folder, single_config)
            assert out.returncode == 0, out.stderr
            single = WebNode("one machine", single_folder, single_config, args.workers)
            a, b = cluster.nodes
            for node in [*cluster.nodes, single]:
                print(
                    f"{node.name}: cold start {node.start():.1f} s (gunicorn -w {args.workers}, to the first /status)"
                )
                sequential([node], shots, 5)  # the first searches load what is left to load

            times = sequential([*cluster.nodes, single], shots, args.rounds)
            for name, seconds in times.items():
                print(f"{name}: sequential search {summary(seconds)}")
            for clients in (4, 16):
                for name, where in (("over both nodes", cluster.nodes), ("on one machine", [single])):
                    rate, latencies, refused = concurrent(where, shots, clients, 30.0)
                    print(
                        f"{clients} clients {name}: {rate:.1f} searches/s, {summary(latencies)}; "
                        f"{refused} refused (503, search queue full)"
                    )
            single.stop()

            web_restart, redis_back, milvus_start, milvus_back = [], [], [], []
            for _ in range(args.kills):
                a.kill()
                assert answers(b, shots[0])
                web_restart.append(a.start())

                cluster.redis.kill()
                assert a.search(shots[0])[0] == 503
                restarted = time.monotonic()
                cluster.redis.start()
                for node in cluster.nodes:
                    found, _ = wait_until(lambda n=node: answers(n, shots[0]), 60)
                    assert found
                redis_back.append(time.monotonic() - restarted)

                cluster.milvus.kill()
                assert a.search(shots[0])[0] == 503
                restarted = time.monotonic()
                cluster.milvus.start()
                milvus_start.append(time.monotonic() - restarted)
                for node in cluster.nodes:
                    found, _ = wait_until(lambda n=node: answers(n, shots[0]), 180, interval_s=0.5)
                    assert found
                milvus_back.append(time.monotonic() - restarted)

            def spread(values: list[float]) -> str:
                return (
                    f"median {statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f}, n={len(values)})"
                )

            print(f"web node killed: started again and answering after {spread(web_restart)}")
            print(f"Redis killed: both nodes answering again {spread(redis_back)} after its restart")
            print(
                f"Milvus killed: Milvus up again after {spread(milvus_start)}; both nodes answering "
                f"{spread(milvus_back)} after its restart began"
            )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
