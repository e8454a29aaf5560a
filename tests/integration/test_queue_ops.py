"""QueueService operations: counts, pause and resume, drain, clean, obliterate, bulk retry and
promotion, settings and the per-queue max-stalled count."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import (
    S,
    add_id,
    cancel,
    complete,
    error_info,
    exists,
    expect_error,
    fail,
    lease,
    lease_one,
    payload,
    private_broker,
    promote,
    release_req,
    status,
    wait_state,
)
from jobbroker.v1 import job_pb2, job_service_pb2, queue_service_pb2, queue_service_pb2_grpc

Q = queue_service_pb2
BULK = 1_000


def queues(running: Running) -> queue_service_pb2_grpc.QueueServiceStub:
    return queue_service_pb2_grpc.QueueServiceStub(running.channel)


async def info(running: Running, queue: str) -> Q.QueueInfo:
    return (await queues(running).GetQueue(Q.GetQueueRequest(queue=queue))).queue


async def counts(running: Running, queue: str) -> dict[str, int]:
    c = (await info(running, queue)).counts
    return {
        name: getattr(c, name)
        for name in ("waiting", "delayed", "active", "completed", "failed", "cancelled")
        if getattr(c, name)
    }


async def add_bulk(running: Running, queue: str, n: int, **options: Any) -> list[str]:
    """Add `n` jobs with AddBulk, 1,000 per call; return their ids in order."""
    ids: list[str] = []
    for start in range(0, n, BULK):
        jobs = [
            job_service_pb2.BulkJob(
                name="bulk", data=payload({"i": i}), options=job_pb2.JobOptions(**options)
            )
            for i in range(start, min(n, start + BULK))
        ]
        reply = await running.jobs.AddBulk(job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs))
        ids.extend(result.job_id for result in reply.results)
    return ids


async def fail_all(running: Running, queue: str, n: int) -> None:
    """Lease `n` jobs and fail each of them for good."""
    while n > 0:
        held = await lease(running, queue, max_jobs=min(n, 1_000))
        assert held
        for start in range(0, len(held), 200):
            await asyncio.gather(
                *(fail(running, j, no_retry=True) for j in held[start : start + 200])
            )
        n -= len(held)


async def clean(
    running: Running, queue: str, state: int, grace_ms: int = 0, limit: int = 0
) -> list[str]:
    reply = await queues(running).CleanQueue(
        Q.CleanQueueRequest(queue=queue, state=state, grace_ms=grace_ms, limit=limit)
    )
    return list(reply.job_ids)


async def drain(running: Running, queue: str, include_delayed: bool = False) -> int:
    reply = await queues(running).DrainQueue(
        Q.DrainQueueRequest(queue=queue, include_delayed=include_delayed)
    )
    return int(reply.removed)


def plain(settings: Q.QueueSettings) -> tuple[int, ...]:
    """Settings as a comparable tuple (unset and empty sub-messages alike)."""
    return (
        settings.rate_limit.max,
        settings.rate_limit.duration_ms,
        settings.concurrency,
        settings.group_rate_limit.max,
        settings.group_rate_limit.duration_ms,
        settings.max_stalled,
    )


async def set_settings(running: Running, queue: str, **fields: Any) -> Q.QueueSettings:
    reply = await queues(running).UpdateQueueSettings(
        Q.UpdateQueueSettingsRequest(queue=queue, settings=Q.QueueSettings(**fields))
    )
    return reply.settings


# --- counts, ListQueues --------------------------------------------------------------------------


async def test_counts_after_each_kind_of_transition(broker: Running, queue: str) -> None:
    first = await add_id(broker, queue)
    assert await counts(broker, queue) == {"waiting": 1}
    later = await add_id(broker, queue, delay_ms=60_000)
    assert await counts(broker, queue) == {"waiting": 1, "delayed": 1}

    job = await lease_one(broker, queue)
    assert job.job_id == first
    assert await counts(broker, queue) == {"delayed": 1, "active": 1}
    await broker.workers.Release(release_req(job))
    assert await counts(broker, queue) == {"waiting": 1, "delayed": 1}
    await complete(broker, await lease_one(broker, queue))
    assert await counts(broker, queue) == {"delayed": 1, "completed": 1}

    assert await promote(broker, queue, later) == S.JOB_STATE_WAITING
    assert await counts(broker, queue) == {"waiting": 1, "completed": 1}
    await fail(broker, await lease_one(broker, queue), no_retry=True)
    assert await counts(broker, queue) == {"completed": 1, "failed": 1}

    retried = await add_id(
        broker,
        queue,
        attempts=2,
        backoff=job_pb2.Backoff(type=job_pb2.BACKOFF_TYPE_FIXED, delay_ms=60_000),
    )
    reply = await fail(broker, await lease_one(broker, queue))
    assert reply.state == S.JOB_STATE_DELAYED
    assert await counts(broker, queue) == {"delayed": 1, "completed": 1, "failed": 1}

    assert await cancel(broker, queue, retried) == S.JOB_STATE_CANCELLED
    assert await counts(broker, queue) == {"completed": 1, "failed": 1, "cancelled": 1}

    moved = await queues(broker).RetryFailedJobs(Q.RetryFailedJobsRequest(queue=queue))
    assert moved.retried == 1
    assert await counts(broker, queue) == {"waiting": 1, "completed": 1, "cancelled": 1}


async def test_list_queues_lists_the_queue_with_counts(broker: Running, queue: str) -> None:
    await add_id(broker, queue)
    await add_id(broker, queue, delay_ms=60_000)
    await set_settings(broker, queue, concurrency=4)
    await queues(broker).PauseQueue(Q.PauseQueueRequest(queue=queue))
    listed = (await queues(broker).ListQueues(Q.ListQueuesRequest())).queues
    [mine] = [q for q in listed if q.name == queue]
    assert (mine.counts.waiting, mine.counts.delayed, mine.counts.active) == (1, 1, 0)
    assert mine.paused
    assert mine.settings.concurrency == 4
    names = [q.name for q in listed]
    assert names == sorted(names)


async def test_queue_added_again_after_obliterate_on_another_broker_is_listed(
    broker: Running, queue: str, redis_url: str
) -> None:
    async with private_broker(redis_url) as other:
        await add_id(other, queue)
        await queues(broker).ObliterateQueue(Q.ObliterateQueueRequest(queue=queue))
        await add_id(other, queue)
        listed = (await queues(broker).ListQueues(Q.ListQueuesRequest())).queues
        assert [q.counts.waiting for q in listed if q.name == queue] == [1]


# --- pause and resume ----------------------------------------------------------------------------


async def test_pause_stops_leasing_across_two_brokers_and_resume_restarts_it(
    broker: Running, queue: str, redis_url: str
) -> None:
    ids = [await add_id(broker, queue) for _ in range(3)]
    async with private_broker(redis_url) as other:
        await queues(broker).PauseQueue(Q.PauseQueueRequest(queue=queue))
        assert (await info(other, queue)).paused
        assert await lease(broker, queue, max_jobs=3) == []
        assert await lease(other, queue, "worker-2", max_jobs=3) == []
        assert await lease(other, queue, "worker-2", max_jobs=3, wait_ms=200) == []
        # Adding to a paused queue works; the jobs wait (and count as waiting).
        ids.append(await add_id(other, queue))
        assert await counts(other, queue) == {"waiting": 4}
        # Pausing twice is harmless.
        await queues(other).PauseQueue(Q.PauseQueueRequest(queue=queue))

        await queues(other).ResumeQueue(Q.ResumeQueueRequest(queue=queue))
        assert not (await info(broker, queue)).paused
        got = await lease(broker, queue, max_jobs=2)
        got += await lease(other, queue, "worker-2", max_jobs=2)
        assert [j.job_id for j in got] == ids


async def test_long_polling_lease_on_paused_queue_returns_promptly_after_resume(
    broker: Running, queue: str, redis_url: str
) -> None:
    job_id = await add_id(broker, queue)
    await queues(broker).PauseQueue(Q.PauseQueueRequest(queue=queue))
    async with private_broker(redis_url) as other:
        waiting = asyncio.create_task(lease(other, queue, "worker-2", wait_ms=20_000))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        resumed = time.monotonic()
        await queues(broker).ResumeQueue(Q.ResumeQueueRequest(queue=queue))
        jobs = await asyncio.wait_for(waiting, 5.0)
        # Well before the 20 s wait; generous for a loaded machine.
        assert time.monotonic() - resumed < 2.0
        assert [j.job_id for j in jobs] == [job_id]


# --- obliterate -----------------------------------------------------------------------------------


async def test_obliterate_refused_while_jobs_are_active_unless_forced(
    broker: Running, queue: str
) -> None:
    ids = [await add_id(broker, queue) for _ in range(3)]
    await add_id(broker, queue, delay_ms=60_000)
    held = await lease_one(broker, queue)
    error = await expect_error(
        queues(broker).ObliterateQueue(Q.ObliterateQueueRequest(queue=queue)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_ACTIVE",
    )
    assert queue in error.details()
    assert await counts(broker, queue) == {"waiting": 2, "delayed": 1, "active": 1}

    reply = await queues(broker).ObliterateQueue(Q.ObliterateQueueRequest(queue=queue, force=True))
    assert reply.removed == 4
    assert await counts(broker, queue) == {}
    assert [await exists(broker, queue, i) for i in ids] == [False] * 3
    await expect_error(complete(broker, held), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    listed = (await queues(broker).ListQueues(Q.ListQueuesRequest())).queues
    assert queue not in [q.name for q in listed]


async def test_obliterate_without_active_jobs_removes_everything(
    broker: Running, queue: str
) -> None:
    await set_settings(broker, queue, concurrency=2)
    await queues(broker).PauseQueue(Q.PauseQueueRequest(queue=queue))
    await add_bulk(broker, queue, 1_500)
    reply = await queues(broker).ObliterateQueue(Q.ObliterateQueueRequest(queue=queue))
    assert reply.removed == 1_500
    after = await info(broker, queue)
    assert (after.paused, after.settings.concurrency, await counts(broker, queue)) == (False, 0, {})


# --- bulk retry and promotion ---------------------------------------------------------------------


async def test_retry_failed_jobs_moves_every_failed_job_over_several_batches(
    broker: Running, queue: str
) -> None:
    n = 2 * BULK + 100
    ids = await add_bulk(broker, queue, n, attempts=1)
    await fail_all(broker, queue, n)
    assert await counts(broker, queue) == {"failed": n}

    reply = await queues(broker).RetryFailedJobs(Q.RetryFailedJobsRequest(queue=queue))
    assert reply.retried == n
    assert await counts(broker, queue) == {"waiting": n}
    job = await status(broker, queue, ids[-1])
    assert (job.state, job.attempts_made, job.failure.reason) == (
        S.JOB_STATE_WAITING,
        0,
        S.FAILURE_REASON_UNSPECIFIED,
    )
    assert (await lease_one(broker, queue)).attempt == 1
    again = await queues(broker).RetryFailedJobs(Q.RetryFailedJobsRequest(queue=queue))
    assert again.retried == 0


async def test_promote_delayed_jobs_moves_every_delayed_job_over_several_batches(
    broker: Running, queue: str
) -> None:
    n = 2 * BULK + 100
    ids = await add_bulk(broker, queue, n, delay_ms=600_000)
    assert await counts(broker, queue) == {"delayed": n}
    reply = await queues(broker).PromoteDelayedJobs(Q.PromoteDelayedJobsRequest(queue=queue))
    assert reply.promoted == n
    assert await counts(broker, queue) == {"waiting": n}
    assert (await status(broker, queue, ids[0])).state == S.JOB_STATE_WAITING
    assert await lease_one(broker, queue)
    again = await queues(broker).PromoteDelayedJobs(Q.PromoteDelayedJobsRequest(queue=queue))
    assert again.promoted == 0


# --- drain ----------------------------------------------------------------------------------------


async def test_drain_with_and_without_delayed(broker: Running, queue: str) -> None:
    [await add_id(broker, queue) for _ in range(4)]
    delayed = [await add_id(broker, queue, delay_ms=60_000) for _ in range(2)]
    active = await lease_one(broker, queue)

    assert await drain(broker, queue) == 3
    assert await counts(broker, queue) == {"delayed": 2, "active": 1}
    assert all([await exists(broker, queue, i) for i in delayed])

    await add_id(broker, queue)
    assert await drain(broker, queue, include_delayed=True) == 3
    assert await counts(broker, queue) == {"active": 1}
    assert not any([await exists(broker, queue, i) for i in delayed])
    # The active job is untouched and finishes normally.
    assert await complete(broker, active) == S.JOB_STATE_COMPLETED
    assert await drain(broker, queue, include_delayed=True) == 0


async def test_drain_and_clean_a_large_queue_in_batches(broker: Running, queue: str) -> None:
    ids = await add_bulk(broker, queue, 2 * BULK + 500)
    removed = await clean(broker, queue, S.JOB_STATE_WAITING, limit=2_200)
    assert removed == ids[:2_200]
    assert await counts(broker, queue) == {"waiting": 300}

    await add_bulk(broker, queue, 2 * BULK, delay_ms=60_000)
    assert await drain(broker, queue) == 300
    assert await counts(broker, queue) == {"delayed": 2 * BULK}
    assert await drain(broker, queue, include_delayed=True) == 2 * BULK
    assert await counts(broker, queue) == {}


# --- clean ----------------------------------------------------------------------------------------


async def test_clean_by_state_with_grace_and_limit_returns_the_removed_ids(
    broker: Running, queue: str
) -> None:
    old = [await add_id(broker, queue) for _ in range(3)]
    for job in await lease(broker, queue, max_jobs=3):
        await complete(broker, job)
    failed = await add_id(broker, queue)
    await fail(broker, await lease_one(broker, queue), no_retry=True)
    started = time.monotonic()
    await asyncio.sleep(1.0)
    new = [await add_id(broker, queue) for _ in range(2)]
    for job in await lease(broker, queue, max_jobs=2):
        await complete(broker, job)
    assert time.monotonic() - started < 5.0  # the grace below relies on it

    # Completed long enough ago (grace 800 ms): only the old ones, oldest first, up to the limit.
    assert await clean(broker, queue, S.JOB_STATE_COMPLETED, grace_ms=800, limit=2) == old[:2]
    assert await clean(broker, queue, S.JOB_STATE_COMPLETED, grace_ms=800) == old[2:]
    assert await clean(broker, queue, S.JOB_STATE_COMPLETED, grace_ms=800) == []
    assert await counts(broker, queue) == {"completed": 2, "failed": 1}
    # Other states are left alone; no grace takes everything of the state.
    assert await clean(broker, queue, S.JOB_STATE_COMPLETED) == new
    assert await clean(broker, queue, S.JOB_STATE_FAILED, grace_ms=800) == [failed]
    assert await counts(broker, queue) == {}

    waiting = [await add_id(broker, queue) for _ in range(3)]
    cancelled = await add_id(broker, queue)
    await cancel(broker, queue, cancelled)
    assert await clean(broker, queue, S.JOB_STATE_WAITING, grace_ms=60_000) == []
    assert await clean(broker, queue, S.JOB_STATE_CANCELLED) == [cancelled]
    assert await clean(broker, queue, S.JOB_STATE_WAITING, limit=2) == waiting[:2]
    assert await counts(broker, queue) == {"waiting": 1}


async def test_clean_refuses_active_and_bad_limits(broker: Running, queue: str) -> None:
    for request, field in [
        (Q.CleanQueueRequest(queue=queue, state=S.JOB_STATE_ACTIVE), "state"),
        (Q.CleanQueueRequest(queue=queue, state=S.JOB_STATE_FAILED, limit=100_001), "limit"),
    ]:
        error = await expect_error(
            queues(broker).CleanQueue(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
        )
        assert error_info(error).metadata["field"] == field


async def test_clean_delayed_finds_old_jobs_behind_younger_ones(
    broker: Running, queue: str
) -> None:
    old = [await add_id(broker, queue, delay_ms=600_000) for _ in range(3)]
    await asyncio.sleep(0.6)
    [await add_id(broker, queue, delay_ms=300_000) for _ in range(3)]
    assert await clean(broker, queue, S.JOB_STATE_DELAYED, grace_ms=500, limit=1) == old[:1]


# --- settings ------------------------------------------------------------------------------------


async def test_update_queue_settings_and_get_queue_shows_them(broker: Running, queue: str) -> None:
    before = await info(broker, queue)
    assert plain(before.settings) == (0, 0, 0, 0, 0, 0)
    assert not before.paused
    stored = await set_settings(
        broker, queue, rate_limit=Q.RateLimit(max=10, duration_ms=1_000), concurrency=5
    )
    assert plain(stored) == (10, 1_000, 5, 0, 0, 0)
    assert plain((await info(broker, queue)).settings) == plain(stored)
    stored = await set_settings(broker, queue, max_stalled=3)
    # The settings replace the current ones as a whole.
    assert plain(stored) == (0, 0, 0, 0, 0, 3)
    assert plain((await info(broker, queue)).settings) == (0, 0, 0, 0, 0, 3)


async def test_update_queue_settings_with_every_field_set(broker: Running, queue: str) -> None:
    stored = await set_settings(
        broker,
        queue,
        rate_limit=Q.RateLimit(max=10, duration_ms=1_000),
        concurrency=5,
        max_stalled=3,
    )
    assert plain(stored) == (10, 1_000, 5, 0, 0, 3)
    assert plain((await info(broker, queue)).settings) == (10, 1_000, 5, 0, 0, 3)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rate_limit": Q.RateLimit(max=5)}, "settings.rate_limit.duration_ms"),
        (
            {"rate_limit": Q.RateLimit(max=5, duration_ms=86_400_001)},
            "settings.rate_limit.duration_ms",
        ),
        ({"rate_limit": Q.RateLimit(duration_ms=1_000)}, "settings.rate_limit.max"),
        ({"group_rate_limit": Q.RateLimit(max=1)}, "settings.group_rate_limit.duration_ms"),
        ({"group_rate_limit": Q.RateLimit(duration_ms=5)}, "settings.group_rate_limit.max"),
        ({"max_stalled": 1_001}, "settings.max_stalled"),
    ],
)
async def test_update_queue_settings_validation(
    broker: Running, queue: str, fields: dict[str, Any], field: str
) -> None:
    await set_settings(broker, queue, concurrency=7)
    error = await expect_error(
        set_settings(broker, queue, **fields), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    assert error_info(error).metadata["field"] == field
    assert field in error.details()
    assert plain((await info(broker, queue)).settings) == (0, 0, 7, 0, 0, 0)


async def test_queue_operations_validate_the_queue_name(broker: Running) -> None:
    error = await expect_error(
        queues(broker).GetQueue(Q.GetQueueRequest(queue="bad name!")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert error_info(error).metadata["field"] == "queue"


# --- max stalled ---------------------------------------------------------------------------------


async def test_per_queue_max_stalled_is_used_by_the_reaper(broker: Running, queue: str) -> None:
    # The broker's default is 1 (a second stall fails the job); this queue allows 2.
    await set_settings(broker, queue, max_stalled=2)
    job_id = await add_id(broker, queue, attempts=5)
    for stalls in (1, 2):
        await lease_one(broker, queue, f"worker-{stalls}", lease_ms=1_000)
        job = await wait_state(broker, queue, job_id, S.JOB_STATE_WAITING, within=4.0)
        assert (job.stalled_count, job.attempts_made) == (stalls, 0)
    await lease_one(broker, queue, "worker-3", lease_ms=1_000)
    job = await wait_state(broker, queue, job_id, S.JOB_STATE_FAILED, within=4.0)
    assert (job.failure.reason, job.stalled_count) == (S.FAILURE_REASON_STALLED, 3)
