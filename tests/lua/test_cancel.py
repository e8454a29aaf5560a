"""cancel.lua: waiting/delayed jobs end at once; active ones are flagged for their worker."""

from __future__ import annotations

import time

from .helpers import JobSpec, LuaQueue


def test_cancel_of_a_waiting_job_ends_it_at_once(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", lifespan_ms=60_000))
    before = lua.now_ms()
    assert lua.cancel("j", "user asked") == ("", "cancelled")
    after = lua.now_ms()

    job = lua.job("j")
    assert job["st"] == "cancelled"
    assert job["crr"] == "user asked"
    assert before <= int(job["fa"]) <= after
    assert lua.where("j") == ["cancelled"], "also gone from expiring"
    assert lua.score("cancelled", "j") == int(job["fa"])
    cancelled = lua.events("j")[-1]
    assert cancelled.type == "cancelled"
    assert cancelled.fields == {"s": "cancelled", "f": "0", "w": ""}
    assert lua.lease() == []


def test_cancel_of_a_delayed_job_ends_it_at_once(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", delay_ms=60_000))
    assert lua.cancel("j") == ("", "cancelled")
    assert lua.where("j") == ["cancelled"]
    assert "ra" not in lua.job("j")
    assert lua.promote_due().handled == 0


def test_cancel_of_an_active_job_flags_it_and_tells_its_worker_once(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(worker="w5")
    assert lua.cancel("j", "too slow") == ("", "active")

    job = lua.job("j")
    assert job["st"] == "active"
    assert (job["cr"], job["crr"]) == ("1", "too slow")
    assert lua.where("j") == ["active"]
    requested = lua.events("j")[-1]
    assert requested.type == "cancel-requested"
    assert requested.fields == {"s": "active", "f": str(leased.fence), "w": "w5"}

    last = lua.last_event_id()
    assert lua.cancel("j", "again") == ("", "active")
    assert lua.events(after=last) == []
    assert lua.job("j")["crr"] == "too slow"


def test_cancelled_active_job_ends_cancelled_when_its_lease_ends(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=3))
    lua.lease_one(lease_ms=50)
    lua.cancel("j")
    time.sleep(0.1)
    assert lua.reap().handled == 1
    assert lua.where("j") == ["cancelled"]
    assert lua.state("j") == "cancelled"


def test_cancel_of_a_finished_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    lua.complete("j", leased.token)
    last = lua.last_event_id()
    assert lua.cancel("j") == ("JOB_FINISHED", "completed")
    assert lua.state("j") == "completed"
    assert lua.events(after=last) == []

    lua.add(JobSpec(id="k"))
    lua.cancel("k")
    assert lua.cancel("k") == ("JOB_FINISHED", "cancelled")


def test_cancel_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.cancel("nope") == ("JOB_NOT_FOUND", "")
    assert lua.events() == []
