"""promote_delayed.lua: delayed jobs become waiting now, earliest run-at first, a bounded batch
per call."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue, ids


def test_promote_delayed_makes_every_delayed_job_waiting(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="late", delay_ms=120_000))
    lua.add(JobSpec(id="soon", delay_ms=60_000))
    lua.add(JobSpec(id="now"))
    last = lua.last_event_id()

    assert lua.promote_delayed() == 2
    for job_id in ("late", "soon"):
        job = lua.job(job_id)
        assert job["st"] == "waiting"
        assert "ra" not in job
        assert lua.where(job_id) == ["waiting"]
    assert lua.members("delayed") == []
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [
        ("waiting", "soon", {"s": "waiting"}),
        ("waiting", "late", {"s": "waiting"}),
    ]
    assert ids(lua.lease(max_jobs=3)) == ["now", "soon", "late"]


def test_promoted_jobs_keep_their_priority_and_lifespan(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="low", priority=9))
    lua.add(JobSpec(id="high", priority=1, delay_ms=60_000, lifespan_ms=120_000))
    deadline = lua.score("expiring", "high")

    assert lua.promote_delayed() == 1
    assert lua.score("expiring", "high") == deadline, "the lifespan still bounds the start"
    assert ids(lua.lease(max_jobs=2)) == ["high", "low"]


def test_promote_delayed_is_bounded(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"d{i}", delay_ms=60_000 + i) for i in range(3)))
    assert lua.promote_delayed(batch=2) == 2
    assert lua.members("delayed") == ["d2"]
    assert lua.promote_delayed(batch=2) == 1
    assert lua.promote_delayed(batch=2) == 0
    assert lua.members("waiting") == ["d0", "d1", "d2"]


def test_promote_delayed_of_a_queue_without_delayed_jobs(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    last = lua.last_event_id()
    assert lua.promote_delayed() == 0
    assert lua.events(after=last) == []
    assert lua.where("j") == ["waiting"]
