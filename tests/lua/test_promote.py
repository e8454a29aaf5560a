"""promote.lua: a delayed job becomes waiting now."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue, ids


def test_promote_makes_a_delayed_job_waiting_at_the_back_of_its_priority(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="later", delay_ms=60_000))
    lua.add(JobSpec(id="now"))
    last = lua.last_event_id()

    assert lua.promote("later") == ("", "waiting")
    job = lua.job("later")
    assert job["st"] == "waiting"
    assert "ra" not in job
    assert lua.where("later") == ["waiting"]
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [
        ("waiting", "later", {"s": "waiting"})
    ]
    assert ids(lua.lease(max_jobs=2)) == ["now", "later"]


def test_promoted_job_keeps_its_priority(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="low", priority=9))
    lua.add(JobSpec(id="high", priority=1, delay_ms=60_000))
    lua.promote("high")
    assert ids(lua.lease(max_jobs=2)) == ["high", "low"]


def test_promote_of_a_job_that_is_not_delayed(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    assert lua.promote("j") == ("JOB_NOT_DELAYED", "waiting")
    lua.lease_one()
    assert lua.promote("j") == ("JOB_NOT_DELAYED", "active")
    assert lua.where("j") == ["active"]


def test_promote_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.promote("nope") == ("JOB_NOT_FOUND", "")
