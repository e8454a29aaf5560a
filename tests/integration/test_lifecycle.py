"""A job's life through the API: add, lease, progress and logs, complete, fail, release."""

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
    E,
    ProgressSubscriber,
    S,
    add,
    add_id,
    complete,
    decoded,
    event_types,
    expect_error,
    fail,
    lease,
    lease_one,
    payload,
    private_broker,
    redis_now_ms,
    release_req,
    status,
    update,
    worker_stream,
)
from jobbroker.v1 import job_pb2, job_service_pb2


@pytest.fixture
async def quiet(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a Redis of its own, for the tests that bound a latency: in the shared Redis
    it would also maintain every queue other tests left behind (see test_options.quiet)."""
    async with private_broker(private_redis.url) as running:
        yield running


async def test_add_lease_progress_logs_complete(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    before = redis_now_ms(r)
    added = await add(broker, queue, {"prompt": "hi"}, name="summarise")
    assert added.state == S.JOB_STATE_WAITING
    assert not added.duplicate

    job = await status(broker, queue, added.job_id)
    assert (job.id, job.queue, job.name, job.state) == (
        added.job_id,
        queue,
        "summarise",
        S.JOB_STATE_WAITING,
    )
    assert decoded(job.data) == {"prompt": "hi"}
    assert before <= job.created_at_ms <= redis_now_ms(r)
    assert (job.attempts_made, job.started_at_ms, job.finished_at_ms, job.log_count) == (0, 0, 0, 0)
    assert job.worker_id == ""

    subscriber = ProgressSubscriber(broker, queue, added.job_id)
    first = await subscriber.next()
    assert first is not None
    assert first.snapshot.state == S.JOB_STATE_WAITING

    leased = await lease_one(broker, queue, "worker-a", lease_ms=10_000)
    assert (leased.job_id, leased.name, leased.attempt, leased.max_attempts) == (
        added.job_id,
        "summarise",
        1,
        1,
    )
    assert decoded(leased.data) == {"prompt": "hi"}
    assert leased.token
    assert leased.fence >= 1
    assert leased.timeout_at_ms == 0
    now = redis_now_ms(r)
    assert now + 8_000 < leased.lease_expires_at_ms <= now + 10_000

    active = await status(broker, queue, added.job_id)
    assert active.state == S.JOB_STATE_ACTIVE
    assert active.worker_id == "worker-a"
    assert before <= active.started_at_ms <= now
    assert active.lease_expires_at_ms == leased.lease_expires_at_ms

    async with worker_stream(broker, "worker-a", [queue]) as stream:
        ack = await stream.send(
            [update(leased, percent=40, value={"tokens": "Hel"}, logs=["start", "step 1"])]
        )
        [lease_status] = ack.leases
        assert not lease_status.HasField("error")
        assert lease_status.lease_expires_at_ms >= leased.lease_expires_at_ms - 100
        ack = await stream.send([update(leased, percent=80, logs=["step 2"])])
        assert not ack.leases[0].HasField("error")

    running = await status(broker, queue, added.job_id)
    assert running.progress.percent == 80
    assert decoded(running.progress.value) == {"tokens": "Hel"}
    assert running.log_count == 3

    assert await complete(broker, leased, {"summary": "hello"}) == S.JOB_STATE_COMPLETED
    done = await status(broker, queue, added.job_id)
    assert done.state == S.JOB_STATE_COMPLETED
    assert decoded(done.result) == {"summary": "hello"}
    assert done.attempts_made == 1
    assert done.worker_id == "worker-a"
    assert done.started_at_ms <= done.finished_at_ms <= redis_now_ms(r)
    assert done.log_count == 3
    assert done.progress.percent == 80
    assert done.lease_expires_at_ms == 0
    assert not done.HasField("failure")

    rest = await subscriber.rest()
    assert event_types(rest) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]
    assert rest[1].event.progress.percent == 40
    assert decoded(rest[1].event.progress.value) == {"tokens": "Hel"}
    assert decoded(rest[-1].event.result) == {"summary": "hello"}


async def test_complete_with_opaque_and_empty_payloads(broker: Running, queue: str) -> None:
    binary = job_pb2.Payload(content_type="application/octet-stream", body=b"\x00\xffnot json")
    reply = await broker.jobs.Add(job_service_pb2.AddRequest(queue=queue, name="b", data=binary))
    leased = await lease_one(broker, queue)
    assert leased.data == binary
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED
    job = await status(broker, queue, reply.job_id)
    assert job.data == binary
    assert job.result.body == b""


async def test_fail_with_retry_then_for_good(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=2)
    first = await lease_one(broker, queue)
    assert (first.attempt, first.max_attempts) == (1, 2)

    reply = await fail(broker, first, "model overloaded")
    assert reply.state == S.JOB_STATE_WAITING
    assert reply.run_at_ms == 0
    job = await status(broker, queue, job_id)
    assert job.state == S.JOB_STATE_WAITING
    assert job.attempts_made == 1
    assert job.failure.reason == S.FAILURE_REASON_ERROR
    assert (job.failure.message, job.failure.error_type, job.failure.stack) == (
        "model overloaded",
        "ValueError",
        "Traceback ...",
    )
    assert job.failure.attempt == 1
    assert job.finished_at_ms == 0

    second = await lease_one(broker, queue)
    assert (second.job_id, second.attempt, second.max_attempts) == (job_id, 2, 2)
    assert second.fence > first.fence
    assert (await fail(broker, second, "still overloaded")).state == S.JOB_STATE_FAILED
    job = await status(broker, queue, job_id)
    assert job.state == S.JOB_STATE_FAILED
    assert job.attempts_made == 2
    assert (job.failure.message, job.failure.attempt) == ("still overloaded", 2)
    assert job.finished_at_ms >= job.started_at_ms > 0
    assert await lease(broker, queue) == []


async def test_fail_without_retry_ends_the_job(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=5)
    leased = await lease_one(broker, queue)
    assert (await fail(broker, leased, "bad input", no_retry=True)).state == S.JOB_STATE_FAILED
    job = await status(broker, queue, job_id)
    assert (job.state, job.attempts_made, job.failure.reason) == (
        S.JOB_STATE_FAILED,
        1,
        S.FAILURE_REASON_ERROR,
    )
    assert await lease(broker, queue) == []


async def test_single_attempt_job_fails_on_first_failure(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    assert leased.max_attempts == 1
    assert (await fail(broker, leased)).state == S.JOB_STATE_FAILED
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_FAILED


async def test_release_gives_the_job_back_without_spending_an_attempt(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    job_id = await add_id(broker, queue, attempts=2)
    first = await lease_one(broker, queue)
    reply = await broker.workers.Release(release_req(first))
    assert reply.state == S.JOB_STATE_WAITING
    job = await status(broker, queue, job_id)
    assert (job.state, job.attempts_made) == (S.JOB_STATE_WAITING, 0)
    assert not job.HasField("failure")

    second = await lease_one(broker, queue)
    assert (second.job_id, second.attempt) == (job_id, 1)

    before = redis_now_ms(r)
    reply = await broker.workers.Release(release_req(second, delay_ms=60_000))
    assert reply.state == S.JOB_STATE_DELAYED
    job = await status(broker, queue, job_id)
    assert (job.state, job.attempts_made) == (S.JOB_STATE_DELAYED, 0)
    assert before + 60_000 <= job.run_at_ms <= redis_now_ms(r) + 60_000
    assert await lease(broker, queue) == []


async def test_release_puts_the_job_before_others_of_its_priority(
    broker: Running, queue: str
) -> None:
    first = await add_id(broker, queue)
    second = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    assert leased.job_id == first
    await broker.workers.Release(release_req(leased))
    jobs = await lease(broker, queue, max_jobs=2)
    assert [j.job_id for j in jobs] == [first, second]


async def test_add_bulk_adds_all_jobs_in_order(broker: Running, queue: str) -> None:
    reply = await broker.jobs.AddBulk(
        job_service_pb2.AddBulkRequest(
            queue=queue,
            jobs=[
                job_service_pb2.BulkJob(name="a", data=payload({"n": 1})),
                job_service_pb2.BulkJob(
                    name="b", data=payload({"n": 2}), options=job_pb2.JobOptions(delay_ms=60_000)
                ),
                job_service_pb2.BulkJob(
                    name="c", data=payload({"n": 3}), options=job_pb2.JobOptions(job_id="c-1")
                ),
            ],
        )
    )
    assert [(r.state, r.duplicate) for r in reply.results] == [
        (S.JOB_STATE_WAITING, False),
        (S.JOB_STATE_DELAYED, False),
        (S.JOB_STATE_WAITING, False),
    ]
    assert reply.results[2].job_id == "c-1"
    assert len({r.job_id for r in reply.results}) == 3
    jobs = await lease(broker, queue, max_jobs=10)
    assert [(j.name, decoded(j.data)) for j in jobs] == [("a", {"n": 1}), ("c", {"n": 3})]


async def _waiting_total(broker: Running, queue: str) -> int:
    reply = await broker.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(queue=queue, state=S.JOB_STATE_WAITING)
    )
    return reply.total


async def test_add_bulk_with_a_conflicting_custom_id_adds_nothing(
    broker: Running, queue: str
) -> None:
    existing = await add(broker, queue, {"v": 1}, job_id="report-7")
    request = job_service_pb2.AddBulkRequest(
        queue=queue,
        jobs=[
            job_service_pb2.BulkJob(name="job", data=payload({"v": 0})),
            job_service_pb2.BulkJob(
                name="job", data=payload({"v": 2}), options=job_pb2.JobOptions(job_id="report-7")
            ),
            job_service_pb2.BulkJob(name="job", data=payload({"v": 3})),
        ],
    )
    await expect_error(
        broker.jobs.AddBulk(request), grpc.StatusCode.ALREADY_EXISTS, "JOB_ID_CONFLICT"
    )
    assert await _waiting_total(broker, queue) == 1
    job = await status(broker, queue, existing.job_id)
    assert decoded(job.data) == {"v": 1}


async def test_add_bulk_with_one_id_twice_and_different_data_adds_nothing(
    broker: Running, queue: str
) -> None:
    def bulk_job(value: int) -> job_service_pb2.BulkJob:
        return job_service_pb2.BulkJob(
            name="job", data=payload({"v": value}), options=job_pb2.JobOptions(job_id="twin")
        )

    request = job_service_pb2.AddBulkRequest(queue=queue, jobs=[bulk_job(1), bulk_job(2)])
    await expect_error(
        broker.jobs.AddBulk(request), grpc.StatusCode.ALREADY_EXISTS, "JOB_ID_CONFLICT"
    )
    assert await _waiting_total(broker, queue) == 0

    same = job_service_pb2.AddBulkRequest(queue=queue, jobs=[bulk_job(1), bulk_job(1)])
    reply = await broker.jobs.AddBulk(same)
    assert [(r.job_id, r.duplicate) for r in reply.results] == [("twin", False), ("twin", True)]
    assert await _waiting_total(broker, queue) == 1


async def test_lease_long_poll_returns_as_soon_as_a_job_is_added(
    quiet: Running, queue: str
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(lease(quiet, queue, wait_ms=5_000))
    await asyncio.sleep(0.2)
    assert not poll.done()
    job_id = await add_id(quiet, queue)
    jobs = await asyncio.wait_for(poll, 5.0)
    elapsed = time.monotonic() - started
    assert [j.job_id for j in jobs] == [job_id]
    assert elapsed < 1.0, f"long poll returned after {elapsed:.2f} s"


async def test_long_poll_on_one_replica_is_woken_by_an_add_on_another(
    quiet: Running, private_redis: Any, queue: str
) -> None:
    async with private_broker(private_redis.url) as other:
        started = time.monotonic()
        poll = asyncio.create_task(lease(quiet, queue, wait_ms=5_000))
        await asyncio.sleep(0.2)
        job_id = await add_id(other, queue)
        jobs = await asyncio.wait_for(poll, 5.0)
    assert [j.job_id for j in jobs] == [job_id]
    assert time.monotonic() - started < 1.0


async def test_lease_long_poll_returns_empty_after_wait(quiet: Running, queue: str) -> None:
    started = time.monotonic()
    jobs = await lease(quiet, queue, wait_ms=500)
    elapsed = time.monotonic() - started
    assert jobs == []
    assert 0.45 <= elapsed < 1.5


async def test_one_added_job_wakes_exactly_one_of_several_long_polls(
    quiet: Running, queue: str
) -> None:
    polls = [
        asyncio.create_task(lease(quiet, queue, f"poller-{i}", wait_ms=3_000)) for i in range(3)
    ]
    await asyncio.sleep(0.2)
    first = await add_id(quiet, queue)
    done, pending = await asyncio.wait(polls, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    assert [[j.job_id for j in task.result()] for task in done] == [[first]]
    await asyncio.sleep(0.1)
    assert len(pending) == 2
    assert not any(task.done() for task in pending)
    others = {await add_id(quiet, queue), await add_id(quiet, queue)}
    results = await asyncio.wait_for(asyncio.gather(*pending), 2.0)
    assert {j.job_id for jobs in results for j in jobs} == others


async def test_concurrent_leases_never_hand_out_a_job_twice(broker: Running, queue: str) -> None:
    ids = {await add_id(broker, queue, {"i": i}) for i in range(30)}
    batches = await asyncio.gather(
        *(lease(broker, queue, f"worker-{i}", max_jobs=4) for i in range(12))
    )
    leased = [j.job_id for jobs in batches for j in jobs]
    assert sorted(leased) == sorted(ids)


async def test_next_attempt_sees_the_progress_of_the_previous_one(
    broker: Running, queue: str
) -> None:
    await add_id(broker, queue, attempts=2)
    first = await lease_one(broker, queue)
    assert not first.progress.HasField("percent")
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        await stream.send([update(first, percent=40, value={"page": 4})])
    await fail(broker, first)
    second = await lease_one(broker, queue)
    assert second.attempt == 2
    assert second.progress.percent == 40
    assert decoded(second.progress.value) == {"page": 4}


async def test_lease_without_wait_returns_at_once(broker: Running, queue: str) -> None:
    started = time.monotonic()
    assert await lease(broker, queue) == []
    assert time.monotonic() - started < 0.5


async def test_lease_hands_out_up_to_max_jobs(broker: Running, queue: str) -> None:
    ids = [await add_id(broker, queue, {"i": i}) for i in range(5)]
    first = await lease(broker, queue, max_jobs=3)
    assert [j.job_id for j in first] == ids[:3]
    assert all(j.token and j.attempt == 1 for j in first)
    second = await lease(broker, queue, max_jobs=3)
    assert [j.job_id for j in second] == ids[3:]


async def test_unknown_job_is_not_found(broker: Running, queue: str) -> None:
    await expect_error(
        broker.jobs.GetStatus(job_service_pb2.GetStatusRequest(queue=queue, job_id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
    )


async def test_bad_input_names_the_field(broker: Running, queue: str) -> None:
    error = await expect_error(
        broker.jobs.Add(job_service_pb2.AddRequest(queue=queue, data=payload({}))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert "name" in error.details()
    error = await expect_error(
        broker.jobs.Add(
            job_service_pb2.AddRequest(
                queue=queue, name="j", data=job_pb2.Payload(body=b"{not json")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert "data" in error.details()


async def test_add_bulk_each_on_its_own_fails_only_the_bad_jobs(
    broker: Running, queue: str
) -> None:
    await add(broker, queue, {"v": 1}, job_id="report-7")
    request = job_service_pb2.AddBulkRequest(
        queue=queue,
        each=True,
        jobs=[
            job_service_pb2.BulkJob(name="job", data=payload({"v": 0})),
            job_service_pb2.BulkJob(
                name="job", data=payload({"v": 2}), options=job_pb2.JobOptions(job_id="report-7")
            ),
            job_service_pb2.BulkJob(name="job", data=job_pb2.Payload(body=b"{not json")),
            job_service_pb2.BulkJob(
                name="job", data=payload({"v": 1}), options=job_pb2.JobOptions(job_id="report-7")
            ),
        ],
    )
    reply = await broker.jobs.AddBulk(request)
    errors = {e.index: (e.code, e.reason, e.metadata.get("field", "")) for e in reply.errors}
    assert errors == {
        1: (grpc.StatusCode.ALREADY_EXISTS.value[0], "JOB_ID_CONFLICT", ""),
        2: (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_FIELD", "data.body"),
    }
    assert reply.results[0].state == S.JOB_STATE_WAITING
    assert reply.results[0].job_id
    assert (reply.results[3].job_id, reply.results[3].duplicate) == ("report-7", True)
    assert await _waiting_total(broker, queue) == 2
