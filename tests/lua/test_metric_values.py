"""The values lease, complete, fail and reap return for the broker's metrics: a first start's
wait, an attempt's run time, and what maintenance did with expired leases."""

from __future__ import annotations

import time

from jobbroker_broker.storage.contracts.leases import Completed

from .helpers import JobSpec, LuaQueue


def test_a_first_start_reports_its_wait_a_later_one_does_not(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    job = lua.job("j")
    assert leased.wait_ms == int(job["sa"]) - int(job["ct"])
    lua.release("j", leased.token)
    assert lua.lease_one().wait_ms == -1, "started before"


def test_the_wait_of_a_delayed_job_starts_when_its_delay_ends(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="d", delay_ms=60_000))
    lua.promote("d")
    assert lua.lease_one().wait_ms == 0, "promoted before its delay ended: no wait"


def test_a_job_retried_by_hand_reports_no_wait(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    lua.fail("j", lua.lease_one().token, no_retry=True)
    lua.retry("j")
    assert lua.lease_one().wait_ms == -1


def test_complete_and_fail_report_how_long_the_attempt_ran(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="c"))
    leased = lua.lease_one()
    [row] = lua.complete_rows(("c", leased.token, "1", ""))
    job = lua.job("c")
    assert row == Completed("", "completed", int(job["fa"]) - int(job["sa"]))

    lua.add(JobSpec(id="f", attempts=2))
    leased = lua.lease_one()
    started = int(lua.job("f")["sa"])
    before = lua.now_ms()
    failed = lua.fail_row("f", leased.token, "boom", "", "", rand=0)
    after = lua.now_ms()
    assert (failed.reason, failed.state, failed.run_at) == ("", "waiting", 0)
    assert before - started <= failed.run_ms <= after - started

    assert lua.complete_rows(("c", "1-forged", "1", "")) == [
        Completed("INVALID_FIELD", "completed", 0)
    ]


def test_reap_counts_stalls_failures_and_retries(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="again", attempts=2))
    lua.add(JobSpec(id="done"))
    lua.add(JobSpec(id="slow", attempts=2, timeout_ms=50))
    lua.add(JobSpec(id="slower", timeout_ms=50))
    lua.lease(max_jobs=4, lease_ms=50)
    lua.r.hset(lua.keys.job("done"), "sc", 1)  # it stalled once before: this stall fails it
    time.sleep(0.1)
    done = lua.reap(max_stalled=1)
    assert (done.handled, done.stalled, done.failed, done.retried) == (4, 2, 2, 1)
    assert lua.state("again") == "waiting"
    assert lua.state("done") == "failed"
    assert lua.state("slow") == "waiting"
    assert lua.state("slower") == "failed"
