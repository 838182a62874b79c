"""A live AnimeBack for the tests that talk HTTP to it: a config, a copy of a library, gunicorn on loopback, and a
second HTTP server (on 127.0.0.2) that serves pictures to fetch by URL."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Live:
    """A config, a library copy, and a gunicorn serving them."""

    def __init__(self, tmp: Path, library_template: Path):
        self.tmp = tmp
        self.library = Path(shutil.copytree(library_template, tmp / "library"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = {
            "library_dir": str(self.library),
            "data_dir": str(tmp / "data"),
            "log_level": "WARNING",
            "server": {"fetch_allow_networks": ["127.0.0.2/32"]},
            "stores": {"host_idle_s": 5},
        }
        (tmp / "config.json").write_text(json.dumps(config))
        self.env = {**os.environ, "ANIMEBACK_CONFIG": str(tmp / "config.json"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.server = None

    def run(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "-q", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start(self, workers: int = 2) -> None:
        self.log = open(self.tmp / "gunicorn.log", "wb")  # noqa: SIM115 - the server's log, closed in stop()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "app:flask_app"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.server.poll() is None, (self.tmp / "gunicorn.log").read_text()[-3000:]
            try:
                if get(f"{self.base}/status", 5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError("gunicorn did not answer /status within 180 s")

    @contextlib.contextmanager
    def indexed_and_serving(self):
        """`process` the library, then serve it until the block ends."""
        out = self.run("process")
        assert out.returncode == 0, out.stderr
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)
            self.log.close()


@contextlib.contextmanager
def serving_folder(address: str = "127.0.0.2"):
    """An HTTP server on `address` (the live config allows 127.0.0.2 for ?url=) serving the files put in the folder
    it yields, with its base URL."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"animeback-image-host-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass
