"""The Prometheus endpoint after a known sequence of jobs: exact counters, gauges per state,
histogram counts, RPC series; Redis errors; the endpoint's port."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

import grpc
import pytest
from jobbroker.v1 import job_pb2, job_service_pb2, worker_service_pb2
from jobbroker_broker.server.app import Broker, ConfigError

from .harness import TEST_SETTINGS, Running, eventually, series, start_broker, stop_broker, value

JOB = "jobbroker.v1.JobService/"
WORKER = "jobbroker.v1.WorkerService/"


async def add(running: Running, queue: str, **options: Any) -> str:
    reply = await running.jobs.Add(
        job_service_pb2.AddRequest(
            queue=queue,
            name="job",
            data=job_pb2.Payload(body=b"{}"),
            options=job_pb2.JobOptions(**options),
        )
    )
    return str(reply.job_id)


async def lease(
    running: Running, queue: str, max_jobs: int = 1, lease_ms: int = 30_000
) -> list[worker_service_pb2.LeasedJob]:
    reply = await running.workers.Lease(
        worker_service_pb2.LeaseRequest(
            queue=queue, worker_id="w1", max_jobs=max_jobs, lease_ms=lease_ms
        )
    )
    return list(reply.jobs)


async def fail(running: Running, job: worker_service_pb2.LeasedJob) -> int:
    reply = await running.workers.Fail(
        worker_service_pb2.FailRequest(
            queue=job.queue, job_id=job.job_id, token=job.token, message="boom"
        )
    )
    return int(reply.state)


async def test_counters_gauges_and_histograms_follow_the_jobs(broker: Running, queue: str) -> None:
    completing = [await add(broker, queue) for _ in range(3)]
    leased = await lease(broker, queue, max_jobs=3)
    assert [j.job_id for j in leased] == completing
    for job in leased:
        await broker.workers.Complete(
            worker_service_pb2.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token)
        )

    await add(broker, queue, attempts=2)
    [first] = await lease(broker, queue)
    assert await fail(broker, first) == job_pb2.JOB_STATE_WAITING  # retried
    [second] = await lease(broker, queue)
    assert await fail(broker, second) == job_pb2.JOB_STATE_FAILED

    stalling = await add(broker, queue)
    [job] = await lease(broker, queue, lease_ms=1_000)  # never renewed: it stalls
    assert job.job_id == stalling
    # A refused call is timed too, with its code.
    with pytest.raises(grpc.aio.AioRpcError):
        await broker.workers.Complete(
            worker_service_pb2.CompleteRequest(queue=queue, job_id=job.job_id, token="1-forged")
        )

    states = {"waiting": 1, "delayed": 0, "active": 0, "completed": 3, "failed": 1, "cancelled": 0}

    def settled(samples: dict[Any, float]) -> bool:
        return value(samples, "jobbroker_jobs_stalled_total", queue=queue) == 1 and all(
            value(samples, "jobbroker_jobs", queue=queue, state=state) == count
            for state, count in states.items()
        )

    samples = await eventually(broker.scrape, settled)
    assert value(samples, "jobbroker_jobs_completed_total", queue=queue) == 3
    assert value(samples, "jobbroker_jobs_failed_total", queue=queue) == 1
    assert value(samples, "jobbroker_jobs_retried_total", queue=queue) == 1
    assert value(samples, "jobbroker_jobs_stalled_total", queue=queue) == 1
    # Five attempts ended by a worker (3 completed, 2 failed), five first starts.
    assert value(samples, "jobbroker_job_run_seconds_count", queue=queue) == 5
    assert value(samples, "jobbroker_job_run_seconds_bucket", queue=queue, le="+Inf") == 5
    assert value(samples, "jobbroker_job_wait_seconds_count", queue=queue) == 5
    for state, count in states.items():
        assert value(samples, "jobbroker_jobs", queue=queue, state=state) == count, state

    rpc = "jobbroker_rpc_duration_seconds_count"
    calls = {(labels["method"], labels["code"]) for labels in series(samples, rpc)}
    assert {
        (JOB + "Add", "OK"),
        (WORKER + "Lease", "OK"),
        (WORKER + "Complete", "OK"),
        (WORKER + "Fail", "OK"),
        (WORKER + "Complete", "INVALID_ARGUMENT"),  # a token never issued
    } <= calls
    assert value(samples, rpc, method=JOB + "Add", code="OK") == 5


async def test_open_streams_are_counted_until_they_end(broker: Running, queue: str) -> None:
    job_id = await add(broker, queue)
    stream = broker.jobs.StreamProgress(
        job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id)
    )
    await stream.read()  # the snapshot: the stream is open
    method = JOB + "StreamProgress"
    samples = await broker.scrape()
    assert value(samples, "jobbroker_streams_open", method=method) == 1
    stream.cancel()
    samples = await eventually(
        broker.scrape, lambda s: value(s, "jobbroker_streams_open", method=method) == 0
    )
    assert value(samples, "jobbroker_rpc_duration_seconds_count", method=method, code="CANCELLED")


async def test_redis_errors_are_counted(broker: Running, private_redis: Any, queue: str) -> None:
    def errors(samples: dict[Any, float]) -> float:
        return sum(v for (name, _), v in samples.items() if name == "jobbroker_redis_errors_total")

    before = errors(await broker.scrape())
    private_redis.stop()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await add(broker, queue)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    samples = await broker.scrape()
    assert errors(samples) > before
    assert series(samples, "jobbroker_redis_errors_total")
    assert {"method": JOB + "Add", "code": "UNAVAILABLE"} in series(
        samples, "jobbroker_rpc_duration_seconds_count"
    )


async def test_no_endpoint_by_default(redis_url: str) -> None:
    running = await start_broker(redis_url, metrics_port=0)
    try:
        assert running.broker.metrics_endpoint.port == 0
    finally:
        await stop_broker(running)


async def test_a_taken_metrics_port_stops_the_start_naming_the_flag(redis_url: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = Broker(replace(TEST_SETTINGS, redis_url=redis_url, metrics_port=port))
        with pytest.raises(ConfigError, match="--metrics-port"):
            await broker.start()
