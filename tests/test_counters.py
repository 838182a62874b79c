"""The API counters, in the store host (the embedded default) and in a real Redis (several web nodes): one behaviour,
one set of tests for both; and what Redis going away does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from animeback.errors import StoreUnavailableError
from animeback.stores.counters import Counters, CounterStore
from animeback.stores.redis_counters import RedisCounters
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["in-host", "redis"])
def counters(request) -> Iterator[CounterStore]:
    if request.param == "in-host":
        yield Counters()
        return
    redis_server = request.getfixturevalue("redis_server")
    store = RedisCounters(redis_server.url)
    store._redis.flushdb()
    yield store
    store.close()


def test_a_limit_admits_up_to_it_and_a_refusal_adds_nothing(counters):
    assert [counters.add("quota/u", 1, 60, 3) for _ in range(4)] == [(True, 1), (True, 2), (True, 3), (False, 3)]
    assert counters.get("quota/u") == 3
    assert counters.add("quota/u", -1, 60, 3) == (True, 2)  # giving back is never refused
    assert counters.add("running/u", -1, 60) == (True, 0)  # nor goes below zero
    assert counters.add("quota/u", 1, 60, None) == (True, 3)


def test_a_counter_resets_its_ttl_after_its_first_use(counters):
    counters.add("rate/a", 5, 0.4)
    time.sleep(0.2)
    counters.add("rate/a", 1, 0.4)  # the ttl runs from the first use, not the last
    assert counters.get("rate/a") == 6
    time.sleep(0.35)
    assert counters.get("rate/a") == 0
    assert counters.add("rate/a", 1, 0.4, 1) == (True, 1)  # a fresh window


def test_many_at_once(counters):
    counters.add_many(["u/total", "u/200", "v/total"], 1, [60, 60, 60])
    counters.add_many(["u/total"], 1, [60])
    assert counters.get_many(["u/total", "u/200", "v/total", "never"]) == [2, 1, 1, 0]
    assert counters.get_many([]) == []


def test_a_limit_holds_under_concurrent_callers(counters):
    admitted = []

    def caller() -> None:
        for _ in range(25):
            admitted.append(counters.add("quota/shared", 1, 60, 40)[0])

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 40 and counters.get("quota/shared") == 40


def test_redis_going_away_is_a_503_and_its_return_is_used_by_itself(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    store = RedisCounters(server.url)
    try:
        assert store.add("quota/x", 1, 600, 10) == (True, 1)
        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="Redis"):
            store.add("quota/x", 1, 600, 10)
        with pytest.raises(StoreUnavailableError):
            store.get_many(["quota/x"])
        assert time.monotonic() - started < 10  # refused at once, not after a hang
        server.start()  # same port, same append-only file
        assert store.add("quota/x", 1, 600, 10) == (True, 2)  # reconnected, and the count was kept
    finally:
        store.close()
        server.stop()
