"""The worker side: lease renewals, outcomes on the stream, and stale leases that change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import (
    E,
    LeasedJob,
    ProgressSubscriber,
    S,
    WorkerStream,
    add_id,
    complete,
    complete_req,
    decoded,
    event_types,
    expect_error,
    fail_req,
    lease,
    lease_one,
    outcome_complete,
    outcome_fail,
    outcome_release,
    private_broker,
    release_req,
    status,
    update,
    wait_state,
    worker_stream,
)
from jobbroker.v1 import job_pb2, worker_service_pb2


@pytest.fixture
async def quiet(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a Redis of its own, for the tests that bound a latency: in the shared Redis
    it would also maintain every queue other tests left behind (see test_options.quiet)."""
    async with private_broker(private_redis.url) as running:
        yield running


LEASE_LOST = worker_service_pb2.SIGNAL_TYPE_LEASE_LOST
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


async def _stall(broker: Running, queue: str, job_id: str) -> job_pb2.Job:
    """Wait until a job whose 1 s lease nobody renews is back to waiting."""
    return await wait_state(broker, queue, job_id, S.JOB_STATE_WAITING, within=3.0)


async def _assert_stream_refuses(stream: WorkerStream, stale: LeasedJob, reason: str) -> None:
    ack = await stream.send([update(stale, percent=99, value={"stale": True}, logs=["stale"])])
    [refused] = ack.leases
    assert (refused.error.code, refused.error.reason) == (FAILED_PRECONDITION, reason)
    assert refused.lease_expires_at_ms == 0
    for outcome in (outcome_complete(stale), outcome_fail(stale), outcome_release(stale)):
        ack = await stream.send(outcomes=[outcome])
        [result] = ack.outcomes
        assert (result.error.code, result.error.reason) == (FAILED_PRECONDITION, reason)
        assert (result.queue, result.job_id) == (stale.queue, stale.job_id)


async def test_superseded_lease_changes_nothing(quiet: Running, queue: str) -> None:
    job_id = await add_id(quiet, queue, attempts=3)
    events = ProgressSubscriber(quiet, queue, job_id)
    await events.next()
    async with (
        worker_stream(quiet, "worker-old", [queue]) as old_stream,
        worker_stream(quiet, "worker-new", [queue]) as new_stream,
    ):
        stale = await lease_one(quiet, queue, "worker-old", lease_ms=1_000)
        job = await _stall(quiet, queue, job_id)
        assert (job.stalled_count, job.attempts_made) == (1, 0)

        signal = await old_stream.signal()
        assert (signal.type, signal.reason, signal.job_id, signal.fence) == (
            LEASE_LOST,
            "STALLED",
            job_id,
            stale.fence,
        )

        fresh = await lease_one(quiet, queue, "worker-new", lease_ms=30_000)
        assert fresh.fence > stale.fence
        await new_stream.send([update(fresh, percent=10, logs=["new worker"])])
        before = await status(quiet, queue, job_id)

        superseded = grpc.StatusCode.FAILED_PRECONDITION, "LEASE_SUPERSEDED"
        await expect_error(quiet.workers.Complete(complete_req(stale, {"x": 1})), *superseded)
        await expect_error(quiet.workers.Fail(fail_req(stale)), *superseded)
        await expect_error(quiet.workers.Release(release_req(stale)), *superseded)
        await _assert_stream_refuses(old_stream, stale, "LEASE_SUPERSEDED")

        after = await status(quiet, queue, job_id)
        assert after == before
        assert (after.state, after.worker_id, after.progress.percent, after.log_count) == (
            S.JOB_STATE_ACTIVE,
            "worker-new",
            10,
            1,
        )
        await new_stream.no_signal(0.1)
        assert await complete(quiet, fresh, {"by": "new"}) == S.JOB_STATE_COMPLETED

    done = await status(quiet, queue, job_id)
    assert decoded(done.result) == {"by": "new"}
    assert event_types(await events.rest()) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_STALLED,
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]


async def test_expired_lease_not_yet_leased_again_is_refused_as_expired(
    quiet: Running, queue: str
) -> None:
    job_id = await add_id(quiet, queue)
    async with worker_stream(quiet, "worker-slow", [queue]) as stream:
        stale = await lease_one(quiet, queue, "worker-slow", lease_ms=1_000)
        await _stall(quiet, queue, job_id)
        await expect_error(
            complete(quiet, stale), grpc.StatusCode.FAILED_PRECONDITION, "LEASE_EXPIRED"
        )
        await _assert_stream_refuses(stream, stale, "LEASE_EXPIRED")
    job = await status(quiet, queue, job_id)
    assert (job.state, job.attempts_made, job.log_count) == (S.JOB_STATE_WAITING, 0, 0)
    assert not job.progress.HasField("percent")


async def test_job_that_stalls_more_than_max_stalled_fails(quiet: Running, queue: str) -> None:
    job_id = await add_id(quiet, queue, attempts=5)
    events = ProgressSubscriber(quiet, queue, job_id)
    await events.next()
    await lease_one(quiet, queue, "worker-1", lease_ms=1_000)
    await _stall(quiet, queue, job_id)
    await lease_one(quiet, queue, "worker-2", lease_ms=1_000)
    job = await wait_state(quiet, queue, job_id, S.JOB_STATE_FAILED, within=3.0)
    assert job.failure.reason == S.FAILURE_REASON_STALLED
    assert job.stalled_count == 2
    rest = await events.rest()
    assert event_types(rest) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_STALLED,
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_STALLED,
        E.EVENT_TYPE_FAILED,
        E.EVENT_TYPE_RETRIES_EXHAUSTED,
    ]
    assert rest[1].event.state == S.JOB_STATE_WAITING
    assert rest[3].event.state == S.JOB_STATE_FAILED
    assert await lease(quiet, queue) == []


async def test_renewals_keep_a_lease_alive(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        leased = await lease_one(broker, queue, lease_ms=1_000)
        expiries = [leased.lease_expires_at_ms]
        for _ in range(4):
            await asyncio.sleep(0.4)
            ack = await stream.send([update(leased)])
            assert not ack.leases[0].HasField("error")
            expiries.append(ack.leases[0].lease_expires_at_ms)
        assert expiries == sorted(expiries)
        assert expiries[-1] - expiries[0] >= 1_400
        await stream.no_signal(0.05)
        job = await status(broker, queue, job_id)
        assert (job.state, job.stalled_count) == (S.JOB_STATE_ACTIVE, 0)
        ack = await stream.send([update(leased, lease_ms=20_000)])
        assert ack.leases[0].lease_expires_at_ms >= expiries[-1] + 18_000
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED


async def test_outcomes_on_the_stream_are_acknowledged_one_by_one(
    broker: Running, queue: str
) -> None:
    ids = [await add_id(broker, queue, {"i": i}, attempts=2) for i in range(3)]
    a, b, c = await lease(broker, queue, max_jobs=3)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(
            updates=[update(a, percent=100, logs=["last line"])],
            outcomes=[outcome_complete(a, {"i": 0}), outcome_fail(b, "nope"), outcome_release(c)],
        )
    assert ack.seq == stream.seq
    assert [(o.job_id, o.state, o.HasField("error")) for o in ack.outcomes] == [
        (ids[0], S.JOB_STATE_COMPLETED, False),
        (ids[1], S.JOB_STATE_WAITING, False),
        (ids[2], S.JOB_STATE_WAITING, False),
    ]
    done = await status(broker, queue, ids[0])
    assert (done.progress.percent, done.log_count, decoded(done.result)) == (100, 1, {"i": 0})
    failed = await status(broker, queue, ids[1])
    assert (failed.attempts_made, failed.failure.message) == (1, "nope")
    assert (await status(broker, queue, ids[2])).attempts_made == 0


async def test_a_bad_item_is_refused_alone(broker: Running, queue: str) -> None:
    await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(
            [update(leased, percent=150), update(leased, percent=50)],
            [worker_service_pb2.Outcome()],
        )
    bad, good = ack.leases
    assert (bad.error.code, bad.error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "INVALID_FIELD",
    )
    assert "percent" in bad.error.message
    assert not good.HasField("error")
    assert ack.outcomes[0].error.reason == "INVALID_FIELD"
    assert (await status(broker, queue, leased.job_id)).progress.percent == 50


async def test_stream_without_worker_id_on_its_first_message_is_refused(
    broker: Running, queue: str
) -> None:
    call = broker.workers.ReportProgress()
    await call.write(worker_service_pb2.ReportProgressRequest(seq=1, queues=[queue]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 3)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "worker_id" in (caught.value.details() or "")


async def test_unary_calls_with_an_unknown_job_are_not_found(broker: Running, queue: str) -> None:
    await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    ghost = LeasedJob()
    ghost.CopyFrom(leased)
    ghost.job_id = "ghost"
    await expect_error(complete(broker, ghost), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
