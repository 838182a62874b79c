"""The store host's lifecycle: the one process that opens an installation's embedded stores; every other process
connects to it.

Milvus Lite and LevelDB each lock their files to one process, yet a web server with several workers and a
`process` run must all reach them at once. So exactly one host process per data folder owns them, by
construction: it holds `host.lock` (an flock) for its whole life, and only the holder opens the catalogue and
starts Milvus Lite. The host serves
- the vectors: embedded Milvus Lite is served on a private Unix socket, and clients use pymilvus with that
  URI, exactly as they would a Milvus server (with a Milvus server URI configured, the host starts nothing
  and clients go straight to the server: one code path either way);
- the catalogue and the shared API counters, over an authenticated local connection (multiprocessing.connection
  on a Unix socket, key in `host.key`, readable by the owner only), in the protocol of stores/rpc.py.
Any process that needs the stores calls `connect(settings)`: it connects to the running host, or starts one
(detached, so it outlives its starter) and waits for it. The host exits after `stores.host_idle_s` seconds
without any client; Milvus Lite stops with it (it watches its lock file), so a killed host leaves nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AnimeBackError, IndexBusyError
from ..keys import read_or_create_key
from . import rpc
from .catalogue import Catalogue
from .counters import Counters
from .keyvalues import PUBLISHED_PREFIXES, MilvusValues, MirroredValues, published_collection
from .redis_counters import RedisCounters

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
TOKEN_VARIABLE = "ANIMEBACK_HOST_MILVUS_TOKEN"  # how the host gets the Milvus token (not on its command line)
LOCK_WAIT_S = 10.0  # a host that is stopping still holds the lock for a moment


@dataclass(frozen=True)
class Publication:
    """Where the host publishes the catalogue for web nodes: a Milvus server's collection."""

    uri: str
    token: str
    collection: str
    timeout_s: float


@dataclass(frozen=True)
class HostPaths:
    """Where a data folder's host keeps its lock, key, socket and log."""

    data: Path
    lock: Path
    key: Path
    socket: str
    log: Path

    @classmethod
    def of(cls, data: Path) -> HostPaths:
        data = data.resolve()
        # Unix socket paths are limited to ~107 bytes, so the socket lives in the temp folder under a name
        # derived from the data folder; the same folder always maps to the same socket.
        digest = hashlib.sha256(str(data).encode()).hexdigest()[:20]
        socket = os.path.join(tempfile.gettempdir(), f"animeback-{os.getuid()}-{digest}.sock")
        return cls(data, data / "host.lock", data / "host.key", socket, data / "host.log")


class StoreHost:
    """The owning process: holds the catalogue, Milvus Lite and the counters, and answers clients until idle."""

    def __init__(self, paths: HostPaths, milvus_file: str, idle_s: float, publish: Publication | None = None) -> None:
        self.paths, self.milvus_file, self.idle_s, self.publish = paths, milvus_file, idle_s, publish
        self.catalogue: Catalogue | None = None
        self.milvus: Any = None
        self.vectors_uri = ""
        self.counters = Counters()
        self._clients = 0
        self._last_client = time.monotonic()
        self._state = threading.Lock()
        self._closing = False

    def open(self) -> None:
        """Open the catalogue (publishing it when a Milvus server is used) and start Milvus Lite (when a file is to
        be served)."""
        self.catalogue = Catalogue.open_local(self.paths.data / "catalogue")
        if self.publish is not None:
            self._publish(self.catalogue, self.publish)
        if self.milvus_file:
            self.vectors_uri = self._start_milvus_lite(Path(self.milvus_file))

    def _publish(self, catalogue: Catalogue, target: Publication) -> None:
        """Bring the published copy up to date with LevelDB (anything a crash left differing), then write both."""
        published = MilvusValues(target.uri, target.token, target.collection, writable=True, timeout_s=target.timeout_s)
        installation = catalogue.get_meta("installation")
        if installation is None:
            installation = os.urandom(16).hex()
            catalogue.put_meta("installation", installation)
        owner = {"installation": installation, "host": socket.gethostname(), "data": str(self.paths.data)}
        started = time.monotonic()
        written, deleted = published.publish(catalogue.values.scan(PUBLISHED_PREFIXES), owner)
        log.info(
            "catalogue published to %s (%s): %d entries written, %d deleted, in %.1f s",
            target.uri,
            target.collection,
            written,
            deleted,
            time.monotonic() - started,
        )
        catalogue.values = MirroredValues(catalogue.values, published)

    def _start_milvus_lite(self, db_file: Path) -> str:
        with warnings.catch_warnings():  # milvus-lite 2.5 imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            from milvus_lite.server import Server
        db_file.parent.mkdir(parents=True, exist_ok=True)
        self.milvus = Server(str(db_file))
        if not self.milvus.init() or not self.milvus.start():
            raise IndexBusyError(f"cannot start Milvus Lite on {db_file} (is another program using it?)")
        socket = self.milvus.uds_path[len("unix:") :]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(socket):
            if time.monotonic() > deadline:
                raise AnimeBackError(f"Milvus Lite did not start on {db_file}")
            time.sleep(0.05)
        return str(self.milvus.uds_path)

    def dispatcher(self) -> rpc.Dispatcher:
        """What clients may call: the typed clients' methods on the catalogue and the counters, and hello."""
        return rpc.Dispatcher(
            {
                rpc.RemoteCatalogue.target: (self.catalogue, rpc.exposed_methods(rpc.RemoteCatalogue)),
                rpc.RemoteCounters.target: (self.counters, rpc.exposed_methods(rpc.RemoteCounters)),
            },
            hello=lambda: {"pid": os.getpid(), "vectors_uri": self.vectors_uri},
        )

    def serve(self) -> None:
        """Answer clients until idle for idle_s seconds."""
        Path(self.paths.socket).unlink(missing_ok=True)
        listener = Listener(self.paths.socket, family="AF_UNIX", authkey=read_or_create_key(self.paths.key))
        os.chmod(self.paths.socket, 0o600)
        dispatcher = self.dispatcher()
        threading.Thread(target=self._accept, args=(listener, dispatcher), daemon=True).start()
        log.info("store host %d serving %s (vectors at %s)", os.getpid(), self.paths.data, self.vectors_uri or "-")
        while True:
            time.sleep(0.2)
            with self._state:
                if self._clients == 0 and time.monotonic() - self._last_client > self.idle_s:
                    self._closing = True
                    break
        listener.close()
        Path(self.paths.socket).unlink(missing_ok=True)
        log.info("store host %d idle for %.0f s: stopping", os.getpid(), self.idle_s)

    def close(self) -> None:
        if self.catalogue is not None:
            self.catalogue.close()
        if self.milvus is not None:
            self.milvus.stop()

    def _accept(self, listener: Listener, dispatcher: rpc.Dispatcher) -> None:
        while True:
            try:
                conn = listener.accept()
            except OSError:
                return  # closed by serve()
            except Exception as exc:  # a client that failed the handshake (a wrong key)
                log.warning("refused a client: %s", exc)
                continue
            with self._state:
                if self._closing:
                    conn.close()  # the client sees EOF on its hello and starts a new host
                    return
                self._clients += 1
            threading.Thread(target=self._answer, args=(conn, dispatcher), daemon=True).start()

    def _answer(self, conn: Connection, dispatcher: rpc.Dispatcher) -> None:
        try:
            dispatcher.answer(conn)
        finally:
            conn.close()
            with self._state:
                self._clients -= 1
                self._last_client = time.monotonic()


class WebNodeStores:
    """What a web node's processes get from `connect()`: the catalogue the indexing node publishes in Milvus,
    the API counters in Redis, and the Milvus server; no store host, nothing of this machine's own."""

    def __init__(self, settings: Settings) -> None:
        milvus = settings.milvus
        self.vectors_uri = milvus.uri
        collection = published_collection(milvus.collection)
        self.catalogue = Catalogue(MilvusValues(milvus.uri, milvus.token, collection, timeout_s=milvus.timeout_s))
        self.counters = RedisCounters(settings.stores.redis_url)

    def close(self) -> None:
        self.catalogue.close()
        self.counters.close()


Stores = rpc.StoreClient | WebNodeStores  # what connect() gives


def connect(settings: Settings) -> Stores:
    """The stores of this installation: on a web node, the shared ones; else a connection to the store host,
    starting it first when none runs (and again, should it die), its counters in Redis when one is configured."""
    if settings.web_node:
        return WebNodeStores(settings)
    paths = HostPaths.of(settings.ensure_data_dir())
    conn, hello = _open(settings, paths)
    client = rpc.StoreClient(rpc.Connection(conn, hello, str(paths.log), reopen=lambda: _open(settings, paths)))
    if settings.stores.redis_url:
        client.counters = RedisCounters(settings.stores.redis_url)
    return client


def _open(settings: Settings, paths: HostPaths) -> tuple[Connection, dict]:
    """An authenticated connection to the running host and its hello, starting a host first when none runs."""
    deadline = time.monotonic() + START_TIMEOUT_S
    started: subprocess.Popen | None = None
    while True:
        opened = _try_connect(paths)
        if opened is not None:
            return opened
        if started is None or started.poll() is not None:
            if started is not None and started.returncode not in (0, None):
                raise AnimeBackError(f"the store host failed to start: {_last_log_line(paths.log)}")
            started = _spawn_host(settings, paths)
        if time.monotonic() > deadline:
            raise AnimeBackError(f"the store host did not start within {START_TIMEOUT_S:.0f} s; see {paths.log}")
        time.sleep(0.05)


def _try_connect(paths: HostPaths) -> tuple[Connection, dict] | None:
    if not os.path.exists(paths.socket) or not paths.key.exists():
        return None
    try:
        conn = Client(paths.socket, family="AF_UNIX", authkey=paths.key.read_bytes())
        conn.send(("host", "hello", (), {}))
        _, hello = conn.recv()
    except (OSError, EOFError):
        return None  # not listening yet, or stopping: try again
    except Exception as exc:  # e.g. a key from another host generation
        log.debug("store host handshake failed: %s", exc)
        return None
    return conn, hello


def _spawn_host(settings: Settings, paths: HostPaths) -> subprocess.Popen:
    milvus_file = "" if settings.milvus_server else str(Path(settings.milvus_uri).resolve())
    milvus = settings.milvus
    publish = ["--publish", milvus.uri, published_collection(milvus.collection)] if settings.milvus_server else []
    args = [
        sys.executable,
        "-m",
        "animeback.stores.host",
        "--data",
        str(paths.data),
        "--milvus-file",
        milvus_file,
        "--idle",
        str(settings.stores.host_idle_s),
        "--timeout",
        str(milvus.timeout_s),
        *publish,
    ]
    with open(paths.log, "ab") as log_file:
        return subprocess.Popen(
            args,
            env={**os.environ, TOKEN_VARIABLE: milvus.token},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )


def _last_log_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {path}"
    return lines[-1] if lines else f"see {path}"


def main(argv: list[str] | None = None) -> int:
    """Run a store host (started by connect(), not by hand)."""
    parser = argparse.ArgumentParser(description="AnimeBack store host (started automatically by clients)")
    parser.add_argument("--data", required=True, help="the installation's data folder")
    parser.add_argument("--milvus-file", default="", help="Milvus Lite file to serve (empty: a Milvus server is used)")
    parser.add_argument("--idle", type=float, default=30.0, help="exit after this many seconds without clients")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a Milvus call may take")
    parser.add_argument(
        "--publish", nargs=2, metavar=("URI", "COLLECTION"), help="publish the catalogue to this Milvus collection"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s host %(levelname)s %(message)s")
    paths = HostPaths.of(Path(args.data))
    lock = open(paths.lock, "a")  # noqa: SIM115 - held for the process's whole life
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                log.info("another store host owns %s", paths.data)
                return 0
            time.sleep(0.1)
    publish = None
    if args.publish:
        publish = Publication(args.publish[0], os.environ.get(TOKEN_VARIABLE, ""), args.publish[1], args.timeout)
    host = StoreHost(paths, args.milvus_file, args.idle, publish)
    try:
        host.open()
        host.serve()
    except AnimeBackError as exc:
        log.error("%s", exc.message)
        return 1
    finally:
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
