"""A request for jobs on the worker stream that finds none waits for one
(StreamLease.wait_ms): acknowledged at once as waiting, its jobs pushed later on the stream in
one response naming the message (lease_seq)."""

from __future__ import annotations

import asyncio
import time

from conftest import Running
from helpers import S, add_id, lease, outcome_complete, status, worker_stream
from jobbroker.v1 import queue_service_pb2, queue_service_pb2_grpc, worker_service_pb2

StreamLease = worker_service_pb2.StreamLease


async def test_a_request_that_finds_no_job_waits_for_one(broker: Running, queue: str) -> None:
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(lease=StreamLease(queue=queue, max_jobs=5, wait_ms=10_000))
        assert (ack.lease_answered, ack.lease_waiting, ack.lease_can_wait) == (True, True, True)
        assert list(ack.jobs) == []
        assert stream.pushes.empty()
        job_id = await add_id(broker, queue, {"n": 1})
        pushed = await asyncio.wait_for(stream.pushes.get(), 3)
        assert (pushed.seq, pushed.lease_seq, pushed.lease_answered) == (0, ack.seq, True)
        [job] = pushed.jobs
        assert (job.queue, job.job_id, job.attempt) == (queue, job_id, 1)
        leased = await status(broker, queue, job_id)
        assert (leased.state, leased.worker_id) == (S.JOB_STATE_ACTIVE, "worker-1")
        done = await stream.send(outcomes=[outcome_complete(job)])
        assert done.outcomes[0].state == S.JOB_STATE_COMPLETED


async def test_a_request_that_finds_jobs_does_not_wait(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(lease=StreamLease(queue=queue, max_jobs=5, wait_ms=10_000))
        assert (ack.lease_waiting, [job.job_id for job in ack.jobs]) == (False, [job_id])
        assert ack.lease_can_wait


async def test_a_wait_ends_empty_when_its_time_runs_out(broker: Running, queue: str) -> None:
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        started = time.monotonic()
        ack = await stream.send(lease=StreamLease(queue=queue, wait_ms=300))
        assert ack.lease_waiting
        pushed = await asyncio.wait_for(stream.pushes.get(), 3)
        assert time.monotonic() - started >= 0.25
        assert (pushed.lease_seq, list(pushed.jobs)) == (ack.seq, [])


async def test_one_request_waits_at_a_time(broker: Running, queue: str) -> None:
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        first = await stream.send(lease=StreamLease(queue=queue, wait_ms=10_000))
        second = await stream.send(lease=StreamLease(queue=queue, wait_ms=10_000))
        assert (first.lease_waiting, second.lease_waiting) == (True, False)
        assert (second.lease_answered, list(second.jobs)) == (True, [])
        await add_id(broker, queue)
        await add_id(broker, queue)
        pushed = await asyncio.wait_for(stream.pushes.get(), 3)
        assert (pushed.lease_seq, len(pushed.jobs)) == (first.seq, 1)
        await asyncio.sleep(0.3)
        assert stream.pushes.empty()
    [other] = await lease(broker, queue)  # the second job was never leased for the stream
    assert other.attempt == 1


async def test_a_wait_ends_with_its_stream_and_leases_nothing(broker: Running, queue: str) -> None:
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(lease=StreamLease(queue=queue, wait_ms=10_000))
        assert ack.lease_waiting
        stream.call.cancel()
        await asyncio.sleep(0.3)
    job_id = await add_id(broker, queue)
    await asyncio.sleep(0.3)
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_WAITING


async def test_a_paused_queue_holds_a_wait_until_resumed(broker: Running, queue: str) -> None:
    queues = queue_service_pb2_grpc.QueueServiceStub(broker.channel)
    await add_id(broker, queue)
    await queues.PauseQueue(queue_service_pb2.PauseQueueRequest(queue=queue))
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(lease=StreamLease(queue=queue, wait_ms=10_000))
        assert ack.lease_waiting
        await asyncio.sleep(0.3)
        assert stream.pushes.empty()
        await queues.ResumeQueue(queue_service_pb2.ResumeQueueRequest(queue=queue))
        pushed = await asyncio.wait_for(stream.pushes.get(), 3)
        assert len(pushed.jobs) == 1


async def test_end_wait_answers_the_waiting_request_and_leases_nothing_more(
    broker: Running, queue: str
) -> None:
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        ack = await stream.send(lease=StreamLease(queue=queue, wait_ms=30_000))
        assert ack.lease_waiting
        started = time.monotonic()
        ended = await stream.send_request(worker_service_pb2.ReportProgressRequest(end_wait=True))
        assert not ended.lease_answered  # the ending message asks for nothing itself
        pushed = await asyncio.wait_for(stream.pushes.get(), 3)
        assert time.monotonic() - started < 1.0
        assert (pushed.lease_seq, list(pushed.jobs)) == (ack.seq, [])
        job_id = await add_id(broker, queue)
        await asyncio.sleep(0.3)
        assert (await status(broker, queue, job_id)).state == S.JOB_STATE_WAITING


async def test_end_wait_right_after_a_request_keeps_it_from_waiting(
    broker: Running, queue: str
) -> None:
    """Sent before the request's acknowledgement, end_wait still ends it: either the request
    does not wait, or its wait is answered at once."""
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        asking = await stream.post(lease=StreamLease(queue=queue, wait_ms=30_000))
        ending = await stream.post_request(worker_service_pb2.ReportProgressRequest(end_wait=True))
        ack = await asyncio.wait_for(asking, 3)
        await asyncio.wait_for(ending, 3)
        if ack.lease_waiting:
            pushed = await asyncio.wait_for(stream.pushes.get(), 1)
            assert list(pushed.jobs) == []
        job_id = await add_id(broker, queue)
        await asyncio.sleep(0.3)
        assert (await status(broker, queue, job_id)).state == S.JOB_STATE_WAITING
