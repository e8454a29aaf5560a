"""expire.lua: waiting and delayed jobs that did not start within their lifespan fail."""

from __future__ import annotations

import time

from .helpers import EXPIRED, JobSpec, LuaQueue, handled_next


def test_waiting_and_delayed_jobs_past_their_lifespan_fail_expired(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="waiting", lifespan_ms=30, attempts=3))
    lua.add(JobSpec(id="delayed", lifespan_ms=30, delay_ms=60_000))
    lua.add(JobSpec(id="fresh", lifespan_ms=60_000))
    time.sleep(0.06)

    before = lua.now_ms()
    done = lua.expire()
    after = lua.now_ms()

    assert done.handled == 2
    assert done.next_due == lua.score("expiring", "fresh")
    assert before <= done.now <= after
    for job_id in ("waiting", "delayed"):
        job = lua.job(job_id)
        assert job["st"] == "failed"
        assert job["fr"] == EXPIRED
        assert job["fm"] == "job did not start within its lifespan of 30 ms"
        assert lua.where(job_id) == ["failed"]
        assert lua.event_types(job_id)[-2:] == ["failed", "retries-exhausted"]
    assert lua.where("fresh") == ["waiting", "expiring"]


def test_started_jobs_do_not_expire(lua: LuaQueue) -> None:
    # A lifespan long enough for the lease to come first on a loaded machine, then past it.
    lua.add(JobSpec(id="j", lifespan_ms=1_000))
    leased = lua.lease_one()
    time.sleep(1.05)
    assert handled_next(lua.expire()) == (0, -1)
    assert lua.state("j") == "active"
    assert lua.complete("j", leased.token) == ("", "completed")


def test_stale_expiring_entry_of_a_finished_job_is_dropped(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    lua.complete("j", leased.token)
    lua.r.zadd(lua.keys.key("expiring"), {"j": 1})
    assert handled_next(lua.expire()) == (1, -1)
    assert lua.state("j") == "completed"
    assert lua.where("j") == ["completed"]


def test_batch_size_bounds_the_work(lua: LuaQueue) -> None:
    for n in range(3):
        lua.add(JobSpec(id=f"j{n}", lifespan_ms=20 + n))
    time.sleep(0.06)
    assert lua.expire(batch=2).handled == 2
    assert lua.members("failed") == ["j0", "j1"]
    assert handled_next(lua.expire(batch=2)) == (1, -1)


def test_remove_on_fail_applies_to_expired_jobs(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", lifespan_ms=20, on_fail="1,0,0"))
    time.sleep(0.05)
    assert lua.expire().handled == 1
    assert lua.job("j") == {}
    assert lua.where("j") == []
