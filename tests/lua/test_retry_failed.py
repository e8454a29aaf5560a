"""retry_failed.lua: failed jobs go back to waiting with fresh attempts, a bounded batch per
call, in the order they failed."""

from __future__ import annotations

from typing import Any

from .helpers import JobSpec, LuaQueue, ids


def fail(lua: LuaQueue, job_id: str, **options: Any) -> None:
    """Add job ``job_id`` and fail it for good."""
    lua.add(JobSpec(id=job_id, **options))
    leased = lua.lease_one()
    assert leased.id == job_id
    lua.fail(job_id, leased.token, no_retry=True)
    assert lua.state(job_id) == "failed"


def test_retry_failed_moves_every_failed_job_to_waiting(lua: LuaQueue) -> None:
    fail(lua, "a", attempts=3, timeout_ms=1000)
    fail(lua, "b")
    lua.add(JobSpec(id="c"))
    lua.cancel("c")
    last = lua.last_event_id()

    assert lua.retry_failed() == 2
    for job_id in ("a", "b"):
        job = lua.job(job_id)
        assert job["st"] == "waiting"
        assert (job["am"], job["sc"]) == ("0", "0")
        for gone in ("fa", "fr", "fm", "fty", "fsk", "fat", "sa", "w"):
            assert gone not in job, (job_id, gone)
        assert lua.where(job_id) == ["waiting"]
    assert (lua.job("a")["atm"], lua.job("a")["tmo"]) == ("3", "1000"), "options are kept"
    assert lua.where("c") == ["cancelled"], "cancelled jobs are not retried"
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [
        ("waiting", "a", {"s": "waiting"}),
        ("waiting", "b", {"s": "waiting"}),
    ]
    again = lua.lease_one()
    assert (again.id, again.attempt, again.max_attempts) == ("a", 1, 3)


def test_retried_jobs_join_the_back_of_the_queue(lua: LuaQueue) -> None:
    fail(lua, "f")
    lua.add(JobSpec(id="w"))
    assert lua.retry_failed() == 1
    assert ids(lua.lease(max_jobs=2)) == ["w", "f"]


def test_retry_failed_is_bounded(lua: LuaQueue) -> None:
    for job_id in ("a", "b", "c"):
        fail(lua, job_id)
    assert lua.retry_failed(batch=2) == 2
    assert lua.members("failed") == ["c"], "the oldest failures first"
    assert lua.retry_failed(batch=2) == 1
    assert lua.retry_failed(batch=2) == 0
    assert lua.members("failed") == []
    assert ids(lua.lease(max_jobs=3)) == ["a", "b", "c"]


def test_retry_failed_restarts_the_lifespan(lua: LuaQueue) -> None:
    fail(lua, "j", lifespan_ms=60_000)
    before = lua.now_ms()
    assert lua.retry_failed() == 1
    created = int(lua.job("j")["ct"])
    assert before <= created <= lua.now_ms()
    assert lua.score("expiring", "j") == created + 60_000


def test_retry_failed_of_a_queue_without_failures(lua: LuaQueue) -> None:
    assert lua.retry_failed() == 0
    assert lua.events() == []
