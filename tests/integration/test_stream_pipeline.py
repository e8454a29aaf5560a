"""The worker stream applies messages in a pipeline (worker_stream.MAX_APPLYING) that keeps
their order: a message's store calls wait for the calls of the one before it, acknowledgements
go out in order, and a refused message ends the stream after the ones before it were
acknowledged, with nothing after it applied."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import S, add_id, lease_one, outcome_complete, status, update, worker_stream
from jobbroker.v1 import worker_service_pb2
from jobbroker_broker.loops.registry import WorkerRegistry

SLOW_S = 0.3


@pytest.fixture
def slow_reports(broker: Running, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every lease update's store call take SLOW_S; returns the job ids as each call ends."""
    store = broker.broker.store
    report = store.report
    ended: list[str] = []

    async def slow(queue: str, updates: Any, lease_ms: Any) -> Any:
        await asyncio.sleep(SLOW_S)
        try:
            return await report(queue, updates, lease_ms)
        finally:
            ended.extend(u.job_id for u in updates)

    monkeypatch.setattr(store, "report", slow)
    return ended


async def test_a_completion_sent_right_after_progress_waits_for_it(
    broker: Running, queue: str, slow_reports: list[str]
) -> None:
    await add_id(broker, queue)
    job = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        progress = await stream.post([update(job, percent=50)])
        completion = await stream.post(outcomes=[outcome_complete(job)])
        acks = []
        for future in asyncio.as_completed((progress, completion), timeout=5):
            acks.append(await future)
    assert [ack.seq for ack in acks] == [2, 3]  # in order, though the first was slower
    [renewed] = acks[0].leases
    assert not renewed.HasField("error")
    assert renewed.lease_expires_at_ms > 0
    [completed] = acks[1].outcomes
    assert not completed.HasField("error")
    assert slow_reports == [job.job_id]
    job_now = await status(broker, queue, job.job_id)
    assert job_now.state == S.JOB_STATE_COMPLETED
    assert job_now.progress.percent == 50


async def test_a_refused_message_ends_the_stream_after_the_ones_before_it(
    broker: Running, queue: str, slow_reports: list[str]
) -> None:
    await add_id(broker, queue)
    await add_id(broker, queue)
    first = await lease_one(broker, queue)
    second = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        renewal = await stream.post([update(first, percent=10)])
        bad = worker_service_pb2.StreamLease(queue=queue, max_jobs=10**6, lease_ms=30_000)
        refused = await stream.post(lease=bad)
        after = await stream.post(outcomes=[outcome_complete(second)])
        ack = await asyncio.wait_for(renewal, 5)
        [renewed] = ack.leases
        assert not renewed.HasField("error")
        for future in (refused, after):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(future, 5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "lease.max_jobs" in (caught.value.details() or "")
    assert (await status(broker, queue, second.job_id)).state == S.JOB_STATE_ACTIVE
    assert (await status(broker, queue, first.job_id)).progress.percent == 10


async def test_acknowledgements_go_out_in_order(
    broker: Running, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first message's own work after its script call is slow (the worker registry's
    write): the second, applied meanwhile, is still acknowledged after it."""
    streaming = WorkerRegistry.streaming
    held = asyncio.Event()

    async def slow(self: WorkerRegistry, worker_id: str, queues: list[str]) -> None:
        if held.is_set():
            held.clear()
            await asyncio.sleep(SLOW_S)
        await streaming(self, worker_id, queues)

    await add_id(broker, queue)
    await add_id(broker, queue)
    job = await lease_one(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        monkeypatch.setattr(WorkerRegistry, "streaming", slow)
        held.set()
        ask = worker_service_pb2.StreamLease(queue=queue, max_jobs=1, lease_ms=30_000)
        leasing = await stream.post(lease=ask)
        completing = await stream.post(outcomes=[outcome_complete(job)])
        acks = [await future for future in asyncio.as_completed((leasing, completing), timeout=5)]
    assert [ack.seq for ack in acks] == [2, 3]
    assert len(acks[0].jobs) == 1
    assert not acks[1].outcomes[0].HasField("error")


async def test_two_messages_in_hand_subscribe_to_a_queue_once(
    broker: Running, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message's lease from a second queue and the next message naming that queue both
    subscribe to its signals at once: the session keeps one subscription."""
    other = f"{queue}-other"
    hub = broker.broker.hub
    subscribe = hub.subscribe

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        return await subscribe(*args, **kwargs)

    async with worker_stream(broker, "worker-1", [queue]) as stream:
        monkeypatch.setattr(hub, "subscribe", slow)
        ask = worker_service_pb2.StreamLease(
            queue=queue, more_queues=[other], max_jobs=1, lease_ms=30_000
        )
        leasing = await stream.post(lease=ask)
        naming = await stream.post(queues=[other])
        await asyncio.wait_for(asyncio.gather(leasing, naming), 5)
        callbacks = hub._reader(other, "signals").by_worker.get(b"worker-1", set())
        assert len(callbacks) == 1
