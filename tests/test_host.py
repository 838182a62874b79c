"""The store host on its own: the handshake, a wrong key, idle exit, the fork guard, errors that cross the process
boundary with their attributes, and a host killed in the middle of a call."""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from multiprocessing import AuthenticationError, Pipe
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
import pytest

from animeback.errors import AnimeBackError, SourceError, StoreUnavailableError
from animeback.stores.catalogue import Catalogue
from animeback.stores.counters import Counters
from animeback.stores.host import HostPaths, connect
from animeback.stores.rpc import (
    Connection,
    Dispatcher,
    RemoteCatalogue,
    RemoteCounters,
    decode_error,
    encode_error,
    exposed_methods,
)
from animeback.stores.vectors import FrameRow, VectorStore
from tests.conftest import make_settings
from tests.servers import process_running


def _settings(tmp_path: Path, idle_s: float = 3.0):
    return make_settings(tmp_path, tmp_path / "library", stores={"host_idle_s": idle_s})


_running = process_running


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of a process is stopped (state T in /proc)."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] in "tT" for task in tasks)


def _children(pid: int) -> list[int]:
    """The pids of a process's children (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # a process that ended meanwhile
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_first_client_starts_the_host_and_every_client_shares_it(tmp_path):
    settings = _settings(tmp_path)
    first, second = connect(settings), connect(settings)
    try:
        assert first.host_pid == second.host_pid != os.getpid() and _running(first.host_pid)
        assert first.vectors_uri.startswith("unix:")  # Milvus Lite, served by the host
        first.catalogue.put_series("7", {"title": "Seven"})
        assert second.catalogue.get_series("7") == {"title": "Seven"}
        assert first.counters.add("quota/test", 2, 60.0, 3) == (True, 2)
        assert second.counters.add("quota/test", 2, 60.0, 3) == (False, 2)  # one count for every client
        assert second.counters.get("quota/test") == 2
    finally:
        first.close()
        second.close()


def test_a_client_with_a_wrong_key_is_refused_and_the_others_go_on(tmp_path):
    settings = _settings(tmp_path)
    store = connect(settings)
    try:
        paths = HostPaths.of(settings.data_path)
        assert paths.key.stat().st_mode & 0o777 == 0o600 and os.stat(paths.socket).st_mode & 0o777 == 0o600
        with pytest.raises(AuthenticationError):
            Client(paths.socket, family="AF_UNIX", authkey=b"not the key of this host")
        assert store.catalogue.get_series("7") is None
    finally:
        store.close()


def test_the_host_exits_when_idle_and_the_next_client_starts_a_new_one(tmp_path):
    settings = _settings(tmp_path, idle_s=0.5)
    store = connect(settings)
    pid = store.host_pid
    store.catalogue.put_meta("kept", True)
    time.sleep(1.0)
    assert _running(pid)  # a connected client keeps it, however long it is quiet
    store.close()
    assert _wait_until(lambda: not _running(pid), 15.0), "the host did not exit after its last client left"
    assert not os.path.exists(HostPaths.of(settings.data_path).socket)
    again = connect(settings)
    try:
        assert again.host_pid != pid and again.catalogue.get_meta("kept") is True  # the stores outlive the host
    finally:
        again.close()


def test_a_connection_is_refused_in_a_forked_child(tmp_path):
    store = connect(_settings(tmp_path))
    try:
        child = os.fork()
        if child == 0:  # the child must connect on its own: it shares the socket with its parent
            try:
                store.catalogue.get_series("7")
                os._exit(1)
            except AnimeBackError as exc:
                os._exit(0 if "across a fork" in exc.message else 2)
            except BaseException:
                os._exit(3)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.catalogue.get_series("7") is None  # the parent's connection is untouched
    finally:
        store.close()


def test_domain_errors_cross_the_boundary_with_their_type_and_attributes():
    rebuilt = decode_error(encode_error(SourceError("season ss1 is region-locked", retryable=True)))
    assert type(rebuilt) is SourceError and rebuilt.message == "season ss1 is region-locked"
    assert rebuilt.retryable is True and rebuilt.status == 502
    unknown = decode_error({"type": "NoSuchError", "message": "odd", "attributes": {}})
    assert type(unknown) is AnimeBackError and unknown.message == "odd"

    class Source:
        def fail(self):
            raise SourceError("rate-limited", retryable=True)

        def crash(self):
            raise KeyError("broken")

    client_end, host_end = Pipe()
    dispatcher = Dispatcher({"source": (Source(), frozenset({"fail", "crash"}))}, hello=dict)
    threading.Thread(target=dispatcher.answer, args=(host_end,), daemon=True).start()
    connection = Connection(client_end, {})
    with pytest.raises(SourceError) as err:
        connection.call("source", "fail")
    assert err.value.retryable is True and err.value.message == "rate-limited"
    with pytest.raises(AnimeBackError, match="store call crash failed"):
        connection.call("source", "crash")
    with pytest.raises(AnimeBackError, match="unknown store call source.__init__"):
        connection.call("source", "__init__")
    connection.close()


def test_only_what_the_typed_clients_declare_can_be_called(tmp_path):
    catalogue_methods = {n for n, m in vars(Catalogue).items() if inspect.isfunction(m) and not n.startswith("_")}
    assert exposed_methods(RemoteCatalogue) == catalogue_methods - {"close"}
    for name in exposed_methods(RemoteCatalogue):  # same parameters, so an editor and mypy see the real interface
        assert list(inspect.signature(getattr(RemoteCatalogue, name)).parameters) == list(
            inspect.signature(getattr(Catalogue, name)).parameters
        ), name
    assert exposed_methods(RemoteCounters) == {"add", "add_many", "get", "get_many"} <= set(vars(Counters))
    store = connect(_settings(tmp_path))
    try:
        with pytest.raises(AnimeBackError, match="unknown store call catalogue.close"):
            store.connection.call("catalogue", "close")  # no client may close the host's LevelDB
        assert store.catalogue.series_ids() == []
    finally:
        store.close()


def test_a_host_killed_mid_call_gives_a_clean_503_and_the_next_call_heals(tmp_path):
    settings = _settings(tmp_path)
    store = connect(settings)
    pid = store.host_pid
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["value"] = store.catalogue.episodes()
        except BaseException as exc:
            outcome["error"] = exc

    os.kill(pid, signal.SIGSTOP)  # the host receives the call but cannot answer it...
    # ...once every thread of it has stopped (a signal takes effect a moment after kill returns)
    assert _wait_until(lambda: _all_threads_stopped(pid), 10)
    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    assert caller.is_alive() and not outcome, outcome
    os.kill(pid, signal.SIGKILL)  # ...and dies in the middle of it
    caller.join(10)
    error = outcome.get("error")
    assert isinstance(error, StoreUnavailableError) and error.status == 503
    assert "lost the connection to the store host" in error.message and str(settings.data_path) in error.message
    assert store.catalogue.get_series("7") is None  # the next call connects again, to a host started anew
    assert store.host_pid != pid and _running(store.host_pid)
    fresh = connect(settings)
    try:
        assert fresh.host_pid == store.host_pid and fresh.catalogue.episodes() == []
    finally:
        fresh.close()
        store.close()


def test_every_vector_call_on_a_milvus_that_went_away_is_a_clean_503(tmp_path):
    """Each call process makes (insert, delete, count, flush, the episode scan, search) reports a store host that
    died with its Milvus Lite as one StoreUnavailableError, never as pymilvus's own exception."""
    settings = _settings(tmp_path, idle_s=30)
    store = connect(settings)
    vectors = VectorStore.from_settings(settings, store.vectors_uri, 8)
    try:
        # the host and its Milvus Lite server (a child process, which would otherwise answer a moment longer)
        dying = [store.host_pid, *_children(store.host_pid)]
        for pid in dying:
            os.kill(pid, signal.SIGKILL)
        assert _wait_until(lambda: not any(_running(pid) for pid in dying), 10)
        row = FrameRow(1, 1, "s", 1.0, 0.5, 1.5, np.full(8, 8**-0.5, dtype=np.float32))
        calls = {
            "insert": lambda: vectors.insert([row]),
            "delete": lambda: vectors.delete_episode(1),
            "count": vectors.count,
            "flush": vectors.flush,
            "scan of episodes": vectors.episode_ids,
            "search": lambda: vectors.search(np.ones((1, 8), dtype=np.float32), 5),
        }
        for what, call in calls.items():
            with pytest.raises(StoreUnavailableError, match=f"Milvus did not answer the {what}") as raised:
                call()
            assert raised.value.status == 503
    finally:
        vectors.close()
        store.close()


def test_a_call_interrupted_while_waiting_leaves_no_answer_for_the_next(tmp_path):
    settings = _settings(tmp_path)
    store = connect(settings)
    pid = store.host_pid
    store.catalogue.put_meta("answer", 1)

    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    os.kill(pid, signal.SIGSTOP)
    assert _wait_until(lambda: _all_threads_stopped(pid), 10)
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # as Ctrl-C would, while the call waits for its answer
    try:
        with pytest.raises(Interrupted):
            store.catalogue.get_meta("answer")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.kill(pid, signal.SIGCONT)
    try:
        # the host answers the interrupted call (1) once it runs again: that answer must not be this call's
        assert store.catalogue.episodes() == []
        assert store.catalogue.get_meta("answer") == 1 and store.host_pid == pid
    finally:
        store.close()
