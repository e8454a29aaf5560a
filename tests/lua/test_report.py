"""report.lua: lease renewal, progress and logs, each checked against the lease token."""

from __future__ import annotations

import time
from typing import Any

from .helpers import JobSpec, Leased, LuaQueue, Update


def leased_job(lua: LuaQueue, **options: Any) -> Leased:
    """Add job "j" with ``options`` and lease it."""
    lua.add(id="j", **options)
    return lua.lease_one()


def test_renewal_moves_the_deadline(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    before = lua.now_ms()
    ((reason, deadline),) = lua.report(Update("j", leased.token, lease_ms=60_000))
    after = lua.now_ms()

    assert reason == ""
    assert before + 60_000 <= deadline <= after + 60_000
    assert lua.score("active", "j") == deadline
    job = lua.job("j")
    assert job["le"] == str(deadline)
    assert job["lms"] == "60000"


def test_renewal_without_a_duration_reuses_the_last_one(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(lease_ms=7000)
    before = lua.now_ms()
    ((reason, deadline),) = lua.report(Update("j", leased.token, lease_ms=0))
    after = lua.now_ms()
    assert reason == ""
    assert before + 7000 <= deadline <= after + 7000


def test_renewal_never_goes_past_the_attempt_timeout(lua: LuaQueue) -> None:
    leased = leased_job(lua, timeout_ms=3000)
    ((reason, deadline),) = lua.report(Update("j", leased.token, lease_ms=60_000))
    assert reason == ""
    assert deadline == leased.timeout_at
    assert lua.score("active", "j") == leased.timeout_at


def test_progress_is_stored_and_emitted(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    update = Update("j", leased.token, percent=40, value='{"tokens": "Hel"}', value_type="")
    assert lua.report(update)[0][0] == ""

    job = lua.job("j")
    assert job["pp"] == "40"
    assert job["pv"] == '{"tokens": "Hel"}'
    assert job["pvt"] == ""
    (progress,) = [e for e in lua.events("j") if e.type == "progress"]
    assert progress.fields == {"a": "1", "f": "1", "pp": "40", "pv": '{"tokens": "Hel"}', "pvt": ""}

    lua.report(Update("j", leased.token, percent=90))
    assert lua.job("j")["pp"] == "90"
    assert lua.job("j")["pv"] == '{"tokens": "Hel"}', "a percent alone keeps the value"
    assert lua.events("j")[-1].fields == {"a": "1", "f": "1", "pp": "90"}


def test_progress_shows_in_the_next_lease(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=2)
    lua.report(Update("j", leased.token, percent=50, value="half", value_type="text/plain"))
    lua.release("j", leased.token)
    again = lua.lease_one()
    assert (again.progress_percent, again.progress_value, again.progress_type) == (
        "50",
        "half",
        "text/plain",
    )


def test_a_bare_renewal_emits_no_event(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    last = lua.last_event_id()
    lua.report(Update("j", leased.token))
    assert lua.events(after=last) == []


def test_log_lines_are_appended_and_trimmed_to_the_newest(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    lua.report(Update("j", leased.token, logs=["one", "two"]), max_logs=3)
    assert lua.logs("j") == ["one", "two"]
    lua.report(Update("j", leased.token, logs=["three", "four"]), max_logs=3)
    assert lua.logs("j") == ["two", "three", "four"]


def test_updates_of_several_jobs_in_one_call(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="a"))
    lua.add(JobSpec(id="b"))
    a, b = lua.lease(max_jobs=2)
    out = lua.report(
        Update("a", a.token, logs=["a1", "a2", "a3"]),
        Update("missing", "1-x"),
        Update("b", "1-wrong", percent=10),
        Update("b", b.token, percent=20, logs=["b1"]),
    )
    assert [reason for reason, _ in out] == ["", "JOB_NOT_FOUND", "INVALID_FIELD", ""]
    assert out[1] == ("JOB_NOT_FOUND", "")
    assert out[2] == ("INVALID_FIELD", "active")
    assert lua.logs("a") == ["a1", "a2", "a3"]
    assert lua.logs("b") == ["b1"]
    assert lua.job("b")["pp"] == "20"


def test_stale_token_from_an_older_lease_is_superseded(lua: LuaQueue) -> None:
    old = leased_job(lua)
    lua.release("j", old.token)
    new = lua.lease_one(rand="new")
    before = lua.job("j")
    last = lua.last_event_id()

    out = lua.report(Update("j", old.token, lease_ms=60_000, percent=99, logs=["stale"]))
    assert out == [("LEASE_SUPERSEDED", "active")]
    assert lua.job("j") == before
    assert lua.score("active", "j") == new.lease_expires_at
    assert lua.logs("j") == []
    assert lua.events(after=last) == []


def test_live_token_past_its_deadline_is_expired(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one(lease_ms=50)
    time.sleep(0.1)
    out = lua.report(Update("j", leased.token, lease_ms=60_000, percent=1))
    assert out == [("LEASE_EXPIRED", "active")]
    assert lua.score("active", "j") == leased.lease_expires_at
    assert "pp" not in lua.job("j")


def test_token_of_a_finished_job_is_expired(lua: LuaQueue) -> None:
    leased = leased_job(lua)
    lua.complete("j", leased.token)
    assert lua.report(Update("j", leased.token)) == [("LEASE_EXPIRED", "completed")]
    assert lua.where("j") == ["completed"]


def test_token_of_a_job_never_leased_was_never_issued(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    assert lua.report(Update("j", "1-guess")) == [("INVALID_FIELD", "waiting")]
    assert lua.where("j") == ["waiting"]
