"""retry.lua: a failed or cancelled job goes back to waiting with a fresh set of attempts."""

from __future__ import annotations

import time

from .helpers import JobSpec, LuaQueue, ids


def failed_job(lua: LuaQueue) -> None:
    """Job "j" failed for good after two attempts."""
    lua.add(JobSpec(id="j", attempts=2, timeout_ms=1000))
    for _ in range(2):
        leased = lua.lease_one()
        lua.fail("j", leased.token, "boom")
    assert lua.state("j") == "failed"


def test_retry_of_a_failed_job(lua: LuaQueue) -> None:
    failed_job(lua)
    last = lua.last_event_id()
    assert lua.retry("j") == ("", "waiting")

    job = lua.job("j")
    assert job["st"] == "waiting"
    assert (job["am"], job["sc"]) == ("0", "0")
    for gone in ("fa", "fr", "fm", "fty", "fsk", "fat", "sa", "w", "res"):
        assert gone not in job, gone
    assert (job["atm"], job["tmo"]) == ("2", "1000"), "options are kept"
    assert lua.where("j") == ["waiting"]
    assert [(e.type, e.job) for e in lua.events(after=last)] == [("waiting", "j")]

    again = lua.lease_one()
    assert (again.attempt, again.max_attempts) == (1, 2)
    assert again.fence == 3, "fences keep growing across retries"


def test_retry_of_a_cancelled_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    lua.add(JobSpec(id="other"))
    leased = lua.lease_one()
    lua.cancel("j", "oops")
    lua.complete("j", leased.token)
    assert lua.state("j") == "cancelled"

    assert lua.retry("j") == ("", "waiting")
    job = lua.job("j")
    assert "cr" not in job
    assert "crr" not in job
    assert lua.where("j") == ["waiting"]
    leased_other, again = lua.lease(max_jobs=2)
    assert (leased_other.id, again.id) == ("other", "j"), "a retried job joins the back"
    assert lua.complete("j", again.token) == ("", "completed")


def test_retry_restarts_the_lifespan(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", lifespan_ms=100))
    leased = lua.lease_one()
    lua.fail("j", leased.token)
    time.sleep(0.15)

    before = lua.now_ms()
    assert lua.retry("j") == ("", "waiting")
    after = lua.now_ms()
    created = int(lua.job("j")["ct"])
    assert before <= created <= after
    assert lua.score("expiring", "j") == created + 100
    assert ids(lua.lease()) == ["j"]


def test_retry_of_a_job_that_has_not_finished(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    assert lua.retry("j") == ("JOB_NOT_RETRYABLE", "waiting")
    leased = lua.lease_one()
    assert lua.retry("j") == ("JOB_NOT_RETRYABLE", "active")
    lua.complete("j", leased.token)
    assert lua.retry("j") == ("JOB_NOT_RETRYABLE", "completed")
    assert lua.where("j") == ["completed"]


def test_retry_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.retry("nope") == ("JOB_NOT_FOUND", "")
