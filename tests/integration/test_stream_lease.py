"""The next batch asked for on the worker stream (ReportProgressRequest.lease): the message's
completions and the leases in one script call, the jobs in its acknowledgement."""

from __future__ import annotations

import grpc
import pytest
from conftest import Running
from helpers import (
    E,
    ProgressSubscriber,
    S,
    add_id,
    decoded,
    event_types,
    lease,
    lease_one,
    outcome_complete,
    outcome_release,
    status,
    update,
    worker_stream,
)
from jobbroker.v1 import worker_service_pb2

StreamLease = worker_service_pb2.StreamLease
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


async def test_outcomes_and_the_next_batch_in_one_message(broker: Running, queue: str) -> None:
    ids = [await add_id(broker, queue, {"i": i}) for i in range(4)]
    events = ProgressSubscriber(broker, queue, ids[1])
    await events.next()
    first = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(
            outcomes=[outcome_complete(first, {"ok": 0})],
            lease=StreamLease(queue=queue, max_jobs=2, lease_ms=20_000),
        )
        assert [(o.job_id, o.state, o.HasField("error")) for o in ack.outcomes] == [
            (ids[0], S.JOB_STATE_COMPLETED, False)
        ]
        assert ack.lease_answered
        assert [job.job_id for job in ack.jobs] == ids[1:3]
        for job in ack.jobs:
            assert (job.queue, job.attempt, job.fence, decoded(job.data)) == (
                queue,
                1,
                1,
                {"i": ids.index(job.job_id)},
            )
            assert job.token.startswith("1-")
            leased = await status(broker, queue, job.job_id)
            assert (leased.state, leased.worker_id) == (S.JOB_STATE_ACTIVE, "worker-1")
        # The leases are live ones: they renew and complete like any other.
        renewed = await stream.send([update(ack.jobs[0], lease_ms=5_000)])
        assert not renewed.leases[0].HasField("error")
        second = await stream.send(
            outcomes=[outcome_complete(job) for job in ack.jobs],
            lease=StreamLease(queue=queue, max_jobs=5),
        )
        assert [o.state for o in second.outcomes] == [S.JOB_STATE_COMPLETED] * 2
        assert [job.job_id for job in second.jobs] == ids[3:]
        third = await stream.send(outcomes=[outcome_complete(second.jobs[0])])
        assert (third.lease_answered, len(third.jobs)) == (False, 0)  # no lease asked
        dry = await stream.send(lease=StreamLease(queue=queue, max_jobs=5))
        assert (dry.lease_answered, len(dry.jobs)) == (True, 0)  # dry: no wait on the stream
    assert [(await status(broker, queue, i)).state for i in ids] == [S.JOB_STATE_COMPLETED] * 4
    assert event_types(await events.rest()) == [E.EVENT_TYPE_ACTIVE, E.EVENT_TYPE_COMPLETED]


async def test_a_stale_completion_is_refused_and_the_batch_still_leased(
    broker: Running, queue: str
) -> None:
    ids = [await add_id(broker, queue) for _ in range(2)]
    stale = await lease_one(broker, queue, lease_ms=30_000)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        given_back = await stream.send(outcomes=[outcome_release(stale)])
        assert given_back.outcomes[0].state == S.JOB_STATE_WAITING
        ack = await stream.send(
            outcomes=[outcome_complete(stale)], lease=StreamLease(queue=queue, max_jobs=5)
        )
    [refused] = ack.outcomes
    assert (refused.error.code, refused.error.reason) == (FAILED_PRECONDITION, "LEASE_EXPIRED")
    assert sorted(job.job_id for job in ack.jobs) == sorted(ids)
    again = next(job for job in ack.jobs if job.job_id == stale.job_id)
    assert again.fence == stale.fence + 1
    job = await status(broker, queue, stale.job_id)
    assert (job.state, job.attempts_made) == (S.JOB_STATE_ACTIVE, 0)


async def test_the_batch_fills_from_the_queues_in_order(broker: Running, queue: str) -> None:
    other = f"{queue}-b"
    a_ids = [await add_id(broker, queue) for _ in range(2)]
    b_ids = [await add_id(broker, other) for _ in range(3)]
    a = await lease_one(broker, queue)
    b = await lease_one(broker, other)
    async with worker_stream(broker, "worker-1", [queue, other]) as stream:
        ack = await stream.send(
            outcomes=[outcome_complete(b), outcome_complete(a)],
            lease=StreamLease(queue=queue, more_queues=[other], max_jobs=3),
        )
    assert [(o.job_id, o.state) for o in ack.outcomes] == [
        (b_ids[0], S.JOB_STATE_COMPLETED),
        (a_ids[0], S.JOB_STATE_COMPLETED),
    ]
    assert [(job.queue, job.job_id) for job in ack.jobs] == [
        (queue, a_ids[1]),
        (other, b_ids[1]),
        (other, b_ids[2]),
    ]


async def test_a_full_batch_leaves_later_queues_completions_applied(
    broker: Running, queue: str
) -> None:
    other = f"{queue}-b"
    await add_id(broker, queue)
    await add_id(broker, queue)
    b_id = await add_id(broker, other)
    b = await lease_one(broker, other)
    async with worker_stream(broker, "worker-1", [queue, other]) as stream:
        ack = await stream.send(
            outcomes=[outcome_complete(b)],
            lease=StreamLease(queue=queue, more_queues=[other], max_jobs=2),
        )
    assert [job.queue for job in ack.jobs] == [queue, queue]
    assert [(o.job_id, o.state) for o in ack.outcomes] == [(b_id, S.JOB_STATE_COMPLETED)]


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        (StreamLease(queue="", max_jobs=1), "lease.queue"),
        (StreamLease(queue="q", max_jobs=1_001), "lease.max_jobs"),
        (StreamLease(queue="q", lease_ms=10), "lease.lease_ms"),
        (StreamLease(queue="q", wait_ms=300_001), "lease.wait_ms"),
    ],
)
async def test_a_bad_lease_ends_the_stream_before_anything_is_applied(
    broker: Running, queue: str, ask: worker_service_pb2.StreamLease, field: str
) -> None:
    await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.send(outcomes=[outcome_complete(leased)], lease=ask)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    assert (await status(broker, queue, leased.job_id)).state == S.JOB_STATE_ACTIVE
    assert await lease(broker, queue) == []


async def test_an_old_worker_without_lease_is_answered_as_before(
    broker: Running, queue: str
) -> None:
    await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(outcomes=[outcome_complete(leased)])
    assert (ack.lease_answered, list(ack.jobs)) == (False, [])
    assert ack.outcomes[0].state == S.JOB_STATE_COMPLETED
