"""lease.lua: waiting -> active with a fenced token, scored by lease deadline; expired jobs fail."""

from __future__ import annotations

import time

import pytest

from .helpers import EXPIRED, JobSpec, LuaQueue, ids


def test_lease_hands_out_the_job_with_a_fenced_token(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", name="resize", data='{"w": 1}', content_type="application/x"))
    before = lua.now_ms()
    leased = lua.lease_one(worker="worker-9", lease_ms=30_000, rand="abc123")
    after = lua.now_ms()

    assert (leased.id, leased.name, leased.data, leased.data_type) == (
        "j",
        "resize",
        '{"w": 1}',
        "application/x",
    )
    assert (leased.attempt, leased.max_attempts) == (1, 1)
    assert leased.fence == 1
    assert leased.token == "1-abc1230"  # fence, the call's random part, the job's index
    assert before + 30_000 <= leased.lease_expires_at <= after + 30_000
    assert leased.timeout_at == 0
    assert (leased.progress_percent, leased.progress_value, leased.progress_type) == ("", "", "")


def test_leased_job_is_active_and_scored_by_its_deadline(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", attempts=3))
    before = lua.now_ms()
    leased = lua.lease_one(worker="w7", lease_ms=5000)
    after = lua.now_ms()

    assert leased.max_attempts == 3
    assert lua.where("j") == ["active"]
    assert lua.score("active", "j") == leased.lease_expires_at
    job = lua.job("j")
    assert job["st"] == "active"
    assert job["w"] == "w7"
    assert job["tok"] == leased.token
    assert job["fn"] == "1"
    assert job["le"] == str(leased.lease_expires_at)
    assert job["lms"] == "5000"
    assert before <= int(job["sa"]) <= after
    assert "am" not in job, "leasing does not spend an attempt"

    (active,) = [e for e in lua.events("j") if e.type == "active"]
    assert active.fields == {"s": "active", "a": "1", "w": "w7", "f": "1"}


def test_fence_grows_with_every_lease_of_a_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    first = lua.lease_one(rand="x")
    assert lua.release("j", first.token) == ("", "waiting")
    second = lua.lease_one(rand="y")
    assert (first.fence, second.fence) == (1, 2)
    assert (first.token, second.token) == ("1-x0", "2-y0")


def test_lease_takes_at_most_max_jobs(lua: LuaQueue) -> None:
    for _ in range(5):
        lua.add()
    assert ids(lua.lease(max_jobs=3)) == ["1", "2", "3"]
    assert lua.members("waiting") == ["4", "5"]
    assert ids(lua.lease(max_jobs=10)) == ["4", "5"]
    assert lua.lease(max_jobs=10) == []


def test_lease_of_an_empty_queue_returns_nothing(lua: LuaQueue) -> None:
    assert lua.lease(max_jobs=5) == []
    assert lua.events() == []


def test_attempt_timeout_caps_the_lease_deadline(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", timeout_ms=2000))
    before = lua.now_ms()
    leased = lua.lease_one(lease_ms=30_000)
    after = lua.now_ms()

    assert before + 2000 <= leased.timeout_at <= after + 2000
    assert leased.lease_expires_at == leased.timeout_at
    assert lua.score("active", "j") == leased.timeout_at
    assert lua.job("j")["to"] == str(leased.timeout_at)

    lua.add(JobSpec(id="k", timeout_ms=60_000))
    long = lua.lease_one(lease_ms=1000)
    assert long.lease_expires_at < long.timeout_at


def test_lease_removes_a_started_job_from_expiring(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", lifespan_ms=60_000))
    lua.lease_one()
    assert lua.where("j") == ["active"]


def test_job_past_its_lifespan_fails_expired_instead_of_being_leased(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="old", lifespan_ms=50, attempts=3))
    lua.add(JobSpec(id="fresh"))
    time.sleep(0.1)

    assert ids(lua.lease(max_jobs=1)) == ["fresh"]
    assert lua.where("old") == ["failed"]
    job = lua.job("old")
    assert job["st"] == "failed"
    assert job["fr"] == EXPIRED
    assert job["fm"] == "job did not start within its lifespan of 50 ms"
    assert "fa" in job
    assert [e.type for e in lua.events("old")] == ["added", "failed", "retries-exhausted"]
    failed = lua.events("old")[1]
    assert failed.fields["s"] == "failed"
    assert failed.fields["fr"] == EXPIRED
    assert failed.fields["a"] == "0"


def test_expired_jobs_do_not_use_up_max_jobs(lua: LuaQueue) -> None:
    for n in range(3):
        lua.add(JobSpec(id=f"old{n}", lifespan_ms=50))
    time.sleep(0.1)
    for n in range(2):
        lua.add(JobSpec(id=f"new{n}"))
    assert ids(lua.lease(max_jobs=2)) == ["new0", "new1"]
    assert lua.members("failed") == ["old0", "old1", "old2"]


def test_popped_id_without_a_job_hash_is_dropped(lua: LuaQueue) -> None:
    lua.r.zadd(lua.keys.key("waiting"), {"ghost": 0})
    lua.add(JobSpec(id="real"))
    assert ids(lua.lease(max_jobs=5)) == ["real"]
    assert lua.members("waiting") == []


@pytest.mark.parametrize("back_to_waiting", ["failed-attempt", "released", "stalled"])
def test_job_that_started_in_time_is_leased_again_after_its_lifespan(
    lua: LuaQueue, back_to_waiting: str
) -> None:
    lua.add(JobSpec(id="j", lifespan_ms=100, attempts=2))
    first = lua.lease_one(lease_ms=50 if back_to_waiting == "stalled" else 30_000)
    time.sleep(0.15)
    if back_to_waiting == "failed-attempt":
        assert lua.fail("j", first.token) == ("", "waiting", 0)
    elif back_to_waiting == "released":
        assert lua.release("j", first.token) == ("", "waiting")
    else:
        assert lua.reap().handled == 1
    assert lua.state("j") == "waiting"
    assert lua.expire().handled == 0, "expire.lua agrees: the job started in time"

    again = lua.lease()
    assert ids(again) == ["j"], lua.job("j")


def test_the_lease_that_takes_the_last_waiting_job_emits_drained(lua: LuaQueue) -> None:
    """BullMQ's `drained`: the queue ran empty. Once per emptying, after the `active` events."""
    lua.add_all(
        JobSpec(id="a"), JobSpec(id="b"), JobSpec(id="c"), JobSpec(id="later", delay_ms=60_000)
    )
    start = lua.last_event_id()
    assert ids(lua.lease(max_jobs=2)) == ["a", "b"]
    assert lua.event_types(after=start) == ["active", "active"], "a job still waits"
    start = lua.last_event_id()
    assert ids(lua.lease(max_jobs=5)) == ["c"]
    assert [(e.type, e.job) for e in lua.events(after=start)] == [("active", "c"), ("drained", "")]
    start = lua.last_event_id()
    assert lua.lease(max_jobs=5) == []
    assert lua.events(after=start) == [], "an empty queue stays quiet"


def test_jobs_parked_by_a_group_limit_keep_the_queue_from_draining(lua: LuaQueue) -> None:
    lua.r.hset(lua.keys.key("meta"), mapping={"glm": 1, "gld": 60_000})
    lua.add_all(JobSpec(id="a", group="g"), JobSpec(id="b", group="g"))
    start = lua.last_event_id()
    assert ids(lua.lease(max_jobs=5)) == ["a"]
    assert lua.members("waiting") == []
    assert lua.event_types(after=start) == ["active"], "b is parked: still waiting"
