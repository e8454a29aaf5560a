"""release.lua: give a lease back without spending an attempt, to the front of its priority."""

from __future__ import annotations

import time

from .helpers import JobSpec, LuaQueue, ids


def test_release_puts_the_job_back_at_the_front_of_its_priority(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="a", priority=2))
    lua.add(JobSpec(id="b", priority=2))
    a = lua.lease_one()
    lua.add(JobSpec(id="urgent", priority=1))
    lua.add(JobSpec(id="c", priority=2, lifo=True))

    assert lua.release("a", a.token) == ("", "waiting")
    job = lua.job("a")
    assert job["st"] == "waiting"
    assert "le" not in job
    assert lua.where("a") == ["waiting"]
    assert ids(lua.lease(max_jobs=10)) == ["urgent", "a", "c", "b"]


def test_release_does_not_spend_an_attempt(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=2))
    first = lua.lease_one()
    lua.release("j", first.token)
    second = lua.lease_one()
    assert (second.attempt, second.fence) == (1, 2)
    assert "am" not in lua.job("j")


def test_release_emits_released(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(worker="w3")
    lua.release("j", leased.token)
    released = lua.events("j")[-1]
    assert released.type == "released"
    assert released.fields == {"s": "waiting", "f": "1", "w": "w3"}


def test_release_with_a_delay_makes_the_job_delayed(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", timeout_ms=60_000))
    leased = lua.lease_one()
    before = lua.now_ms()
    assert lua.release("j", leased.token, delay_ms=2000) == ("", "delayed")
    after = lua.now_ms()

    job = lua.job("j")
    assert job["st"] == "delayed"
    assert before + 2000 <= int(job["ra"]) <= after + 2000
    assert "to" not in job
    assert lua.where("j") == ["delayed"]
    assert lua.score("delayed", "j") == int(job["ra"])
    released = lua.events("j")[-1]
    assert released.type == "released"
    assert released.fields["s"] == "delayed"
    assert released.fields["ra"] == job["ra"]


def test_release_with_a_stale_token_changes_nothing(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    old = lua.lease_one()
    lua.release("j", old.token)
    new = lua.lease_one()
    last = lua.last_event_id()
    assert lua.release("j", old.token) == ("LEASE_SUPERSEDED", "active")
    assert lua.release("nope", old.token) == ("JOB_NOT_FOUND", "")
    assert lua.where("j") == ["active"]
    assert lua.score("active", "j") == new.lease_expires_at
    assert lua.events(after=last) == []


def test_release_after_the_lease_deadline_is_rejected(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(lease_ms=50)
    time.sleep(0.1)
    assert lua.release("j", leased.token) == ("LEASE_EXPIRED", "active")


def test_release_of_a_cancel_requested_job_ends_it_cancelled(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    lua.cancel("j")
    assert lua.release("j", leased.token, delay_ms=1000) == ("", "cancelled")
    assert lua.where("j") == ["cancelled"]
    assert lua.event_types("j")[-1] == "cancelled"


def test_several_jobs_in_one_call(lua: LuaQueue) -> None:
    for job_id in ("a", "b", "c"):
        lua.add(JobSpec(id=job_id))
    a, _, c = lua.lease(max_jobs=3)
    out = lua.release_many(("a", a.token, 0), ("b", "7-x", 0), ("c", c.token, 500))
    assert out == [("", "waiting"), ("INVALID_FIELD", "active"), ("", "delayed")]
    assert lua.where("b") == ["active"]
