"""Helpers of the client tests: one awaitable face for both clients, and a worker played with
the generated WorkerService stubs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import grpc
from jobbroker import AsyncClient, Client
from jobbroker.models import encode
from jobbroker.v1 import worker_service_pb2, worker_service_pb2_grpc

LeasedJob = worker_service_pb2.LeasedJob

_STREAMING = frozenset({"stream_progress", "iter_jobs", "watch_events"})
_END = object()


class Api:
    """What a test calls: every client method, awaitable, streams as async iterators."""

    kind: str

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class AsyncApi(Api):
    """An AsyncClient, as it is."""

    kind = "async"

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def close(self) -> None:
        await self.client.close()


class SyncApi(Api):
    """A Client, each blocking call run in a worker thread (as a program's own thread would)."""

    kind = "sync"

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method
        if name in _STREAMING:
            return lambda *args, **kwargs: _drive(method(*args, **kwargs))

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


async def _drive(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    try:
        while (item := await asyncio.to_thread(next, iterator, _END)) is not _END:
            yield item
    finally:
        await asyncio.to_thread(iterator.close)  # type: ignore[attr-defined]


async def stream_opened(api: Api) -> threading.Event:
    """An event set once the client's next stream_progress (wait() follows the job with one)
    has delivered its first item: by then the broker has subscribed the stream to the job."""
    inner: AsyncClient = api.client if isinstance(api, AsyncApi) else api.client._async
    original = inner.stream_progress
    opened = threading.Event()

    async def spy(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for item in original(*args, **kwargs):
            opened.set()
            yield item

    inner.stream_progress = spy  # type: ignore[method-assign]
    return opened


async def collect(stream: AsyncIterator[Any], within: float = 5.0) -> list[Any]:
    """Every item of a stream up to its end, which must come within ``within`` seconds."""

    async def read() -> list[Any]:
        return [item async for item in stream]

    return await asyncio.wait_for(read(), within)


class Timer:
    """``with Timer() as t: ...`` then ``t.elapsed`` in seconds."""

    def __enter__(self) -> Timer:
        self.started = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.monotonic() - self.started


class FakeWorker:
    """A worker of one queue: leases through Lease, reports progress and logs on its
    ReportProgress stream, completes and fails through the unary calls."""

    def __init__(self, address: str, queue: str, worker_id: str = "client-test-worker") -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = worker_service_pb2_grpc.WorkerServiceStub(self.channel)
        self.queue = queue
        self.worker_id = worker_id
        self.stream: Any = None
        self.seq = 0

    async def lease(self, wait: float = 3.0, lease_ms: int = 30_000) -> LeasedJob:
        """Lease one job of the queue (waiting up to ``wait`` seconds for one)."""
        reply = await self.stub.Lease(
            worker_service_pb2.LeaseRequest(
                queue=self.queue,
                worker_id=self.worker_id,
                max_jobs=1,
                wait_ms=int(wait * 1000),
                lease_ms=lease_ms,
            ),
            timeout=wait + 5,
        )
        assert len(reply.jobs) == 1, "no job to lease"
        return reply.jobs[0]

    async def report(
        self,
        job: LeasedJob,
        percent: float | None = None,
        value: Any = None,
        logs: Iterable[str] = (),
    ) -> None:
        """Send progress and/or log lines for a leased job; return once the broker took them."""
        if self.stream is None:
            self.stream = self.stub.ReportProgress()
        self.seq += 1
        update = worker_service_pb2.LeaseUpdate(
            queue=job.queue, job_id=job.job_id, token=job.token, log_lines=list(logs)
        )
        if percent is not None:
            update.percent = percent
        if value is not None:
            update.value.CopyFrom(encode(value))
        await self.stream.write(
            worker_service_pb2.ReportProgressRequest(
                worker_id=self.worker_id, seq=self.seq, updates=[update], queues=[self.queue]
            )
        )
        while True:
            reply = await asyncio.wait_for(self.stream.read(), 5)
            assert reply is not grpc.aio.EOF, "the worker stream ended"
            if reply.seq == self.seq:
                assert not reply.leases[0].HasField("error"), reply.leases[0].error
                return

    async def complete(self, job: LeasedJob, result: Any = None) -> int:
        reply = await self.stub.Complete(
            worker_service_pb2.CompleteRequest(
                queue=job.queue, job_id=job.job_id, token=job.token, result=encode(result)
            ),
            timeout=5,
        )
        return int(reply.state)

    async def fail(self, job: LeasedJob, message: str = "boom", no_retry: bool = False) -> int:
        reply = await self.stub.Fail(
            worker_service_pb2.FailRequest(
                queue=job.queue,
                job_id=job.job_id,
                token=job.token,
                message=message,
                error_type="ValueError",
                no_retry=no_retry,
            ),
            timeout=5,
        )
        return int(reply.state)

    async def close(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
        await self.channel.close()
