"""fail.lua: a failed attempt is retried (with backoff) while attempts are left, else final."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .helpers import ERROR, EXPONENTIAL, FIXED, JobSpec, Leased, LuaQueue, ids, retention


def leased_job(lua: LuaQueue, job_id: str = "j", **options: Any) -> Leased:
    """Add job ``job_id`` with ``options`` and lease it."""
    lua.add(id=job_id, **options)
    leased = lua.lease_one()
    assert leased.id == job_id
    return leased


def retry_delays(lua: LuaQueue, spec: JobSpec, rand: float = 0.0) -> list[range]:
    """Fail every attempt of ``spec``: for each retry, the range its backoff delay lies in.

    The script computes run_at = now + delay with its own "now", which lies between two reads of
    Redis' clock taken around the call: the delay is known within that window (a ms or two).
    """
    lua.add(spec)
    windows: list[range] = []
    while True:
        leased = lua.lease_one()
        before = lua.now_ms()
        reason, state, run_at = lua.fail(leased.id, leased.token, rand=rand)
        after = lua.now_ms()
        assert reason == ""
        if state == "failed":
            return windows
        assert state == "delayed"
        assert lua.score("delayed", leased.id) == run_at
        assert int(lua.job(leased.id)["ra"]) == run_at
        windows.append(range(run_at - after, run_at - before + 1))
        assert lua.promote(leased.id) == ("", "waiting")


def assert_delays(windows: list[range], expected: list[int]) -> None:
    assert len(windows) == len(expected), (windows, expected)
    for window, delay in zip(windows, expected, strict=True):
        assert delay in window


def test_attempt_left_and_no_backoff_means_waiting_again(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=2)
    assert lua.fail("j", leased.token, "bad input", "ValueError", "tb") == ("", "waiting", 0)

    job = lua.job("j")
    assert job["st"] == "waiting"
    assert job["am"] == "1"
    assert (job["fr"], job["fm"], job["fty"], job["fsk"], job["fat"]) == (
        ERROR,
        "bad input",
        "ValueError",
        "tb",
        "1",
    )
    assert "le" not in job
    assert "fa" not in job
    assert lua.where("j") == ["waiting"]
    failed, waiting = lua.events("j")[-2:]
    assert (failed.type, waiting.type) == ("failed", "waiting")
    assert failed.fields == {
        "s": "waiting",
        "a": "1",
        "fr": ERROR,
        "fm": "bad input",
        "fty": "ValueError",
        "f": "1",
        "w": "w1",
    }
    assert waiting.fields == {"s": "waiting"}

    again = lua.lease_one()
    assert (again.id, again.attempt, again.max_attempts, again.fence) == ("j", 2, 2, 2)


def test_retried_job_goes_to_the_back_of_its_priority(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="a", attempts=2))
    lua.add(JobSpec(id="b"))
    a = lua.lease_one()
    lua.fail("a", a.token)
    assert ids(lua.lease(max_jobs=2)) == ["b", "a"]


def test_last_attempt_fails_the_job_for_good(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=1)
    before = lua.now_ms()
    assert lua.fail("j", leased.token, "boom", "RuntimeError", "stack") == ("", "failed", 0)
    after = lua.now_ms()

    job = lua.job("j")
    assert job["st"] == "failed"
    assert job["am"] == "1"
    assert (job["fr"], job["fm"], job["fty"], job["fsk"], job["fat"]) == (
        ERROR,
        "boom",
        "RuntimeError",
        "stack",
        "1",
    )
    assert before <= int(job["fa"]) <= after
    assert lua.where("j") == ["failed"]
    assert lua.score("failed", "j") == int(job["fa"])
    failed, exhausted = lua.events("j")[-2:]
    assert (failed.type, exhausted.type) == ("failed", "retries-exhausted")
    assert failed.fields["s"] == "failed"
    assert failed.fields["a"] == "1"
    assert exhausted.fields == {k: v for k, v in failed.fields.items() if k != "s"}


def test_no_retry_fails_for_good_with_attempts_left(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=5, backoff_type=FIXED, backoff_ms=1000)
    assert lua.fail("j", leased.token, no_retry=True) == ("", "failed", 0)
    assert lua.where("j") == ["failed"]
    assert lua.job("j")["am"] == "1"


def test_exponential_backoff_doubles_from_the_base_delay(lua: LuaQueue) -> None:
    spec = JobSpec(id="j", attempts=5, backoff_type=EXPONENTIAL, backoff_ms=5000)
    assert_delays(retry_delays(lua, spec), [5000, 10_000, 20_000, 40_000])
    assert lua.job("j")["am"] == "5"
    assert lua.job("j")["st"] == "failed"


def test_fixed_backoff_waits_the_same_every_time(lua: LuaQueue) -> None:
    spec = JobSpec(id="j", attempts=4, backoff_type=FIXED, backoff_ms=2000)
    assert_delays(retry_delays(lua, spec), [2000, 2000, 2000])


def test_backoff_max_caps_every_delay(lua: LuaQueue) -> None:
    spec = JobSpec(
        id="j", attempts=5, backoff_type=EXPONENTIAL, backoff_ms=1000, backoff_max_ms=3000
    )
    assert_delays(retry_delays(lua, spec), [1000, 2000, 3000, 3000])


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 8000), (0.5, 6000), (0.75, 5000)])
def test_jitter_draws_the_delay_from_its_lower_bound_to_the_full_delay(
    lua: LuaQueue, rand: float, expected: int
) -> None:
    spec = JobSpec(id="j", attempts=2, backoff_type=FIXED, backoff_ms=8000, jitter=0.5)
    assert 8000 * (1 - 0.5) <= expected <= 8000
    assert_delays(retry_delays(lua, spec, rand=rand), [expected])


def test_jitter_applies_after_the_cap(lua: LuaQueue) -> None:
    spec = JobSpec(
        id="j",
        attempts=2,
        backoff_type=EXPONENTIAL,
        backoff_ms=10_000,
        backoff_max_ms=4000,
        jitter=1.0,
    )
    assert_delays(retry_delays(lua, spec, rand=0.25), [3000])


def test_delayed_retry_emits_failed_then_delayed(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=2, backoff_type=FIXED, backoff_ms=1000)
    _, state, run_at = lua.fail("j", leased.token)
    assert state == "delayed"
    failed, delayed = lua.events("j")[-2:]
    assert (failed.type, delayed.type) == ("failed", "delayed")
    assert failed.fields["s"] == "delayed"
    assert failed.fields["ra"] == str(run_at)
    assert delayed.fields == {"s": "delayed", "ra": str(run_at)}


def test_fail_with_a_stale_token_changes_nothing(lua: LuaQueue) -> None:
    old = leased_job(lua, attempts=3)
    lua.release("j", old.token)
    lua.lease_one()
    before = lua.job("j")
    last = lua.last_event_id()
    assert lua.fail("j", old.token) == ("LEASE_SUPERSEDED", "active", 0)
    assert lua.fail("missing", old.token) == ("JOB_NOT_FOUND", "", 0)
    assert lua.job("j") == before
    assert lua.events(after=last) == []


def test_fail_after_the_lease_deadline_is_rejected(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=3))
    leased = lua.lease_one(lease_ms=50)
    time.sleep(0.1)
    assert lua.fail("j", leased.token) == ("LEASE_EXPIRED", "active", 0)
    assert "am" not in lua.job("j")


def test_fail_of_a_cancel_requested_job_ends_it_cancelled(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=3)
    lua.cancel("j")
    assert lua.fail("j", leased.token, "stopped", "Cancelled", "") == ("", "cancelled", 0)
    job = lua.job("j")
    assert job["st"] == "cancelled"
    assert job["fm"] == "stopped"
    assert lua.where("j") == ["cancelled"]
    assert lua.event_types("j")[-1] == "cancelled"


def test_remove_on_fail_applies_to_the_final_failure_only(lua: LuaQueue) -> None:
    leased = leased_job(lua, attempts=2, on_fail=retention(remove=True))
    assert lua.fail_row("j", leased.token).state == "waiting"
    assert lua.state("j") == "waiting"
    again = lua.lease_one()
    assert lua.fail_row("j", again.token).state == "failed"
    assert lua.job("j") == {}
    assert lua.where("j") == []
    assert lua.event_types("j")[-2:] == ["failed", "retries-exhausted"]


def test_keep_last_on_fail(lua: LuaQueue) -> None:
    for n in range(3):
        leased = leased_job(lua, f"j{n}", on_fail=retention(keep_last=1))
        lua.fail(leased.id, leased.token)
        time.sleep(0.002)
    assert lua.members("failed") == ["j2"]
    assert lua.job("j0") == {}
    assert lua.job("j1") == {}


def test_remove_on_complete_does_not_apply_to_failures(lua: LuaQueue) -> None:
    leased = leased_job(lua, on_complete=retention(remove=True))
    lua.fail("j", leased.token)
    assert lua.where("j") == ["failed"]
