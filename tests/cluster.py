"""The several-machine layout on one machine, for tests/test_scale_out.py and benchmarks/scale_out.py: a real
Milvus standalone, a real redis-server, one indexing node and web nodes (gunicorn), each node with a config, a
data folder and a temp folder of its own; the one folder they share is the previews' (`media_dir`), as an NFS
mount would be. A web node owns no store: whatever it needs of another node, it can only get through Milvus,
Redis or that folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import MilvusStandalone, RedisServer, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
SECRET = "one-preview-secret-for-every-node"
QUOTA_KEY = "key-of-a-user-with-a-quota-of-10"  # an API key whose user may search 10 times a day


def request(url: str, data: bytes | None = None, timeout: float = 30.0, headers: dict | None = None):
    """(status, body, seconds) of one HTTP request; a refused connection is status 0."""
    started = time.perf_counter()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except OSError:
        body, status = b"", 0
    return status, body, time.perf_counter() - started


@dataclass
class WebNode:
    """A web node: gunicorn serving the index through Milvus, its counters in Redis, previews from media_dir."""

    name: str
    folder: Path
    config: dict
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict:
        tmp = self.folder / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.json"
        config.write_text(json.dumps(self.config))
        return {**os.environ, "ANIMEBACK_CONFIG": str(config), "TMPDIR": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start(self, timeout_s: float = 180.0) -> float:
        """Start gunicorn and wait until /status answers 200; returns the seconds that took."""
        started = time.monotonic()
        env = self.env  # writes the config (and makes the folders)
        with open(self.folder / "gunicorn.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}"]
                + ["app:flask_app"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        while time.monotonic() - started < timeout_s:
            assert self.process.poll() is None, self.log_tail()
            if request(f"{self.base}/status", timeout=10)[0] == 200:
                return time.monotonic() - started
            time.sleep(0.3)
        raise AssertionError(f"web node {self.name} did not answer /status within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.folder / "gunicorn.log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """Kill the node's every process at once (SIGKILL to gunicorn's process group), as a machine lost would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            process = self.process
            stop_process(process, 60, kill=lambda: os.killpg(process.pid, signal.SIGKILL))
            self.process = None

    def search(self, image: bytes, key: str | None = None) -> tuple[int, dict, float]:
        """POST an image to /search: (status, JSON body, seconds)."""
        headers = {"Content-Type": "image/png", **({"x-trace-key": key} if key else {})}
        status, body, seconds = request(f"{self.base}/search", data=image, headers=headers)
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {"error": body[:200].decode(errors="replace")}
        return status, answer, seconds


@dataclass
class Cluster:
    """Milvus, Redis, the indexing node's folders and config, and web nodes."""

    folder: Path
    milvus: MilvusStandalone | None = None  # a running one to use, else one of its own
    redis: RedisServer = field(init=False)
    nodes: list[WebNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.media = self.folder / "shared-media"
        self.media.mkdir(parents=True)
        self.library = self.folder / "indexer" / "library"
        self._own_milvus = self.milvus is None
        self.milvus = self.milvus or MilvusStandalone(self.folder / "milvus")
        self.redis = RedisServer(self.folder / "redis")
        self.collection = "scale_out_" + uuid.uuid4().hex[:8]

    def start(self, web_nodes: int = 2, workers: int = 1) -> Cluster:
        if self._own_milvus:
            self.milvus.start()
        self.redis.start()
        self.library.mkdir(parents=True)
        for index in range(web_nodes):
            name = "web" + "ab"[index] if index < 2 else f"web{index}"
            self.nodes.append(WebNode(name, self.folder / name, self.web_config(self.folder / name), workers))
        return self

    def milvus_section(self) -> dict:
        return {"uri": self.milvus.uri, "collection": self.collection, "timeout_s": 5.0}

    def indexer_config(self) -> dict:
        return {
            "library_dir": str(self.library),
            "data_dir": str(self.folder / "indexer" / "data"),
            "media_dir": str(self.media),
            "log_level": "WARNING",
            "milvus": self.milvus_section(),
            "stores": {"host_idle_s": 3},
        }

    def web_config(self, folder: Path) -> dict:
        return {
            "library_dir": str(folder / "no-library-here"),
            "data_dir": str(folder / "data"),
            "media_dir": str(self.media),
            "log_level": "WARNING",
            "milvus": self.milvus_section(),
            "stores": {"catalogue": "milvus", "redis_url": self.redis.url},
            "server": {"secret": SECRET},
            "api": {"keys": {QUOTA_KEY: {"id": "quota-user", "quota": 10}}},
        }

    def add_episode(self, source: Path, series: str) -> Path:
        """Put an episode file (and its series.json, when its folder has one) into the indexing node's library."""
        target = self.library / series / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        if (source.parent / "series.json").exists():
            shutil.copy2(source.parent / "series.json", target.parent / "series.json")
        return target

    def process(self) -> subprocess.CompletedProcess:
        """`run.py process` on the indexing node."""
        return run_process(self.folder / "indexer", self.indexer_config())

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()
        if self._own_milvus:
            self.milvus.stop()


def run_process(folder: Path, config: dict) -> subprocess.CompletedProcess:
    """`run.py process` with this config, in this folder (its temp folder inside)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "ANIMEBACK_CONFIG": str(folder / "config.json"), "TMPDIR": str(folder / "tmp")}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-q", "process"],
        cwd=folder,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_until(check, timeout_s: float, interval_s: float = 0.2):
    """Call check() until it returns something true; returns (that value, seconds waited), or (None, seconds)."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None, time.monotonic() - started
        time.sleep(interval_s)
