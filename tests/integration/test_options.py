"""Every job option, observed through the API: priority, delay, attempts, backoff, timeout,
lifespan, retention, custom ids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis
from conftest import Running
from helpers import (
    LeasedJob,
    S,
    add,
    add_id,
    complete,
    decoded,
    exists,
    expect_error,
    fail,
    lease,
    lease_one,
    payload,
    private_broker,
    promote,
    redis_now_ms,
    status,
    wait_state,
    worker_stream,
)
from jobbroker.v1 import job_pb2, job_service_pb2, worker_service_pb2


@pytest.fixture
async def quiet(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a Redis of its own: timing tests must not wait behind the maintenance of
    the thousands of queues other tests left in the shared Redis (every broker maintains every
    queue it ever saw)."""
    async with private_broker(private_redis.url) as running:
        yield running


FIXED = job_pb2.BACKOFF_TYPE_FIXED
EXPONENTIAL = job_pb2.BACKOFF_TYPE_EXPONENTIAL


def backoff(
    kind: int, delay_ms: int, jitter: float = 0.0, max_delay_ms: int = 0
) -> job_pb2.Backoff:
    return job_pb2.Backoff(type=kind, delay_ms=delay_ms, jitter=jitter, max_delay_ms=max_delay_ms)


# --- priority, delay, attempts -----------------------------------------------------------------


async def test_priority_one_is_highest_and_unprioritized_jobs_go_first(
    broker: Running, queue: str
) -> None:
    ids = {}
    for label, priority in [
        ("p5", 5),
        ("none-a", 0),
        ("p1", 1),
        ("p-max", 1_000_000),
        ("none-b", 0),
    ]:
        ids[label] = await add_id(broker, queue, {"label": label}, priority=priority)
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["label"] for j in jobs] == ["none-a", "none-b", "p1", "p5", "p-max"]
    job = await status(broker, queue, ids["p5"])
    assert job.options.priority == 5


async def test_priority_out_of_range_is_refused(broker: Running, queue: str) -> None:
    error = await expect_error(
        add(broker, queue, priority=1_000_001), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    assert "priority" in error.details()


async def _lease_delayed(running: Running, queue: str, r: redis.Redis, delay_ms: int) -> float:
    """Add a delayed job, check it is not leasable yet; return seconds until a lease got it."""
    started = time.monotonic()
    before = redis_now_ms(r)
    added = await add(running, queue, delay_ms=delay_ms)
    assert added.state == S.JOB_STATE_DELAYED
    job = await status(running, queue, added.job_id)
    assert job.state == S.JOB_STATE_DELAYED
    assert before + delay_ms <= job.run_at_ms <= redis_now_ms(r) + delay_ms
    assert job.run_at_ms == job.created_at_ms + delay_ms
    assert await lease(running, queue) == []

    jobs = await lease(running, queue, wait_ms=5_000)
    elapsed = time.monotonic() - started
    assert [j.job_id for j in jobs] == [added.job_id]
    assert (await status(running, queue, added.job_id)).run_at_ms == 0
    return elapsed


async def test_delayed_job_is_leasable_only_after_its_delay(
    quiet: Running, queue: str, r: redis.Redis
) -> None:
    elapsed = await _lease_delayed(quiet, queue, r, 600)
    assert 0.55 <= elapsed <= 0.6 + 0.3, f"delayed job leased after {elapsed:.3f} s"


async def test_every_attempt_is_made_then_the_job_fails(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=3)
    for attempt in (1, 2, 3):
        leased = await lease_one(broker, queue)
        assert (leased.job_id, leased.attempt, leased.max_attempts) == (job_id, attempt, 3)
        reply = await fail(broker, leased, f"attempt {attempt}")
        expected = S.JOB_STATE_FAILED if attempt == 3 else S.JOB_STATE_WAITING
        assert reply.state == expected
    job = await status(broker, queue, job_id)
    assert (job.state, job.attempts_made, job.failure.attempt, job.failure.message) == (
        S.JOB_STATE_FAILED,
        3,
        3,
        "attempt 3",
    )


# --- backoff -----------------------------------------------------------------------------------


async def _fail_and_measure(
    broker: Running, r: redis.Redis, leased: LeasedJob
) -> tuple[worker_service_pb2.FailResponse, int, int]:
    """Fail an attempt; return the reply and the Redis-clock window the failure happened in."""
    before = redis_now_ms(r)
    reply = await fail(broker, leased)
    return reply, before, redis_now_ms(r)


async def _backoff_delays(
    broker: Running, queue: str, r: redis.Redis, job_id: str, failures: int
) -> list[tuple[int, int]]:
    """Fail `failures` attempts of a job in a row (promoting it between attempts, so no test
    waits for a backoff); return the (smallest, largest) possible delay of each retry."""
    delays = []
    for _ in range(failures):
        leased = await lease_one(broker, queue)
        assert leased.job_id == job_id
        reply, before, after = await _fail_and_measure(broker, r, leased)
        assert reply.state == S.JOB_STATE_DELAYED
        job = await status(broker, queue, job_id)
        assert (job.state, job.run_at_ms) == (S.JOB_STATE_DELAYED, reply.run_at_ms)
        delays.append((reply.run_at_ms - after, reply.run_at_ms - before))
        assert await promote(broker, queue, job_id) == S.JOB_STATE_WAITING
    return delays


def _assert_delays(measured: list[tuple[int, int]], expected: list[int]) -> None:
    assert len(measured) == len(expected)
    for (low, high), delay in zip(measured, expected, strict=True):
        assert low <= delay <= high, f"expected delays {expected}, measured windows {measured}"


async def test_fixed_backoff_waits_the_same_before_each_retry(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    job_id = await add_id(broker, queue, attempts=4, backoff=backoff(FIXED, 2_000))
    _assert_delays(await _backoff_delays(broker, queue, r, job_id, 3), [2_000, 2_000, 2_000])
    last = await lease_one(broker, queue)
    reply = await fail(broker, last)
    assert (reply.state, reply.run_at_ms) == (S.JOB_STATE_FAILED, 0)


async def test_exponential_backoff_5000_waits_5_10_20_40_seconds(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    job_id = await add_id(broker, queue, attempts=5, backoff=backoff(EXPONENTIAL, 5_000))
    delays = await _backoff_delays(broker, queue, r, job_id, 4)
    _assert_delays(delays, [5_000, 10_000, 20_000, 40_000])
    last = await lease_one(broker, queue)
    assert last.attempt == 5
    assert (await fail(broker, last)).state == S.JOB_STATE_FAILED
    assert (await status(broker, queue, job_id)).attempts_made == 5


async def test_backoff_is_capped_by_max_delay(broker: Running, queue: str, r: redis.Redis) -> None:
    job_id = await add_id(
        broker, queue, attempts=5, backoff=backoff(EXPONENTIAL, 1_000, max_delay_ms=2_500)
    )
    delays = await _backoff_delays(broker, queue, r, job_id, 4)
    _assert_delays(delays, [1_000, 2_000, 2_500, 2_500])


async def test_backoff_jitter_draws_each_delay_within_its_bounds(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    options = job_pb2.JobOptions(attempts=2, backoff=backoff(FIXED, 10_000, jitter=0.5))
    await broker.jobs.AddBulk(
        job_service_pb2.AddBulkRequest(
            queue=queue,
            jobs=[
                job_service_pb2.BulkJob(name="j", data=payload({"i": i}), options=options)
                for i in range(20)
            ],
        )
    )
    jobs = await lease(broker, queue, max_jobs=20)
    assert len(jobs) == 20
    delays = []
    for leased in jobs:
        reply, before, after = await _fail_and_measure(broker, r, leased)
        assert reply.state == S.JOB_STATE_DELAYED
        # Drawn from [10 s * (1 - 0.5), 10 s].
        assert reply.run_at_ms - before >= 5_000
        assert reply.run_at_ms - after <= 10_000
        delays.append(reply.run_at_ms - before)
    assert len(set(delays)) > 5, f"jittered delays look constant: {delays}"


async def test_jitter_out_of_range_is_refused(broker: Running, queue: str) -> None:
    error = await expect_error(
        add(broker, queue, attempts=2, backoff=backoff(FIXED, 1_000, jitter=1.5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert "jitter" in error.details()


async def test_retry_without_backoff_is_waiting_at_once(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=2)
    reply = await fail(broker, await lease_one(broker, queue))
    assert (reply.state, reply.run_at_ms) == (S.JOB_STATE_WAITING, 0)
    assert (await lease_one(broker, queue)).job_id == job_id


# --- timeout and lifespan ----------------------------------------------------------------------


async def test_timeout_revokes_the_lease_and_fails_the_attempt(
    quiet: Running, queue: str, r: redis.Redis
) -> None:
    job_id = await add_id(quiet, queue, timeout_ms=300)
    async with worker_stream(quiet, "worker-t", [queue]) as stream:
        before = redis_now_ms(r)
        leased = await lease_one(quiet, queue, "worker-t", lease_ms=30_000)
        assert before + 300 <= leased.timeout_at_ms <= redis_now_ms(r) + 300
        assert leased.lease_expires_at_ms == leased.timeout_at_ms

        signal = await stream.signal()
        assert (signal.type, signal.reason) == (
            worker_service_pb2.SIGNAL_TYPE_LEASE_LOST,
            "TIMEOUT",
        )
        assert (signal.queue, signal.job_id, signal.fence) == (queue, job_id, leased.fence)

        job = await wait_state(quiet, queue, job_id, S.JOB_STATE_FAILED)
        assert job.failure.reason == S.FAILURE_REASON_TIMEOUT
        assert job.attempts_made == 1
        await expect_error(
            complete(quiet, leased), grpc.StatusCode.FAILED_PRECONDITION, "LEASE_EXPIRED"
        )
        assert (await status(quiet, queue, job_id)).state == S.JOB_STATE_FAILED


async def test_timed_out_attempt_is_retried_while_attempts_are_left(
    quiet: Running, queue: str
) -> None:
    job_id = await add_id(quiet, queue, timeout_ms=200, attempts=2)
    first = await lease_one(quiet, queue, lease_ms=30_000)
    job = await wait_state(quiet, queue, job_id, S.JOB_STATE_WAITING)
    assert (job.attempts_made, job.failure.reason, job.failure.attempt) == (
        1,
        S.FAILURE_REASON_TIMEOUT,
        1,
    )
    second = await lease_one(quiet, queue)
    assert (second.attempt, second.fence > first.fence) == (2, True)
    assert await complete(quiet, second, {"ok": True}) == S.JOB_STATE_COMPLETED


async def test_renewal_cannot_extend_a_lease_past_the_timeout(broker: Running, queue: str) -> None:
    await add_id(broker, queue, timeout_ms=1_500)
    leased = await lease_one(broker, queue, lease_ms=30_000)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(
            [
                worker_service_pb2.LeaseUpdate(
                    queue=queue, job_id=leased.job_id, token=leased.token, lease_ms=60_000
                )
            ]
        )
    assert ack.leases[0].lease_expires_at_ms == leased.timeout_at_ms


async def test_job_not_started_within_its_lifespan_expires(quiet: Running, queue: str) -> None:
    job_id = await add_id(quiet, queue, lifespan_ms=300)
    job = await wait_state(quiet, queue, job_id, S.JOB_STATE_FAILED, within=2.0)
    assert job.failure.reason == S.FAILURE_REASON_EXPIRED
    assert job.finished_at_ms >= job.created_at_ms + 300
    assert await lease(quiet, queue) == []


async def test_delayed_job_expires_when_its_lifespan_ends_first(quiet: Running, queue: str) -> None:
    job_id = await add_id(quiet, queue, delay_ms=60_000, lifespan_ms=300)
    job = await wait_state(quiet, queue, job_id, S.JOB_STATE_FAILED, within=2.0)
    assert (job.failure.reason, job.run_at_ms) == (S.FAILURE_REASON_EXPIRED, 0)
    await expect_error(
        promote(quiet, queue, job_id), grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_DELAYED"
    )


async def test_lease_never_hands_out_an_expired_job(broker: Running, queue: str) -> None:
    expired = await add_id(broker, queue, lifespan_ms=200)
    fresh = await add_id(broker, queue)
    await asyncio.sleep(0.25)
    jobs = await lease(broker, queue, max_jobs=5)
    assert [j.job_id for j in jobs] == [fresh]
    job = await status(broker, queue, expired)
    assert (job.state, job.failure.reason) == (S.JOB_STATE_FAILED, S.FAILURE_REASON_EXPIRED)


async def test_lifespan_only_bounds_the_start(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, lifespan_ms=300, attempts=2)
    leased = await lease_one(broker, queue)
    await asyncio.sleep(0.45)
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_ACTIVE
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED


# --- retention ---------------------------------------------------------------------------------


async def _run_to_completion(broker: Running, queue: str, **options: object) -> str:
    job_id = await add_id(broker, queue, **options)
    leased = await lease_one(broker, queue)
    assert leased.job_id == job_id
    assert await complete(broker, leased, {"id": job_id}) == S.JOB_STATE_COMPLETED
    return job_id


async def _total(broker: Running, queue: str, state: int) -> int:
    reply = await broker.jobs.ListJobs(job_service_pb2.ListJobsRequest(queue=queue, state=state))
    return reply.total


async def test_remove_on_complete_removes_the_job(broker: Running, queue: str) -> None:
    policy = job_pb2.RetentionPolicy(remove=True)
    job_id = await _run_to_completion(broker, queue, remove_on_complete=policy)
    assert not await exists(broker, queue, job_id)
    assert await _total(broker, queue, S.JOB_STATE_COMPLETED) == 0


async def test_remove_on_complete_keeps_the_last_n(broker: Running, queue: str) -> None:
    policy = job_pb2.RetentionPolicy(keep_last=2)
    ids = [await _run_to_completion(broker, queue, remove_on_complete=policy) for _ in range(4)]
    assert [await exists(broker, queue, i) for i in ids] == [False, False, True, True]
    assert await _total(broker, queue, S.JOB_STATE_COMPLETED) == 2


async def test_remove_on_complete_keeps_jobs_younger_than_keep_age(
    broker: Running, queue: str
) -> None:
    policy = job_pb2.RetentionPolicy(keep_age_ms=300)
    old = await _run_to_completion(broker, queue, remove_on_complete=policy)
    await asyncio.sleep(0.4)
    young = await _run_to_completion(broker, queue, remove_on_complete=policy)
    assert not await exists(broker, queue, old)
    job = await status(broker, queue, young)
    assert decoded(job.result) == {"id": young}


async def test_jobs_are_kept_by_default(broker: Running, queue: str) -> None:
    ids = [await _run_to_completion(broker, queue) for _ in range(3)]
    assert all([await exists(broker, queue, i) for i in ids])
    assert await _total(broker, queue, S.JOB_STATE_COMPLETED) == 3


async def test_remove_on_fail_removes_the_job_once_it_failed_for_good(
    broker: Running, queue: str
) -> None:
    policy = job_pb2.RetentionPolicy(remove=True)
    job_id = await add_id(broker, queue, attempts=2, remove_on_fail=policy)
    assert (await fail(broker, await lease_one(broker, queue))).state == S.JOB_STATE_WAITING
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_WAITING
    assert (await fail(broker, await lease_one(broker, queue))).state == S.JOB_STATE_FAILED
    assert not await exists(broker, queue, job_id)
    assert await _total(broker, queue, S.JOB_STATE_FAILED) == 0


async def test_remove_on_fail_keeps_the_last_n(broker: Running, queue: str) -> None:
    policy = job_pb2.RetentionPolicy(keep_last=1)
    ids = []
    for _ in range(3):
        ids.append(await add_id(broker, queue, remove_on_fail=policy))
        await fail(broker, await lease_one(broker, queue))
    assert [await exists(broker, queue, i) for i in ids] == [False, False, True]


async def test_remove_on_complete_does_not_apply_to_failures(broker: Running, queue: str) -> None:
    policy = job_pb2.RetentionPolicy(remove=True)
    job_id = await add_id(broker, queue, remove_on_complete=policy)
    await fail(broker, await lease_one(broker, queue))
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_FAILED


# --- custom job ids ----------------------------------------------------------------------------


async def test_custom_id_with_same_data_returns_the_existing_job(
    broker: Running, queue: str
) -> None:
    first = await add(broker, queue, {"to": "a@example.com"}, name="email", job_id="welcome-42")
    assert (first.job_id, first.duplicate, first.state) == (
        "welcome-42",
        False,
        S.JOB_STATE_WAITING,
    )
    again = await add(broker, queue, {"to": "a@example.com"}, name="email", job_id="welcome-42")
    assert (again.job_id, again.duplicate, again.state) == ("welcome-42", True, S.JOB_STATE_WAITING)

    leased = await lease_one(broker, queue)
    assert leased.job_id == "welcome-42"
    assert await lease(broker, queue) == []
    active = await add(broker, queue, {"to": "a@example.com"}, name="email", job_id="welcome-42")
    assert (active.duplicate, active.state) == (True, S.JOB_STATE_ACTIVE)
    job = await status(broker, queue, "welcome-42")
    assert job.options.job_id == "welcome-42"


async def test_custom_id_with_other_data_or_name_conflicts(broker: Running, queue: str) -> None:
    await add(broker, queue, {"to": "a@example.com"}, name="email", job_id="welcome-7")
    for data, name in [({"to": "b@example.com"}, "email"), ({"to": "a@example.com"}, "sms")]:
        await expect_error(
            add(broker, queue, data, name=name, job_id="welcome-7"),
            grpc.StatusCode.ALREADY_EXISTS,
            "JOB_ID_CONFLICT",
        )
    job = await status(broker, queue, "welcome-7")
    assert (job.name, decoded(job.data)) == ("email", {"to": "a@example.com"})


async def test_all_digit_custom_id_is_refused(broker: Running, queue: str) -> None:
    error = await expect_error(
        add(broker, queue, job_id="12345"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    assert "job_id" in error.details()


async def test_concurrent_adds_of_one_custom_id_create_exactly_one_job(
    broker: Running, queue: str
) -> None:
    replies = await asyncio.gather(
        *(add(broker, queue, {"same": True}, job_id="only-once") for _ in range(50))
    )
    assert {r.job_id for r in replies} == {"only-once"}
    assert sum(not r.duplicate for r in replies) == 1
    assert await _total(broker, queue, S.JOB_STATE_WAITING) == 1
    jobs = await lease(broker, queue, max_jobs=50)
    assert [j.job_id for j in jobs] == ["only-once"]
