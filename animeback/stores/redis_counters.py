"""The API counters in Redis (stores.redis_url): the same counters as stores/counters.py's, shared by every
worker of every web node, so a quota or a rate limit holds however many nodes answer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StoreUnavailableError

KEY_PREFIX = "animeback:"
TIMEOUT_S = 2.0  # a Redis that does not answer in this time is down: the request gets a 503, not a hang

# Atomic add with an optional limit: KEYS[1] the counter; ARGV amount, ttl in ms, limit (-1: none). A counter that
# has expired (Redis removed it) starts again at 0 with a fresh ttl, like Counters.add. Returns {admitted, value}.
_ADD = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if limit >= 0 and amount > 0 and value + amount > limit then
  return {0, value}
end
value = math.max(0, value + amount)
if redis.call('PTTL', KEYS[1]) > 0 then
  redis.call('SET', KEYS[1], value, 'KEEPTTL')
else
  redis.call('SET', KEYS[1], value, 'PX', ttl)
end
return {1, value}
"""

T = TypeVar("T")


def _answered(method: Callable[..., T]) -> Callable[..., T]:
    """Turn Redis being unreachable (refused, timed out, restarting) into a StoreUnavailableError (503)."""

    @functools.wraps(method)
    def call(self: RedisCounters, *args: Any) -> T:
        import redis

        try:
            return method(self, *args)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            raise StoreUnavailableError(f"the counters' Redis did not answer ({type(exc).__name__})") from None

    return call


class RedisCounters:
    """Named counters that reset a fixed time after their first use, in Redis (Counters' methods)."""

    def __init__(self, url: str) -> None:
        import redis

        # Connections are made on first use and again after a failure: a restarted Redis is used again by itself.
        self._redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S, health_check_interval=30
        )
        self._add = self._redis.register_script(_ADD)  # EVALSHA, loaded again after a Redis restart

    @_answered
    def add(self, name: str, amount: int, ttl_s: float, limit: int | None = None) -> tuple[bool, int]:
        """Add amount to a counter that resets ttl_s after its first use, unless that would pass limit;
        returns (admitted, value after)."""
        admitted, value = self._add(
            keys=[KEY_PREFIX + name], args=[amount, max(1, round(ttl_s * 1000)), -1 if limit is None else limit]
        )
        return bool(admitted), int(value)

    @_answered
    def add_many(self, names: list[str], amount: int, ttl_s: list[float]) -> None:
        """Add amount to several counters (no limit), each resetting its own ttl_s after its first use: one trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for name, ttl in zip(names, ttl_s, strict=True):
                self._add(keys=[KEY_PREFIX + name], args=[amount, max(1, round(ttl * 1000)), -1], client=pipe)
            pipe.execute()

    def get(self, name: str) -> int:
        """A counter's current value (0 once it has expired)."""
        return self.get_many([name])[0]

    @_answered
    def get_many(self, names: list[str]) -> list[int]:
        """Several counters' current values, in one trip (0 for those expired or never used)."""
        if not names:
            return []
        return [int(v or 0) for v in self._redis.mget([KEY_PREFIX + n for n in names])]

    def close(self) -> None:
        self._redis.close()
