"""complete.lua: active -> completed for the live lease only; cancel wins; retention applies."""

from __future__ import annotations

import time
from typing import Any

from .helpers import JobSpec, Leased, LuaQueue, retention


def leased_job(lua: LuaQueue, job_id: str = "j", **options: Any) -> Leased:
    """Add job ``job_id`` with ``options`` and lease it."""
    lua.add(id=job_id, **options)
    leased = lua.lease_one()
    assert leased.id == job_id
    return leased


def test_complete_finishes_the_job_with_its_result(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=3)
    before = lua.now_ms()
    assert lua.complete("j", leased.token, '{"url": "x"}') == ("", "completed")
    after = lua.now_ms()

    job = lua.job("j")
    assert job["st"] == "completed"
    assert job["res"] == '{"url": "x"}'
    assert "rct" not in job
    assert job["am"] == "1"
    finished = int(job["fa"])
    assert before <= finished <= after
    assert lua.where("j") == ["completed"]
    assert lua.score("completed", "j") == finished

    completed = lua.events("j")[-1]
    assert completed.type == "completed"
    assert completed.fields == {
        "s": "completed",
        "a": "1",
        "r": '{"url": "x"}',
        "rct": "",
        "f": "1",
        "w": "w1",
    }


def test_result_content_type_is_kept(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    lua.complete("j", leased.token, "\x00\x01", "application/octet-stream")
    assert lua.job("j")["rct"] == "application/octet-stream"


def test_complete_with_a_stale_token_changes_nothing(lua: LuaQueue) -> None:
    old = leased_job(lua)
    lua.release("j", old.token)
    new = lua.lease_one()
    before = lua.job("j")
    last = lua.last_event_id()

    assert lua.complete("j", old.token) == ("LEASE_SUPERSEDED", "active")
    assert lua.complete("j", "9-forged") == ("INVALID_FIELD", "active")
    assert lua.job("j") == before
    assert lua.where("j") == ["active"]
    assert lua.events(after=last) == []
    assert lua.complete("j", new.token) == ("", "completed")


def test_complete_after_the_lease_deadline_is_rejected(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(lease_ms=50)
    time.sleep(0.1)
    assert lua.complete("j", leased.token) == ("LEASE_EXPIRED", "active")
    assert lua.state("j") == "active"


def test_a_job_completes_exactly_once(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    assert lua.complete("j", leased.token, "1") == ("", "completed")
    assert lua.complete("j", leased.token, "2") == ("LEASE_EXPIRED", "completed")
    assert lua.job("j")["res"] == "1"
    assert lua.event_types("j").count("completed") == 1


def test_unknown_job(lua: LuaQueue) -> None:
    assert lua.complete("nope", "1-x") == ("JOB_NOT_FOUND", "")


def test_complete_of_a_cancel_requested_job_ends_it_cancelled(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    assert lua.cancel("j") == ("", "active")
    assert lua.complete("j", leased.token, "late") == ("", "cancelled")
    job = lua.job("j")
    assert job["st"] == "cancelled"
    assert job["res"] == "late"
    assert lua.where("j") == ["cancelled"]
    assert lua.event_types("j")[-2:] == ["cancel-requested", "cancelled"]


def test_several_jobs_in_one_call(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="a"))
    lua.add(JobSpec(id="b"))
    a, b = lua.lease(max_jobs=2)
    out = lua.complete_many(
        ("a", a.token, "ra", ""), ("b", "9-x", "rb", ""), ("b", b.token, "rb", "text/plain")
    )
    assert out == [("", "completed"), ("INVALID_FIELD", "active"), ("", "completed")]
    assert lua.members("completed") == ["a", "b"]


def test_remove_on_complete_deletes_the_job_and_its_logs(lua: LuaQueue) -> None:
    leased = leased_job(lua, on_complete=retention(remove=True))
    lua.r.rpush(lua.keys.logs("j"), "line")
    assert lua.complete("j", leased.token) == ("", "completed")
    assert lua.job("j") == {}
    assert lua.logs("j") == []
    assert lua.where("j") == []
    assert lua.event_types("j")[-1] == "completed", "the completed event is still emitted"


def test_removed_and_kept_jobs_in_one_batch(lua: LuaQueue) -> None:
    lua.add(id="gone", on_complete=retention(remove=True))
    lua.add(id="kept")
    lua.add(id="last", on_complete=retention(keep_last=5))
    gone, kept, last = lua.lease(max_jobs=3)
    out = lua.complete_many(
        ("gone", gone.token, '"g"', ""), ("kept", kept.token, "", ""), ("last", last.token, "", "")
    )
    assert out == [("", "completed")] * 3
    assert lua.job("gone") == {}
    assert lua.members("completed") == ["kept", "last"]
    assert lua.members("active") == []
    completed = [e for e in lua.events() if e.type == "completed"]
    assert [(e.job, e.fields["r"]) for e in completed] == [
        ("gone", '"g"'),
        ("kept", ""),
        ("last", ""),
    ]


def test_keep_last_keeps_the_newest_finished_jobs(lua: LuaQueue) -> None:
    policy = retention(keep_last=2)
    for n in range(4):
        leased = leased_job(lua, f"j{n}", on_complete=policy)
        lua.complete(leased.id, leased.token)
        time.sleep(0.002)  # distinct finish times
    assert lua.members("completed") == ["j2", "j3"]
    assert lua.job("j0") == {}
    assert lua.job("j1") == {}
    assert lua.state("j3") == "completed"


def test_keep_age_removes_finished_jobs_older_than_the_age(lua: LuaQueue) -> None:
    policy = retention(keep_age_ms=100)
    old = leased_job(lua, "old", on_complete=policy)
    lua.complete("old", old.token)
    time.sleep(0.15)
    recent = leased_job(lua, "recent", on_complete=policy)
    lua.complete("recent", recent.token)
    assert lua.members("completed") == ["recent"]
    assert lua.job("old") == {}


def test_retention_only_touches_its_own_finished_set(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="waiting", priority=5))
    failed = leased_job(lua, "failed")
    lua.fail("failed", failed.token)
    time.sleep(0.01)
    done = leased_job(lua, "done", on_complete=retention(keep_last=1, keep_age_ms=1))
    lua.complete("done", done.token)
    assert lua.where("waiting") == ["waiting"]
    assert lua.where("failed") == ["failed"]
    assert lua.where("done") == ["completed"]


def test_keep_last_within_one_call_keeps_the_jobs_completed_last(lua: LuaQueue) -> None:
    for _ in range(10):
        lua.add(JobSpec(on_complete=retention(keep_last=1)))  # generated ids 1..10
    leased = lua.lease(max_jobs=10)
    lua.complete_many(*[(job.id, job.token, "r", "") for job in leased])
    assert lua.members("completed") == ["10"]
