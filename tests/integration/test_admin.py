"""Operator calls on single jobs: ListJobs, Retry, Promote, Remove, GetLogs."""

from __future__ import annotations

import grpc
from conftest import Running
from helpers import (
    S,
    add_id,
    cancel,
    complete,
    decoded,
    exists,
    expect_error,
    fail,
    lease,
    lease_one,
    private_broker,
    promote,
    status,
    update,
    worker_stream,
)
from jobbroker.v1 import job_service_pb2


async def _list(
    broker: Running, queue: str, state: int, page_size: int = 0, token: str = "", desc: bool = False
) -> job_service_pb2.ListJobsResponse:
    return await broker.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(
            queue=queue, state=state, page_size=page_size, page_token=token, descending=desc
        )
    )


async def _ids(broker: Running, queue: str, state: int) -> list[str]:
    return [job.id for job in (await _list(broker, queue, state, page_size=1000)).jobs]


# --- ListJobs ----------------------------------------------------------------------------------


async def test_list_jobs_by_state(broker: Running, queue: str) -> None:
    active, completed, failed = [await add_id(broker, queue) for _ in range(3)]
    held = await lease(broker, queue, max_jobs=3)
    assert [job.job_id for job in held] == [active, completed, failed]
    await complete(broker, held[1])
    await fail(broker, held[2])
    waiting = [await add_id(broker, queue, {"w": i}) for i in range(3)]
    delayed = [await add_id(broker, queue, delay_ms=60_000) for _ in range(2)]
    cancelled = await add_id(broker, queue)
    await cancel(broker, queue, cancelled)

    assert await _ids(broker, queue, S.JOB_STATE_WAITING) == waiting
    assert sorted(await _ids(broker, queue, S.JOB_STATE_DELAYED)) == sorted(delayed)
    assert await _ids(broker, queue, S.JOB_STATE_ACTIVE) == [active]
    assert await _ids(broker, queue, S.JOB_STATE_COMPLETED) == [completed]
    assert await _ids(broker, queue, S.JOB_STATE_FAILED) == [failed]
    assert await _ids(broker, queue, S.JOB_STATE_CANCELLED) == [cancelled]

    listed = await _list(broker, queue, S.JOB_STATE_WAITING)
    assert listed.total == 3
    assert all(job.state == S.JOB_STATE_WAITING and job.queue == queue for job in listed.jobs)
    assert [decoded(job.data) for job in listed.jobs] == [{"w": 0}, {"w": 1}, {"w": 2}]
    [holder] = (await _list(broker, queue, S.JOB_STATE_ACTIVE)).jobs
    assert holder.worker_id == "worker-1"


async def test_list_jobs_pages_through_a_state(broker: Running, queue: str) -> None:
    ids = [await add_id(broker, queue, {"i": i}) for i in range(7)]
    pages, token = [], ""
    while True:
        page = await _list(broker, queue, S.JOB_STATE_WAITING, page_size=3, token=token)
        assert page.total == 7
        pages.append([job.id for job in page.jobs])
        token = page.next_page_token
        if not token:
            break
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]

    first = await _list(broker, queue, S.JOB_STATE_WAITING, page_size=3, desc=True)
    assert [job.id for job in first.jobs] == ids[::-1][:3]
    second = await _list(
        broker, queue, S.JOB_STATE_WAITING, page_size=3, token=first.next_page_token, desc=True
    )
    assert [job.id for job in second.jobs] == ids[::-1][3:6]


async def test_list_jobs_of_an_empty_state(broker: Running, queue: str) -> None:
    page = await _list(broker, queue, S.JOB_STATE_FAILED)
    assert (list(page.jobs), page.next_page_token, page.total) == ([], "", 0)


async def test_list_jobs_refuses_bad_requests(broker: Running, queue: str) -> None:
    for request, field in [
        (job_service_pb2.ListJobsRequest(queue=queue), "state"),
        (
            job_service_pb2.ListJobsRequest(
                queue=queue, state=S.JOB_STATE_WAITING, page_token="not-a-token"
            ),
            "page_token",
        ),
        (
            job_service_pb2.ListJobsRequest(
                queue=queue, state=S.JOB_STATE_WAITING, page_size=5_000
            ),
            "page_size",
        ),
    ]:
        error = await expect_error(
            broker.jobs.ListJobs(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
        )
        assert field in error.details()


# --- Retry -------------------------------------------------------------------------------------


async def test_retry_of_a_failed_job_starts_over(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=2)
    await fail(broker, await lease_one(broker, queue))
    await fail(broker, await lease_one(broker, queue))
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_FAILED

    reply = await broker.jobs.Retry(job_service_pb2.RetryRequest(queue=queue, job_id=job_id))
    assert reply.state == S.JOB_STATE_WAITING
    job = await status(broker, queue, job_id)
    assert (job.state, job.attempts_made, job.finished_at_ms) == (S.JOB_STATE_WAITING, 0, 0)
    assert not job.HasField("failure")
    assert await _ids(broker, queue, S.JOB_STATE_FAILED) == []

    leased = await lease_one(broker, queue)
    assert (leased.job_id, leased.attempt, leased.max_attempts) == (job_id, 1, 2)
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED


async def test_retry_of_a_cancelled_job(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    await cancel(broker, queue, job_id)
    reply = await broker.jobs.Retry(job_service_pb2.RetryRequest(queue=queue, job_id=job_id))
    assert reply.state == S.JOB_STATE_WAITING
    assert (await lease_one(broker, queue)).job_id == job_id


async def test_retry_of_a_job_that_did_not_fail_is_refused(broker: Running, queue: str) -> None:
    waiting = await add_id(broker, queue)
    completed = await add_id(broker, queue)
    leased = await lease(broker, queue, max_jobs=2)
    await complete(broker, leased[1])
    for job_id in (waiting, completed):
        await expect_error(
            broker.jobs.Retry(job_service_pb2.RetryRequest(queue=queue, job_id=job_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "JOB_NOT_RETRYABLE",
        )
    await expect_error(
        broker.jobs.Retry(job_service_pb2.RetryRequest(queue=queue, job_id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
    )


# --- Promote -----------------------------------------------------------------------------------


async def test_promote_makes_a_delayed_job_waiting_now(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, delay_ms=3_600_000)
    assert await lease(broker, queue) == []
    assert await promote(broker, queue, job_id) == S.JOB_STATE_WAITING
    job = await status(broker, queue, job_id)
    assert (job.state, job.run_at_ms) == (S.JOB_STATE_WAITING, 0)
    assert (await lease_one(broker, queue)).job_id == job_id


async def test_promote_of_a_job_that_is_not_delayed_is_refused(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    await expect_error(
        promote(broker, queue, job_id), grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_DELAYED"
    )
    await expect_error(promote(broker, queue, "nope"), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")


# --- Remove ------------------------------------------------------------------------------------


async def _remove(broker: Running, queue: str, job_id: str) -> int:
    reply = await broker.jobs.Remove(job_service_pb2.RemoveRequest(queue=queue, job_id=job_id))
    return reply.state


async def test_remove_jobs_in_each_removable_state(broker: Running, queue: str) -> None:
    completed, failed = await add_id(broker, queue), await add_id(broker, queue)
    leased = await lease(broker, queue, max_jobs=2)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        await stream.send([update(leased[0], logs=["kept until removed"])])
    await complete(broker, leased[0])
    await fail(broker, leased[1])
    waiting = await add_id(broker, queue)
    delayed = await add_id(broker, queue, delay_ms=60_000)
    cancelled = await add_id(broker, queue)
    await cancel(broker, queue, cancelled)

    for job_id, state in [
        (waiting, S.JOB_STATE_WAITING),
        (delayed, S.JOB_STATE_DELAYED),
        (completed, S.JOB_STATE_COMPLETED),
        (failed, S.JOB_STATE_FAILED),
        (cancelled, S.JOB_STATE_CANCELLED),
    ]:
        assert await _remove(broker, queue, job_id) == state
        assert not await exists(broker, queue, job_id)
        assert await _ids(broker, queue, state) == []
        await expect_error(
            _remove(broker, queue, job_id), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND"
        )
    await expect_error(_logs(broker, queue, completed), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert await lease(broker, queue) == []


async def test_remove_refuses_an_active_job(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    await expect_error(
        _remove(broker, queue, job_id), grpc.StatusCode.FAILED_PRECONDITION, "JOB_ACTIVE"
    )
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_ACTIVE
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED
    await expect_error(_remove(broker, queue, "nope"), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")


# --- GetLogs -----------------------------------------------------------------------------------


async def _logs(
    broker: Running, queue: str, job_id: str, offset: int = 0, limit: int = 0
) -> job_service_pb2.GetLogsResponse:
    return await broker.jobs.GetLogs(
        job_service_pb2.GetLogsRequest(queue=queue, job_id=job_id, offset=offset, limit=limit)
    )


async def test_get_logs_reads_ranges_of_lines(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    lines = [f"line {i}" for i in range(10)]
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        await stream.send([update(leased, logs=lines[:4])])
        await stream.send([update(leased, logs=lines[4:])])

    everything = await _logs(broker, queue, job_id)
    assert (list(everything.lines), everything.total) == (lines, 10)
    middle = await _logs(broker, queue, job_id, offset=3, limit=4)
    assert (list(middle.lines), middle.total) == (lines[3:7], 10)
    tail = await _logs(broker, queue, job_id, offset=8, limit=100)
    assert list(tail.lines) == lines[8:]
    past = await _logs(broker, queue, job_id, offset=50)
    assert (list(past.lines), past.total) == ([], 10)
    assert (await status(broker, queue, job_id)).log_count == 10


async def test_get_logs_of_a_job_without_logs_and_of_an_unknown_job(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    empty = await _logs(broker, queue, job_id)
    assert (list(empty.lines), empty.total) == ([], 0)
    await expect_error(_logs(broker, queue, "nope"), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")


async def test_only_the_newest_log_lines_are_kept(redis_url: str, queue: str) -> None:
    async with private_broker(redis_url, max_log_lines=5) as running:
        job_id = await add_id(running, queue)
        leased = await lease_one(running, queue)
        async with worker_stream(running, "worker-1", [queue]) as stream:
            await stream.send([update(leased, logs=[f"l{i}" for i in range(4)])])
            await stream.send([update(leased, logs=[f"l{i}" for i in range(4, 8)])])
        logs = await _logs(running, queue, job_id)
        assert (list(logs.lines), logs.total) == ([f"l{i}" for i in range(3, 8)], 5)
        assert await exists(running, queue, job_id)
