"""promote_due.lua: delayed jobs whose time has come become waiting, a bounded batch per call."""

from __future__ import annotations

import time

from .helpers import JobSpec, LuaQueue, handled_next, ids


def test_due_jobs_become_waiting_and_the_next_due_time_is_returned(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="soon", delay_ms=30))
    lua.add(JobSpec(id="later", delay_ms=60_000))
    time.sleep(0.06)
    last = lua.last_event_id()

    before = lua.now_ms()
    done = lua.promote_due()
    after = lua.now_ms()

    assert done.handled == 1
    assert done.next_due == int(lua.job("later")["ra"])
    assert before <= done.now <= after
    assert lua.where("soon") == ["waiting"]
    assert "ra" not in lua.job("soon")
    assert lua.where("later") == ["delayed"]
    assert [(e.type, e.job) for e in lua.events(after=last)] == [("waiting", "soon")]


def test_nothing_due(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="later", delay_ms=60_000))
    done = lua.promote_due()
    assert done.handled == 0
    assert done.next_due == int(lua.job("later")["ra"])


def test_empty_queue_reports_no_next_due_time(lua: LuaQueue) -> None:
    assert handled_next(lua.promote_due()) == (0, -1)


def test_batch_size_bounds_the_work_and_oldest_due_go_first(lua: LuaQueue) -> None:
    for n in range(5):
        lua.add(JobSpec(id=f"d{n}", delay_ms=20 + n))
    time.sleep(0.06)
    first = lua.promote_due(batch=2)
    assert first.handled == 2
    assert first.next_due == int(lua.job("d2")["ra"]), "the next due time is already past"
    assert lua.promote_due(batch=2).handled == 2
    assert handled_next(lua.promote_due(batch=2)) == (1, -1)
    assert ids(lua.lease(max_jobs=10)) == ["d0", "d1", "d2", "d3", "d4"]


def test_promoted_jobs_keep_their_priority(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="low", priority=5))
    lua.add(JobSpec(id="high", priority=1, delay_ms=20))
    lua.add(JobSpec(id="plain", delay_ms=20))
    time.sleep(0.05)
    lua.promote_due()
    assert ids(lua.lease(max_jobs=3)) == ["plain", "high", "low"]
