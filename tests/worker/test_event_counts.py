"""What a queue's event feed says about jobs a worker runs: counts a dashboard can rely on."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import grpc
from jobbroker import JobContext
from jobbroker.v1 import events_pb2, queue_service_pb2, queue_service_pb2_grpc

from .worker_harness import Running, make_worker, serving, until

JOBS = 200


async def test_jobs_run_once_each_make_one_active_event_each(broker: Running, queue: str) -> None:
    """A worker whose slots are all busy must not lease jobs it cannot start: each lease is an
    `active` event, so a job leased and given back would be counted active twice."""
    stub = queue_service_pb2_grpc.QueueServiceStub(broker.channel)
    watch = stub.WatchEvents(
        queue_service_pb2.WatchEventsRequest(queue=queue, after_event_id="0-0")
    )
    events: list[events_pb2.JobEvent] = []
    completed: set[str] = set()

    async def read() -> None:
        async for item in watch:
            events.append(item.event)
            if item.event.type == events_pb2.EVENT_TYPE_COMPLETED:
                completed.add(item.event.job_id)

    reader = asyncio.create_task(read())
    worker = make_worker(broker, queue, concurrency=4)

    @worker.handler()
    async def work(ctx: JobContext) -> None:
        await asyncio.sleep(0.002)

    # Half the jobs wait before the worker starts (its first Lease calls find a full queue),
    # half arrive while it runs (its calls find the queue dry, then not).
    ids = [await broker.add(queue, {"i": i}) for i in range(JOBS // 2)]
    try:
        async with serving(worker):
            ids += [await broker.add(queue, {"i": i}) for i in range(JOBS // 2, JOBS)]
            await until(lambda: completed >= set(ids), within=60)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await reader
    kinds = Counter(events_pb2.EventType.Name(e.type) for e in events)
    active = Counter(e.job_id for e in events if e.type == events_pb2.EVENT_TYPE_ACTIVE)
    assert kinds["EVENT_TYPE_RELEASED"] == 0, kinds
    assert sum(active.values()) == JOBS, kinds
    assert set(active.values()) == {1}
