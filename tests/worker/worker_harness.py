"""What the worker tests share: the running broker, producer calls through the generated stubs,
and a worker that is always stopped at the end of its test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from jobbroker import Worker
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from jobbroker_broker.server.app import Broker

T = TypeVar("T")
S = job_pb2
"""Job states and failure reasons: ``S.JOB_STATE_COMPLETED``..."""


@dataclass
class Running:
    """A running broker and a JobService stub connected to it."""

    broker: Broker
    port: int
    address: str
    channel: grpc.aio.Channel
    jobs: job_service_pb2_grpc.JobServiceStub

    async def add(self, queue: str, data: Any = None, name: str = "job", **options: Any) -> str:
        """Add one JSON job with the given JobOptions fields; return its id."""
        reply = await self.jobs.Add(
            job_service_pb2.AddRequest(
                queue=queue,
                name=name,
                data=job_pb2.Payload(body=json.dumps({} if data is None else data).encode()),
                options=job_pb2.JobOptions(**options),
            )
        )
        return str(reply.job_id)

    async def status(self, queue: str, job_id: str) -> job_pb2.Job:
        reply = await self.jobs.GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id)
        )
        return reply.job  # type: ignore[no-any-return]

    async def wait_state(self, queue: str, job_id: str, state: int, within: float = 5.0) -> Any:
        """Poll GetStatus until the job is in ``state``."""
        return await eventually(
            lambda: self.status(queue, job_id), lambda job: job.state == state, within
        )

    async def logs(self, queue: str, job_id: str) -> list[str]:
        reply = await self.jobs.GetLogs(job_service_pb2.GetLogsRequest(queue=queue, job_id=job_id))
        return list(reply.lines)

    async def cancel(self, queue: str, job_id: str) -> int:
        reply = await self.jobs.Cancel(job_service_pb2.CancelRequest(queue=queue, job_id=job_id))
        return reply.state  # type: ignore[no-any-return]

    async def subscribe(self, queue: str, job_id: str) -> Subscription:
        """A StreamProgress call whose first message (the snapshot) arrived."""
        call = self.jobs.StreamProgress(
            job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id)
        )
        subscription = Subscription(call, [await asyncio.wait_for(call.read(), 5)])
        return subscription


@dataclass
class Subscription:
    """A StreamProgress call and the messages read so far."""

    call: Any
    items: list[Any]

    async def rest(self, within: float = 10.0) -> list[Any]:
        """Every message, the ones read already included, up to the stream's end."""

        async def read() -> list[Any]:
            while (item := await self.call.read()) is not grpc.aio.EOF:
                self.items.append(item)
            return self.items

        return await asyncio.wait_for(read(), within)


BrokerFactory = Callable[..., Awaitable[Running]]
"""Starts a broker: ``await factory(port=...)`` (Settings fields as keywords)."""


def decoded(payload: job_pb2.Payload) -> Any:
    return json.loads(payload.body) if payload.body else None


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    within: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Call ``probe`` until ``accept`` holds for its value; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {within} s; last value: {value}")
        await asyncio.sleep(interval)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {within} s")
        await asyncio.sleep(0.01)


def make_worker(broker: Running, queue: str | list[str], **options: Any) -> Worker:
    """A worker of ``queue`` on ``broker`` with test-friendly defaults (short long-polls)."""
    options.setdefault("wait", 1.0)
    options.setdefault("grace", 5.0)
    return Worker(queue, address=broker.address, **options)


@contextlib.asynccontextmanager
async def serving(worker: Worker, grace: float = 0.0) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background; stop it (``grace`` seconds for jobs) on the way out."""
    await worker.start()
    try:
        yield worker
    finally:
        await asyncio.wait_for(worker.stop(grace), 15)
