"""The store host's wire protocol: typed clients for the catalogue and the counters, the server's dispatch,
and domain errors that cross the process boundary with their attributes.

A request is `(target, method, args, kwargs)`; a reply is `("ok", value)` or `("error", {"type", "message",
"attributes"})`. Only the methods the typed clients below declare are callable: the server's allow-list is
read off those classes, so the client and the server cannot disagree on the interface.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .. import errors
from ..errors import AnimeBackError, StoreUnavailableError
from .catalogue import Catalogue, EpisodeRecord, Repeat
from .counters import CounterStore

log = logging.getLogger(__name__)


def encode_error(exc: AnimeBackError) -> dict[str, Any]:
    """A domain error as plain data: its type name, message and attributes."""
    attributes = {k: v for k, v in vars(exc).items() if k != "message"}
    return {"type": type(exc).__name__, "message": exc.message, "attributes": attributes}


def decode_error(payload: dict[str, Any]) -> AnimeBackError:
    """The domain error a reply carries, rebuilt with its attributes (an unknown type becomes AnimeBackError)."""
    cls = getattr(errors, str(payload.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, AnimeBackError)):
        cls = AnimeBackError
    exc = cls.__new__(cls)
    AnimeBackError.__init__(exc, str(payload.get("message", "")))
    vars(exc).update(payload.get("attributes") or {})
    return exc


class Connection:
    """A client's authenticated connection to the host; thread-safe (one call at a time), not fork-safe.

    When the host goes away, the call in flight fails with StoreUnavailableError (503), and the next call opens a
    new connection through `reopen` (which starts a new host when none runs): a client heals by itself."""

    def __init__(
        self,
        conn: Any,
        hello: dict[str, Any],
        log_path: str = "",
        reopen: Callable[[], tuple[Any, dict[str, Any]]] | None = None,
    ) -> None:
        self._conn: Any = conn
        self.hello, self._log_path, self._reopen = hello, log_path, reopen
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the host's target and return its result (raises the domain error it raised)."""
        if os.getpid() != self._pid:
            raise AnimeBackError("a store connection cannot be shared across a fork; connect in each process")
        with self._lock:
            if self._conn is None:
                self._reconnect()
            request = (target, method, args, kwargs)
            try:
                self._conn.send(request)
            except OSError:
                # The host was gone before it received this request, so nothing of it was done: connect again
                # (to a new host) and send it once more.
                self._drop()
                self._reconnect()
                self._send_or_fail(request)
            except BaseException:
                self._drop()  # interrupted part-way: the host may hold half a request on this connection
                raise
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                # The host went away with the request in hand: whether it was done is unknown, so it is not sent
                # again; the caller gets a clean error, and the next call connects again.
                self._drop()
                raise self._lost(exc) from None
            except BaseException:
                # Interrupted (Ctrl-C, a stopping `watch`) before the answer was read: left unread, it would be
                # taken for the answer to the next call, so the next call starts on a new connection.
                self._drop()
                raise
        if status == "ok":
            return value
        raise decode_error(value)

    def _send_or_fail(self, request: tuple) -> None:
        try:
            self._conn.send(request)
        except OSError as exc:
            self._drop()
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> StoreUnavailableError:
        where = f"; see {self._log_path}" if self._log_path else ""
        return StoreUnavailableError(f"lost the connection to the store host ({exc or 'closed'}){where}")

    def _reconnect(self) -> None:
        if self._reopen is None:
            raise StoreUnavailableError("the connection to the store host was closed")
        log.warning("the store host went away: connecting again")
        try:
            self._conn, self.hello = self._reopen()
        except StoreUnavailableError:
            raise
        except AnimeBackError as exc:  # a host that cannot start yet (its old Milvus Lite still stopping, ...)
            raise StoreUnavailableError(
                f"the store host is restarting; try again in a moment ({exc.message})"
            ) from None
        log.warning("connected to store host %s", self.hello.get("pid"))

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._drop()
            self._reopen = None  # closed on purpose: no connecting again


class RemoteCatalogue:
    """The catalogue (stores/catalogue.py's Catalogue, same methods and signatures), answered by the host."""

    target = "catalogue"

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _call(self, method: str, *args: Any) -> Any:
        return self._connection.call(self.target, method, *args)

    def get_meta(self, name: str, default: Any = None) -> Any:
        return self._call("get_meta", name, default)

    def put_meta(self, name: str, value: Any, sync: bool = True) -> None:
        self._call("put_meta", name, value, sync)

    def put_series(self, series_id: str, metadata: dict) -> None:
        self._call("put_series", series_id, metadata)

    def get_series(self, series_id: str) -> dict | None:
        return self._call("get_series", series_id)

    def series_ids(self) -> list[str]:
        return self._call("series_ids")

    def assign_series_number(self, series_id: str, number: int | None = None) -> int:
        return self._call("assign_series_number", series_id, number)

    def series_number(self, series_id: str) -> int | None:
        return self._call("series_number", series_id)

    def series_numbers(self, series_ids: list[str]) -> dict[str, int]:
        return self._call("series_numbers", series_ids)

    def numbered_series(self) -> dict[str, int]:
        return self._call("numbered_series")

    def series_with_number(self, number: int) -> list[str]:
        return self._call("series_with_number", number)

    def new_episode_id(self) -> int:
        return self._call("new_episode_id")

    def put_episode(self, record: EpisodeRecord) -> None:
        self._call("put_episode", record)

    def get_episode(self, episode_id: int) -> EpisodeRecord | None:
        return self._call("get_episode", episode_id)

    def get_episodes(self, episode_ids: list[int]) -> dict[int, EpisodeRecord]:
        return self._call("get_episodes", episode_ids)

    def episodes(self) -> list[EpisodeRecord]:
        return self._call("episodes")

    def delete_episode(self, episode_id: int) -> None:
        self._call("delete_episode", episode_id)

    def put_frames(self, frames: list[tuple[int, int, float, float, float]]) -> None:
        self._call("put_frames", frames)

    def frame_ids(self, episode_id: int) -> list[int]:
        return self._call("frame_ids", episode_id)

    def delete_frames(self, episode_id: int) -> None:
        self._call("delete_frames", episode_id)

    def count_frames(self, episode_id: int | None = None) -> int:
        return self._call("count_frames", episode_id)

    def delete_frame_ids(self, ids: list[int]) -> None:
        self._call("delete_frame_ids", ids)

    def put_repeats(self, repeats: list[Repeat]) -> None:
        self._call("put_repeats", repeats)

    def repeats_held_by(self, holder: int) -> list[Repeat]:
        return self._call("repeats_held_by", holder)

    def repeats_of(self, episode_id: int) -> list[Repeat]:
        return self._call("repeats_of", episode_id)

    def repeats_touching(self, episode_ids: list[int]) -> list[Repeat]:
        return self._call("repeats_touching", episode_ids)

    def delete_repeats(self, episode_id: int) -> None:
        self._call("delete_repeats", episode_id)

    def clear(self) -> None:
        self._call("clear")


# What a process reads and writes the catalogue through: the host's (RemoteCatalogue), or one of its own (a web
# node's published catalogue, the host itself).
AnyCatalogue = Catalogue | RemoteCatalogue


class RemoteCounters:
    """The API counters (stores/counters.py's Counters), shared by every client of the host."""

    target = "counters"

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, name: str, amount: int, ttl_s: float, limit: int | None = None) -> tuple[bool, int]:
        admitted, value = self._connection.call(self.target, "add", name, amount, ttl_s, limit)
        return bool(admitted), int(value)

    def add_many(self, names: list[str], amount: int, ttl_s: list[float]) -> None:
        self._connection.call(self.target, "add_many", names, amount, ttl_s)

    def get(self, name: str) -> int:
        return int(self._connection.call(self.target, "get", name))

    def get_many(self, names: list[str]) -> list[int]:
        return [int(v) for v in self._connection.call(self.target, "get_many", names)]


def exposed_methods(client: type) -> frozenset[str]:
    """The public methods a typed client declares: exactly what the server lets clients call on its target."""
    return frozenset(
        name for name, member in vars(client).items() if inspect.isfunction(member) and not name.startswith("_")
    )


class Dispatcher:
    """The server side: routes a request to the owning object's method, if a typed client declares it."""

    def __init__(self, targets: dict[str, tuple[object, frozenset[str]]], hello: Callable[[], dict]) -> None:
        self._targets, self._hello = targets, hello

    def __call__(self, target: str, method: str, args: tuple, kwargs: dict) -> Any:
        if target == "host" and method == "hello":
            return self._hello()
        owner, allowed = self._targets.get(target, (None, frozenset()))
        if owner is None or method not in allowed:
            raise AnimeBackError(f"unknown store call {target}.{method}")
        result = getattr(owner, method)(*args, **kwargs)
        return list(result) if inspect.isgenerator(result) else result

    def answer(self, conn: Any) -> None:
        """Answer one client's requests until it disconnects."""
        while True:
            try:
                target, method, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return
            try:
                reply: tuple[str, Any] = ("ok", self(target, method, args, kwargs))
            except AnimeBackError as exc:
                reply = ("error", encode_error(exc))
            except Exception as exc:  # a store failure: reported to the caller as a domain error
                log.exception("store call %s.%s failed", target, method)
                reply = ("error", encode_error(AnimeBackError(f"store call {method} failed: {exc}")))
            try:
                conn.send(reply)
            except (EOFError, OSError):
                return


class StoreClient:
    """What a process gets from `connect()`: the remote catalogue and counters on one connection to the host."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.catalogue = RemoteCatalogue(connection)
        self.counters: CounterStore = RemoteCounters(connection)

    @property
    def host_pid(self) -> int:
        return int(self.connection.hello["pid"])

    @property
    def vectors_uri(self) -> str:
        """The host's Milvus Lite socket ("" when a Milvus server is configured)."""
        return str(self.connection.hello["vectors_uri"])

    def close(self) -> None:
        self.connection.close()
        closing = getattr(self.counters, "close", None)  # counters of their own (Redis): their connections too
        if closing is not None:
            closing()
