"""Real servers started by the tests and benchmarks: a Milvus standalone (the PyPI package `milvus`) and Debian's
redis-server, each in a folder of its own, on loopback, stopped the way their makers say.

A Milvus standalone listens on every interface: it is started only in a private network namespace with loopback
alone (scripts/test.sh runs the tests in one; `in_private_network()` says whether this process is in one)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path


def in_private_network() -> bool:
    """True when this process sees no network interface but loopback (a private network namespace)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def stop_process(process: subprocess.Popen, timeout_s: float, kill=None) -> None:
    """Ask a process to stop (SIGTERM) and wait for it; past timeout_s, kill it (with `kill`, when given)."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        (kill or process.kill)()
        process.wait()


def process_running(pid: int) -> bool:
    """Whether a process runs (a zombie, exited but not yet reaped by its starter, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_milvus(uri: str, what: str, timeout_s: float = 90.0) -> float:
    """Wait until a Milvus answers at uri; returns the seconds waited."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymilvus import MilvusClient

    started = time.monotonic()
    while True:
        try:
            client = MilvusClient(uri=uri, timeout=2)
            client.list_collections()
            client.close()
            return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{what} did not answer at {uri} within {timeout_s:.0f} s") from None
            time.sleep(0.3)


def _bind_reusing(port: int) -> socket.socket | None:
    """A socket listening on a loopback port, bound as servers bind (SO_REUSEADDR); None when the port is taken."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


@dataclass
class MilvusStandalone:
    """A Milvus standalone (embedded etcd, local storage, rocksmq) whose data lives in `base_dir`."""

    base_dir: Path
    port: int = 0
    _server: object = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MilvusStandalone:
        """Start it (again, on the same data and port after a stop or kill) and wait until it answers."""
        if not in_private_network():
            raise AssertionError(
                "a Milvus standalone listens on every interface and this network namespace has others than "
                "loopback: run through scripts/test.sh (a private network namespace with loopback only)"
            )
        import milvus

        server = milvus.MilvusServer()
        server.set_base_dir(str(self.base_dir))
        # The package checks a port is free by binding it without SO_REUSEADDR, which fails for a minute after a
        # kill (connections in TIME_WAIT) though Milvus itself could listen there: check as Milvus binds.
        server.config.try_bind_port = _bind_reusing
        if self.port:  # again on the port the clients know
            server.config.configs["proxy_port"] = self.port
        server.start()  # waits for its health endpoint
        self.port, self._server = server.listen_port, server
        wait_for_milvus(self.uri, "the Milvus standalone")
        return self

    @property
    def pid(self) -> int:
        return self._server.server_proc.pid  # type: ignore[attr-defined]

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash or an OOM kill would."""
        process = self._server.server_proc  # type: ignore[attr-defined]
        process.kill()
        process.wait()
        self._forget()

    def stop(self) -> None:
        """Stop it cleanly (SIGINT, Milvus's clean stop), killing it if it takes over a minute."""
        if self._server is None:
            return
        process = self._server.server_proc  # type: ignore[attr-defined]
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._forget()

    def _forget(self) -> None:
        server, self._server = self._server, None
        server.server_proc = None  # type: ignore[attr-defined]
        server.stop()  # type: ignore[attr-defined]  # closes its log files


@dataclass
class RedisServer:
    """Debian's redis-server on a loopback port, its append-only file in `base_dir` (counts survive a restart)."""

    base_dir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (again, on the same files and port) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed: run scripts/setup.sh requirements-dev.txt")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.base_dir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"]
        with open(self.base_dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start; see {self.base_dir / 'redis.log'}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill it at once (SIGKILL)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM: Redis writes its files and exits)."""
        if self.process is not None:
            stop_process(self.process, 30)
            self.process = None
