"""What a broker does on shutdown (SIGTERM calls the same ``Broker.stop``): health turns
NOT_SERVING, long-polling leases return empty, streams end with UNAVAILABLE / SHUTTING_DOWN
(the client's cue to reconnect elsewhere), and new streams are refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobbroker import AsyncClient
from jobbroker.v1 import job_service_pb2 as J
from jobbroker.v1 import job_service_pb2_grpc, worker_service_pb2_grpc
from jobbroker.v1 import worker_service_pb2 as W
from jobbroker_broker.server.app import Broker
from jobbroker_broker.server.services.worker_stream import WorkerSession
from jobbroker_broker.settings import Settings

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=3.0)


@pytest.fixture
async def broker(redis_url: str) -> Broker:
    broker = Broker(replace(SETTINGS, redis_url=redis_url))
    await broker.start()
    yield broker
    await broker.stop(0)


async def test_shutdown_ends_long_polls_and_streams_with_a_reconnect_status(
    broker: Broker, queue: str
) -> None:
    address = f"127.0.0.1:{broker.port}"
    async with AsyncClient(address) as client:
        added = await client.add(queue, "job", {})
    channel = grpc.aio.insecure_channel(address)
    try:
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        progress = jobs.StreamProgress(J.StreamProgressRequest(queue=queue, job_id=added.job_id))
        assert (await progress.read()).HasField("snapshot")
        worker_stream = workers.ReportProgress()
        await worker_stream.write(W.ReportProgressRequest(worker_id="w1", seq=1, queues=[queue]))
        assert (await worker_stream.read()).seq == 1
        empty_queue = queue + "-empty"
        poll = asyncio.ensure_future(
            workers.Lease(W.LeaseRequest(queue=empty_queue, worker_id="w1", wait_ms=20_000))
        )
        await asyncio.sleep(0.2)

        stopping = asyncio.create_task(broker.stop())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = await asyncio.wait_for(poll, 2)  # not the 20 s it asked for
        assert list(reply.jobs) == []
        for stream in (progress, worker_stream):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(read_to_end(stream), 2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (caught.value.details() or "")
        await asyncio.wait_for(stopping, 5)
    finally:
        await channel.close()


async def read_to_end(call: object) -> None:
    while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
        pass


async def test_a_worker_stream_acknowledges_what_it_applied_before_ending(
    broker: Broker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message being applied when shutdown starts is finished and acknowledged; then the
    stream ends with SHUTTING_DOWN."""
    address = f"127.0.0.1:{broker.port}"
    async with AsyncClient(address) as client:
        await client.add(queue, "job", {})
    entered, release = asyncio.Event(), asyncio.Event()
    apply = WorkerSession._apply

    async def held_apply(
        self: WorkerSession, request: W.ReportProgressRequest, *turns: Any
    ) -> None:
        if request.outcomes:
            entered.set()
            await release.wait()
        await apply(self, request, *turns)

    monkeypatch.setattr(WorkerSession, "_apply", held_apply)
    channel = grpc.aio.insecure_channel(address)
    try:
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        [job] = (await workers.Lease(W.LeaseRequest(queue=queue, worker_id="w1"))).jobs
        stream = workers.ReportProgress()
        await stream.write(W.ReportProgressRequest(worker_id="w1", seq=1, queues=[queue]))
        await stream.read()
        complete = W.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token)
        await stream.write(W.ReportProgressRequest(seq=2, outcomes=[W.Outcome(complete=complete)]))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(broker.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()  # waits for the message being applied
        release.set()
        ack = await asyncio.wait_for(stream.read(), 3)
        assert ack.seq == 2
        assert not ack.outcomes[0].HasField("error")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(read_to_end(stream), 3)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(stopping, 5)
    finally:
        await channel.close()
