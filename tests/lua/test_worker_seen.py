"""worker_seen.lua: a sighting of a worker in a queue: last-seen time and queues, in the queue's
``workers`` hash, which expires one window after the last write and sheds stale entries."""

from __future__ import annotations

from .helpers import LuaQueue


def test_a_sighting_records_the_time_and_the_queues(lua: LuaQueue) -> None:
    before = lua.now_ms()
    now = lua.worker_seen("host:1:abc", "a,b", window_ms=60_000)
    assert before <= now <= lua.now_ms()
    assert lua.workers() == {"host:1:abc": f"{now}|a,b"}
    assert 0 < lua.r.pttl(lua.keys.key("workers")) <= 60_000


def test_merging_adds_a_queue_once(lua: LuaQueue) -> None:
    lua.worker_seen("w", "a")
    now = lua.worker_seen("w", "b", merge=True)
    assert lua.workers() == {"w": f"{now}|a,b"}
    now = lua.worker_seen("w", "b", merge=True)
    assert lua.workers() == {"w": f"{now}|a,b"}, "a queue already known is not repeated"
    now = lua.worker_seen("w2", "a", merge=True)
    assert lua.workers()["w2"] == f"{now}|a", "nothing stored yet: the queue alone"


def test_without_merging_the_queues_are_replaced(lua: LuaQueue) -> None:
    lua.worker_seen("w", "a,b")
    now = lua.worker_seen("w", "c")
    assert lua.workers() == {"w": f"{now}|c"}


def test_each_write_restarts_the_expiry_of_the_whole_hash(lua: LuaQueue) -> None:
    lua.worker_seen("w1", "a", window_ms=60_000)
    lua.r.pexpire(lua.keys.key("workers"), 10)
    lua.worker_seen("w2", "a", window_ms=60_000)
    assert lua.r.pttl(lua.keys.key("workers")) > 30_000
    assert set(lua.workers()) == {"w1", "w2"}


def test_stale_and_malformed_entries_in_the_sample_are_dropped(lua: LuaQueue) -> None:
    stale = lua.now_ms() - 120_000
    lua.r.hset(lua.keys.key("workers"), mapping={"old": f"{stale}|a", "junk": "no time"})
    now = lua.worker_seen("w", "a", window_ms=60_000)
    assert lua.workers() == {"w": f"{now}|a"}, "with three entries the sample holds them all"
