"""Counters shared by every web worker: daily quotas, per-minute rate windows and concurrency slots."""

from __future__ import annotations

import threading
import time
from typing import Protocol

MAX_ENTRIES = 100_000  # past this many names, expired entries are forgotten


class CounterStore(Protocol):
    """The counters' methods, wherever they live: the store host (embedded default) or Redis (several nodes)."""

    def add(self, name: str, amount: int, ttl_s: float, limit: int | None = None) -> tuple[bool, int]: ...

    def add_many(self, names: list[str], amount: int, ttl_s: list[float]) -> None: ...

    def get(self, name: str) -> int: ...

    def get_many(self, names: list[str]) -> list[int]: ...


class Counters:
    """Named counters that reset a fixed time after their first use; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, int]] = {}  # name -> (expiry time, value)

    def add(self, name: str, amount: int, ttl_s: float, limit: int | None = None) -> tuple[bool, int]:
        """Add amount to a counter that resets ttl_s after its first use, unless that would pass limit;
        returns (admitted, value after)."""
        now = time.time()
        with self._lock:
            expires, value = self._values.get(name, (0.0, 0))
            if expires <= now:
                expires, value = now + ttl_s, 0
            if limit is not None and amount > 0 and value + amount > limit:
                return False, value
            value = max(0, value + amount)
            self._values[name] = (expires, value)
            if len(self._values) > MAX_ENTRIES:
                self._values = {k: v for k, v in self._values.items() if v[0] > now}
            return True, value

    def add_many(self, names: list[str], amount: int, ttl_s: list[float]) -> None:
        """Add amount to several counters (no limit), each resetting its own ttl_s after its first use: one call."""
        for name, ttl in zip(names, ttl_s, strict=True):
            self.add(name, amount, ttl)

    def get(self, name: str) -> int:
        """A counter's current value (0 once it has expired)."""
        return self.get_many([name])[0]

    def get_many(self, names: list[str]) -> list[int]:
        """Several counters' current values, in one call (0 for those expired or never used)."""
        now = time.time()
        with self._lock:
            found = [self._values.get(name, (0.0, 0)) for name in names]
        return [value if expires > now else 0 for expires, value in found]
