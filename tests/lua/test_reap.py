"""reap.lua: leases past their deadline end: stalled, timed out, or cancelled."""

from __future__ import annotations

import time

from .helpers import STALLED, TIMEOUT, JobSpec, LuaQueue, Update, handled_next, ids


def stall(lua: LuaQueue, job_id: str = "j", lease_ms: int = 50) -> str:
    """Lease ``job_id`` briefly and let the lease run out; the dead lease's token."""
    leased = lua.lease_one(lease_ms=lease_ms)
    assert leased.id == job_id
    time.sleep(lease_ms / 1000 + 0.05)
    return leased.token


def test_stalled_job_goes_back_to_the_front_of_waiting(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=3))
    token = stall(lua)
    lua.add(JobSpec(id="newer"))
    last = lua.last_event_id()

    before = lua.now_ms()
    done = lua.reap(max_stalled=1)
    after = lua.now_ms()

    assert (done.handled, done.next_due) == (1, -1)
    assert before <= done.now <= after
    job = lua.job("j")
    assert job["st"] == "waiting"
    assert job["sc"] == "1"
    assert "am" not in job, "a stall does not spend an attempt"
    assert "le" not in job
    assert lua.where("j") == ["waiting"]
    (stalled,) = lua.events(after=last)
    assert (stalled.type, stalled.job) == ("stalled", "j")
    assert stalled.fields == {"s": "waiting", "a": "1", "f": "1", "w": "w1"}

    assert lua.complete("j", token) == ("LEASE_EXPIRED", "waiting")
    again = lua.lease_one()
    assert (again.id, again.attempt, again.fence) == ("j", 1, 2)
    assert ids(lua.lease()) == ["newer"]


def test_job_stalled_more_than_max_stalled_fails_for_good(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=5))
    stall(lua)
    assert lua.reap(max_stalled=1).handled == 1
    assert lua.state("j") == "waiting"
    stall(lua)
    last = lua.last_event_id()
    assert lua.reap(max_stalled=1).handled == 1

    job = lua.job("j")
    assert job["st"] == "failed"
    assert job["sc"] == "2"
    assert job["fr"] == STALLED
    assert job["fm"] == "job stalled more than 1 time(s)"
    assert job["am"] == "1"
    assert lua.where("j") == ["failed"]
    events = lua.events(after=last)
    assert [e.type for e in events] == ["stalled", "failed", "retries-exhausted"]
    assert events[0].fields == {"s": "failed", "a": "1", "f": "2", "w": "w1"}
    assert events[1].fields["fr"] == STALLED


def test_max_stalled_zero_fails_at_the_first_stall(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    stall(lua)
    lua.reap(max_stalled=0)
    assert lua.job("j")["fr"] == STALLED
    assert lua.where("j") == ["failed"]


def test_timed_out_attempt_is_retried(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=2, timeout_ms=50))
    leased = lua.lease_one(lease_ms=30_000)
    assert leased.lease_expires_at == leased.timeout_at
    time.sleep(0.1)
    last = lua.last_event_id()
    assert lua.reap().handled == 1

    job = lua.job("j")
    assert job["st"] == "waiting"
    assert job["am"] == "1"
    assert job["fr"] == TIMEOUT
    assert job["fm"] == "attempt timed out after 50 ms"
    assert "sc" not in job, "a timeout is not a stall"
    assert [e.type for e in lua.events(after=last)] == ["failed", "waiting"]
    assert lua.lease_one().attempt == 2


def test_timed_out_last_attempt_fails_the_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", timeout_ms=50))
    lua.lease_one(lease_ms=30_000)
    time.sleep(0.1)
    lua.reap()
    job = lua.job("j")
    assert (job["st"], job["fr"], job["fat"]) == ("failed", TIMEOUT, "1")
    assert lua.where("j") == ["failed"]
    assert lua.event_types("j")[-2:] == ["failed", "retries-exhausted"]


def test_renewals_cannot_outlive_the_attempt_timeout(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", timeout_ms=300))
    leased = lua.lease_one(lease_ms=30_000)
    time.sleep(0.05)
    assert lua.report(Update("j", leased.token, lease_ms=30_000)) == [("", leased.timeout_at)]
    time.sleep(0.3)
    assert lua.report(Update("j", leased.token)) == [("LEASE_EXPIRED", "active")]
    lua.reap()
    assert lua.job("j")["fr"] == TIMEOUT


def test_cancel_requested_job_ends_cancelled(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=3, timeout_ms=50))
    lua.lease_one(lease_ms=50)
    lua.cancel("j")
    time.sleep(0.1)
    lua.reap()
    assert lua.state("j") == "cancelled"
    assert lua.where("j") == ["cancelled"]
    assert "fr" not in lua.job("j")
    assert lua.event_types("j")[-1] == "cancelled"


def test_live_leases_are_left_alone(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="short"))
    lua.add(JobSpec(id="long"))
    lua.lease_one(lease_ms=50)
    long = lua.lease_one(lease_ms=60_000)
    time.sleep(0.1)
    done = lua.reap()
    assert done.handled == 1
    assert done.next_due == long.lease_expires_at
    assert lua.where("long") == ["active"]
    assert lua.state("long") == "active"


def test_batch_size_bounds_the_work(lua: LuaQueue) -> None:
    for n in range(3):
        lua.add(JobSpec(id=f"j{n}"))
    lua.lease(max_jobs=3, lease_ms=50)
    time.sleep(0.1)
    assert lua.reap(batch=2).handled == 2
    assert handled_next(lua.reap(batch=2)) == (1, -1)
    assert lua.members("waiting") != []
    assert lua.members("active") == []


def test_stale_active_entry_of_a_job_no_longer_active_is_dropped(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    lua.r.zadd(lua.keys.key("active"), {"j": 1, "ghost": 1})
    assert handled_next(lua.reap()) == (2, -1)
    assert lua.where("j") == ["waiting"]
    assert lua.state("j") == "waiting"
    assert lua.event_types("j") == ["added"]
