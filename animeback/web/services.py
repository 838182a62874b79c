"""What the web layer works with, created once per worker process: the index, searcher, signer, limits."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from flask import current_app

from ..config import Settings
from ..errors import InvalidKeyError, QuotaError, RateLimitError, SearchQueueFullError
from .previews import PreviewSigner

log = logging.getLogger(__name__)

UNLIMITED = 2**31 - 1  # what /me reports for a limit that is off


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key's user, or an anonymous address."""

    id: str
    priority: int
    concurrency: int  # 0: unlimited
    quota: int  # per day; 0: unlimited


class Services:
    """Lazily opened (the first request, or the warm-up thread, loads the model) and shared by requests."""

    def __init__(self, settings: Settings, index=None):
        self.settings = settings
        self.signer = PreviewSigner.from_settings(settings)
        self._lock = threading.Lock()
        self._index = index
        self._searcher = None
        self._stills = None
        self._queue = threading.BoundedSemaphore(settings.server.max_search_queue)

    @property
    def index(self):
        """The opened Index (model, catalogue, vectors)."""
        with self._lock:
            if self._index is None:
                from ..index import Index

                started = time.monotonic()
                self._index = Index(self.settings)
                log.info("index opened and model loaded in %.1f s", time.monotonic() - started)
            return self._index

    @property
    def searcher(self):
        index = self.index
        with self._lock:
            if self._searcher is None:
                from ..query.search import Searcher

                self._searcher = Searcher(index)
            return self._searcher

    @property
    def stills(self):
        """The /match image collection."""
        index = self.index
        with self._lock:
            if self._stills is None:
                from ..query.stills import StillStore

                self._stills = StillStore(index)
            return self._stills

    def counters(self, name: str, *args):
        return self.index.host.call("counters", name, *args)

    @contextlib.contextmanager
    def search_slot(self, caller: Caller):
        """Admit one search: this worker's queue, then the caller's quota and concurrency (shared by workers)."""
        if not self._queue.acquire(blocking=False):
            raise SearchQueueFullError("Search queue is full; try again in a moment")
        try:
            day = time.strftime("%Y-%m-%d", time.gmtime())
            admitted, _ = self.counters("add", f"quota/{day}/{caller.id}", 1, 86400.0, caller.quota or None)
            if not admitted:
                raise QuotaError("Search quota depleted")
            admitted, _ = self.counters("add", f"running/{caller.id}", 1, 600.0, caller.concurrency or None)
            if not admitted:
                self.counters("add", f"quota/{day}/{caller.id}", -1, 86400.0)
                raise QuotaError("Concurrency limit exceeded")
            try:
                yield
            finally:
                self.counters("add", f"running/{caller.id}", -1, 600.0)
        finally:
            self._queue.release()

    def quota_used(self, caller: Caller) -> int:
        return self.counters("get", f"quota/{time.strftime('%Y-%m-%d', time.gmtime())}/{caller.id}")

    def identify(self, key: str | None, address: str) -> Caller:
        """The caller behind a request (403 for an unknown key; 429 past the anonymous rate limit)."""
        api = self.settings.api
        if key:
            spec = api.keys.get(key)
            if spec is None:
                raise InvalidKeyError("Invalid API key")
            return Caller(spec.get("id", key[:8]), spec.get("priority", 1), spec.get("concurrency", 0),
                          spec.get("quota", 0))
        if api.rate_limit_per_minute:
            admitted, _ = self.counters("add", f"rate/{address}", 1, 60.0, api.rate_limit_per_minute)
            if not admitted:
                raise RateLimitError("Too many requests, please slow down")
        return Caller(address, 0, api.anonymous_concurrency, api.anonymous_quota)


def http_error_message(exc) -> str:
    """The message of an HTTP error (werkzeug's), in the API's words."""
    return "Your image is too large" if exc.code == 413 else exc.description or exc.name


def services() -> Services:
    """The Services of the running app."""
    return current_app.extensions["animeback"]
