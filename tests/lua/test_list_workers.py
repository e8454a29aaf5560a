"""list_workers.lua: the workers seen within the window, with how many active jobs each holds;
stale entries are deleted on the way, a bounded number per call."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue


def test_live_workers_are_listed_with_their_active_jobs(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"j{i}") for i in range(4)))
    lua.lease(max_jobs=2, worker="w1")
    lua.lease(max_jobs=1, worker="w2")
    lua.lease(max_jobs=1, worker="unlisted")  # holds a lease, never seen
    seen1 = lua.worker_seen("w1", "a,b")
    seen2 = lua.worker_seen("w2", "a")
    seen3 = lua.worker_seen("idle", "a")

    assert lua.list_workers() == [
        ("idle", seen3, "a", 0),
        ("w1", seen1, "a,b", 2),
        ("w2", seen2, "a", 1),
    ]


def test_finished_jobs_are_not_counted(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(worker="w1")
    seen = lua.worker_seen("w1", "a")
    lua.complete("j", leased.token)
    assert lua.list_workers() == [("w1", seen, "a", 0)]


def test_at_most_the_given_number_of_active_jobs_is_read(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"j{i}") for i in range(3)))
    lua.lease(max_jobs=3, worker="w1")
    seen = lua.worker_seen("w1", "a")
    assert lua.list_workers(max_active=2) == [("w1", seen, "a", 2)]


def test_stale_entries_are_not_listed_and_are_deleted_up_to_the_limit(lua: LuaQueue) -> None:
    seen = lua.worker_seen("live", "a")
    stale = lua.now_ms() - 120_000
    lua.r.hset(
        lua.keys.key("workers"),
        mapping={"s1": f"{stale}|a", "s2": f"{stale}|a", "s3": "junk"},
    )
    assert lua.list_workers(window_ms=60_000, max_prune=2) == [("live", seen, "a", 0)]
    assert len(lua.workers()) == 2, "two of the three stale entries deleted"
    assert lua.list_workers(window_ms=60_000, max_prune=2) == [("live", seen, "a", 0)]
    assert lua.workers() == {"live": f"{seen}|a"}


def test_a_queue_without_workers(lua: LuaQueue) -> None:
    assert lua.list_workers() == []
    assert lua.workers() == {}
