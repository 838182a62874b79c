"""What the web layer works with, created once per worker process: the index, searcher, signer, limits."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from flask import current_app, g, request
from werkzeug.exceptions import HTTPException

from ..config import Settings, updated
from ..errors import (
    AnimeBackError,
    BadRequestError,
    InvalidKeyError,
    QuotaError,
    RateLimitError,
    SearchQueueFullError,
    WriteForbiddenError,
)
from ..index import Index
from ..query.search import Searcher
from ..query.stills import StillStore
from ..stores.counters import CounterStore
from ..stores.host import Stores, connect
from .previews import PreviewCache, PreviewSigner

log = logging.getLogger(__name__)

UNLIMITED = 2**31 - 1  # what /me reports for a limit that is off
# /me?period=: the searches of the past 60 minutes, 72 hours or 60 days, per slot (trace.moe's periods).
USAGE_PERIODS = {"minute": (60, 60), "hour": (3600, 72), "day": (86400, 60)}  # name: (slot seconds, slots)


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key's user, or an anonymous address."""

    id: str
    priority: int
    concurrency: int  # 0: unlimited
    quota: int  # per day; 0: unlimited
    admin: bool = False  # may write (/match/add, /match/delete)


class Services:
    """Lazily opened (the first request, or the warm-up thread, loads the model) and shared by requests."""

    def __init__(self, settings: Settings, index: Index | None = None):
        self.settings = settings
        self.signer = PreviewSigner.from_settings(settings)
        self.preview_cache = PreviewCache.from_settings(settings)
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._index = index
        self._store: Stores | None = index.store if index is not None else None
        self._searcher: Searcher | None = None
        self._stills: StillStore | None = None
        self._queue = threading.BoundedSemaphore(settings.server.max_search_queue)

    @property
    def store(self) -> Stores:
        """The stores (the store host, or a web node's shared ones): catalogue and counters, without the model."""
        with self._store_lock:
            if self._store is None:
                self._store = connect(self.settings)
            return self._store

    @property
    def counters(self) -> CounterStore:
        """The API counters shared by every worker (quota, rate limit, concurrency)."""
        return self.store.counters

    @property
    def index(self) -> Index:
        """The opened Index (model, catalogue, vectors)."""
        store = self.store
        with self._lock:
            if self._index is None:
                started = time.monotonic()
                # A worker's CNN has its own thread count: other workers serve searches on the other cores.
                serving = updated(self.settings, features={"threads": self.settings.server.cnn_threads})
                self._index = Index(serving, store=store)
                log.info("index opened and model loaded in %.1f s", time.monotonic() - started)
            return self._index

    @property
    def searcher(self) -> Searcher:
        index = self.index
        with self._lock:
            if self._searcher is None:
                self._searcher = Searcher(index)
            return self._searcher

    @property
    def stills(self) -> StillStore:
        """The /match image collection."""
        index = self.index
        with self._lock:
            if self._stills is None:
                self._stills = StillStore(index)
            return self._stills

    @contextlib.contextmanager
    def search_slot(self, caller: Caller):
        """Admit one search: this worker's queue, then the caller's quota and concurrency (shared by workers)."""
        if not self._queue.acquire(blocking=False):
            raise SearchQueueFullError("Search queue is full; try again in a moment")
        try:
            day = time.strftime("%Y-%m-%d", time.gmtime())
            counters = self.counters
            admitted, _ = counters.add(f"quota/{day}/{caller.id}", 1, 86400.0, caller.quota or None)
            if not admitted:
                raise QuotaError("Search quota depleted")
            admitted, _ = counters.add(f"running/{caller.id}", 1, 600.0, caller.concurrency or None)
            if not admitted:
                counters.add(f"quota/{day}/{caller.id}", -1, 86400.0)
                raise QuotaError("Concurrency limit exceeded")
            try:
                yield
            finally:
                counters.add(f"running/{caller.id}", -1, 600.0)
        finally:
            self._queue.release()

    def record_usage(self, caller: Caller, status: int) -> None:
        """Count a search's answer (by HTTP status) in the caller's current slot of every /me period."""
        now = int(time.time())
        names, ttls = [], []
        for period, (slot, slots) in USAGE_PERIODS.items():
            for name in ("total", str(status)):
                names.append(f"usage/{period}/{now - now % slot}/{caller.id}/{name}")
                ttls.append(float(slot * (slots + 1)))
        self.counters.add_many(names, 1, ttls)  # one call to the store host per search

    def usage(self, caller: Caller, period: str, statuses: tuple[int, ...]) -> list[dict]:
        """The caller's searches per slot of a period, oldest first, slots without searches left out: {time (ISO
        8601, UTC), total, and a count per HTTP status}."""
        slot, slots = USAGE_PERIODS[period]
        now = int(time.time())
        starts = [now - now % slot - slot * k for k in range(slots - 1, -1, -1)]
        prefix = f"usage/{period}/{{}}/{caller.id}/"
        totals = self.counters.get_many([prefix.format(start) + "total" for start in starts])
        used = [(start, total) for start, total in zip(starts, totals, strict=True) if total]
        counts = iter(self.counters.get_many([prefix.format(start) + str(c) for start, _ in used for c in statuses]))
        history = []
        for start, total in used:
            row: dict = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)), "total": total}
            row.update({str(code): count for code in statuses if (count := next(counts))})
            history.append(row)
        return history

    def quota_used(self, caller: Caller) -> int:
        return self.counters.get(f"quota/{time.strftime('%Y-%m-%d', time.gmtime())}/{caller.id}")

    def check_writer(self, caller: Caller, address: str) -> None:
        """Admit a write: an admin key's caller, or, while no admin key is configured, a caller on this machine."""
        if caller.admin:
            return
        if any(spec.get("admin") for spec in self.settings.api.keys.values()):
            raise WriteForbiddenError("Writing needs an admin API key (x-trace-key)")
        if not _is_loopback(address):
            raise WriteForbiddenError(
                'Writing is allowed only from this machine until an admin API key is configured (api.keys, "admin": true)'
            )

    def identify(self, key: str | None, address: str) -> Caller:
        """The caller behind a request (403 for an unknown key; 429 past the anonymous rate limit)."""
        api = self.settings.api
        if key:
            spec = api.keys.get(key)
            if spec is None:
                raise InvalidKeyError("Invalid API key")
            return Caller(
                spec.get("id", key[:8]),
                spec.get("priority", 1),
                spec.get("concurrency", 0),
                spec.get("quota", 0),
                bool(spec.get("admin", False)),
            )
        if api.rate_limit_per_minute:
            admitted, _ = self.counters.add(f"rate/{address}", 1, 60.0, api.rate_limit_per_minute)
            if not admitted:
                raise RateLimitError("Too many requests, please slow down")
        return Caller(address, 0, api.anonymous_concurrency, api.anonymous_quota)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def reading_body() -> Iterator[None]:
    """Turn a failure to read the request's body (a malformed chunked encoding, a connection cut short) into a 400:
    the server behind Flask raises its own exception types for these, which would otherwise be a 500."""
    try:
        yield
    except (AnimeBackError, HTTPException):
        raise
    except Exception as exc:
        raise BadRequestError(f"the request body could not be read ({type(exc).__name__})") from None


def current_caller() -> Caller:
    """The caller of the request being answered: its API key (x-trace-key header or key=), else its address.
    Identified once per request, so the rate limit counts a request once however many parts ask."""
    if "caller" not in g:
        key = request.headers.get("x-trace-key") or request.args.get("key")
        g.caller = services().identify(key, request.remote_addr or "unknown")
    return g.caller


def http_error_message(exc) -> str:
    """The message of an HTTP error (werkzeug's), in the API's words."""
    return "Your image is too large" if exc.code == 413 else exc.description or exc.name


def services() -> Services:
    """The Services of the running app."""
    return current_app.extensions["animeback"]
