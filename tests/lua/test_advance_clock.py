"""advance_clock.lua and the test clock: scripts loaded for a broker with Settings.test_clock
read "now" as Redis' time plus the queue's clock; production scripts never read it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from jobbroker_broker.storage.contracts.clock import ADVANCE_CLOCK, AdvanceArgs, GroupItem

from .helpers import JobSpec, LuaQueue, ids

HOUR_MS = 3_600_000


@pytest.fixture
def clocked(r: redis.Redis, queue: str) -> Iterator[LuaQueue]:
    """This test's queue, driven through the scripts as a test-clock broker loads them."""
    driver = LuaQueue(r, queue, test_clock=True)
    yield driver
    driver.delete_all()


def advance(lua: LuaQueue, ms: int, *groups: str) -> int:
    items = [GroupItem(group) for group in groups]
    return lua.run(ADVANCE_CLOCK, AdvanceArgs(ms, len(items)), items)


def test_advancing_adds_up_in_the_queue_clock(clocked: LuaQueue) -> None:
    assert advance(clocked, 1_000) == 1_000
    assert advance(clocked, 2_500) == 3_500
    assert clocked.r.get(clocked.keys.key("clock")) == b"3500"


def test_now_moves_with_the_queue_clock(clocked: LuaQueue) -> None:
    before = clocked.now_ms()
    advance(clocked, HOUR_MS)
    done = clocked.promote_due()
    assert before + HOUR_MS <= done.now <= clocked.now_ms() + HOUR_MS


def test_a_delayed_job_comes_due_when_its_queue_clock_reaches_it(clocked: LuaQueue) -> None:
    clocked.add(JobSpec(id="later", delay_ms=HOUR_MS))
    advance(clocked, HOUR_MS - 60_000)
    assert clocked.promote_due().handled == 0
    assert clocked.where("later") == ["delayed"]
    advance(clocked, 60_000)
    assert clocked.promote_due().handled == 1
    assert clocked.where("later") == ["waiting"]


def test_a_delay_counts_from_the_moved_now(clocked: LuaQueue) -> None:
    advance(clocked, HOUR_MS)
    clocked.add(JobSpec(id="later", delay_ms=60_000))
    assert int(clocked.job("later")["ra"]) >= clocked.now_ms() + HOUR_MS
    assert clocked.promote_due().handled == 0


def test_the_clock_of_one_queue_leaves_other_queues_alone(
    clocked: LuaQueue, r: redis.Redis
) -> None:
    other = LuaQueue(r, clocked.name + "-other", test_clock=True)
    try:
        other.add(JobSpec(id="later", delay_ms=HOUR_MS))
        advance(clocked, HOUR_MS)
        assert other.promote_due().handled == 0
    finally:
        other.delete_all()


def test_production_scripts_never_read_the_clock(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="later", delay_ms=HOUR_MS))
    advance(lua, 2 * HOUR_MS)
    assert lua.promote_due().handled == 0
    assert lua.where("later") == ["delayed"]


def test_a_lease_runs_out_on_the_queue_clock(clocked: LuaQueue) -> None:
    clocked.add(JobSpec(id="a"))
    clocked.lease_one(lease_ms=30_000)
    assert clocked.reap().handled == 0
    advance(clocked, 30_000)
    assert clocked.reap().handled == 1
    assert clocked.where("a") == ["waiting"]


def test_the_rate_limit_window_under_way_ends_with_the_time_moved(clocked: LuaQueue) -> None:
    clocked.r.hset(clocked.keys.key("meta"), mapping={"rlm": 1, "rld": 60_000})
    clocked.add_all(JobSpec(id="a"), JobSpec(id="b"))
    assert ids(clocked.lease(max_jobs=2)) == ["a"]
    assert clocked.lease() == []
    assert clocked.held > 0
    advance(clocked, 30_000)
    assert clocked.lease() == []
    assert 0 < clocked.held <= 30_000
    advance(clocked, 30_000)
    assert ids(clocked.lease()) == ["b"]


def test_the_given_group_windows_end_with_the_time_moved(clocked: LuaQueue) -> None:
    clocked.r.hset(clocked.keys.key("meta"), mapping={"glm": 1, "gld": 60_000})
    clocked.add_all(JobSpec(id="a", group="g"), JobSpec(id="b", group="g"))
    clocked.add_all(JobSpec(id="c", group="h"), JobSpec(id="d", group="h"))
    assert ids(clocked.lease(max_jobs=5)) == ["a", "c"]  # b and d are parked
    assert clocked.promote_due().handled == 0
    advance(clocked, 60_000, "g")
    assert clocked.promote_due().handled == 2  # both groups' parked jobs are back
    assert ids(clocked.lease(max_jobs=5)) == ["b"], "only g's window was shortened"
