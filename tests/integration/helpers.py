"""Shared helpers of the integration tests: stub calls with defaults, errors, a worker stream.

Everything here goes through the generated stubs of a running broker; nothing reads Redis keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
import pytest
import redis
from conftest import start_broker, stop_broker
from google.rpc import error_details_pb2, status_pb2
from jobbroker.v1 import (
    events_pb2,
    job_pb2,
    job_service_pb2,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

T = TypeVar("T")

Job = job_pb2.Job
LeasedJob = worker_service_pb2.LeasedJob
StreamItem = job_service_pb2.StreamProgressResponse

S = job_pb2
"""Job states and options live in job_pb2: `S.JOB_STATE_WAITING`..."""

SIGNAL_WAIT = 2.0
"""Seconds a signal may take to reach a worker stream (the contract says milliseconds)."""


def payload(value: Any) -> job_pb2.Payload:
    """A JSON payload."""
    return job_pb2.Payload(body=json.dumps(value).encode())


def decoded(value: job_pb2.Payload) -> Any:
    """A JSON payload's value (None when empty)."""
    return json.loads(value.body) if value.body else None


def redis_now_ms(r: redis.Redis) -> int:
    """Redis' clock, the one every broker time comes from."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@contextlib.asynccontextmanager
async def private_broker(redis_url: str, **overrides: Any) -> AsyncIterator[Any]:
    """A broker of its own on `redis_url` (settings overridden as start_broker takes them)."""
    running = await start_broker(redis_url, **overrides)
    try:
        yield running
    finally:
        await stop_broker(running)


# --- errors ----------------------------------------------------------------------------------


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo a failed call carries (fails the test when it has none)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert status.code == error.code().value[0]
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    pytest.fail(f"{error.code()} {error.details()!r} carries no ErrorInfo")


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str
) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code` and ErrorInfo `reason` (domain jobbroker.v1)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    info = error_info(error)
    assert (info.reason, info.domain) == (reason, "jobbroker.v1"), error.details()
    return error


# --- polling ---------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    within: float = 3.0,
    interval: float = 0.02,
) -> T:
    """Call `probe` until `accept` holds for its value; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {within} s; last value: {value}")
        await asyncio.sleep(interval)


# --- producer calls --------------------------------------------------------------------------


async def add(
    running: Any,
    queue: str,
    data: Any = None,
    name: str = "job",
    **options: Any,
) -> job_service_pb2.AddResponse:
    """Add one JSON job with the given JobOptions fields."""
    return await running.jobs.Add(
        job_service_pb2.AddRequest(
            queue=queue,
            name=name,
            data=payload({} if data is None else data),
            options=job_pb2.JobOptions(**options),
        )
    )


async def add_id(running: Any, queue: str, data: Any = None, **options: Any) -> str:
    """Add one job; return its id."""
    return (await add(running, queue, data, **options)).job_id


async def status(running: Any, queue: str, job_id: str) -> Job:
    reply = await running.jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id)
    )
    return reply.job


async def wait_state(running: Any, queue: str, job_id: str, state: int, within: float = 3.0) -> Job:
    """Poll GetStatus until the job is in `state`."""
    return await eventually(
        lambda: status(running, queue, job_id), lambda job: job.state == state, within
    )


async def exists(running: Any, queue: str, job_id: str) -> bool:
    try:
        await status(running, queue, job_id)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


# --- worker calls ----------------------------------------------------------------------------


async def lease(
    running: Any,
    queue: str,
    worker: str = "worker-1",
    max_jobs: int = 1,
    wait_ms: int = 0,
    lease_ms: int = 30_000,
) -> list[LeasedJob]:
    reply = await running.workers.Lease(
        worker_service_pb2.LeaseRequest(
            queue=queue, worker_id=worker, max_jobs=max_jobs, wait_ms=wait_ms, lease_ms=lease_ms
        )
    )
    return list(reply.jobs)


async def lease_one(running: Any, queue: str, worker: str = "worker-1", **kw: Any) -> LeasedJob:
    """Lease exactly one job (fails the test when none is ready)."""
    jobs = await lease(running, queue, worker, 1, **kw)
    assert len(jobs) == 1, "expected one job to lease"
    return jobs[0]


def complete_req(job: LeasedJob, result: Any = None) -> worker_service_pb2.CompleteRequest:
    request = worker_service_pb2.CompleteRequest(
        queue=job.queue, job_id=job.job_id, token=job.token
    )
    if result is not None:
        request.result.CopyFrom(payload(result))
    return request


def fail_req(
    job: LeasedJob, message: str = "boom", no_retry: bool = False
) -> worker_service_pb2.FailRequest:
    return worker_service_pb2.FailRequest(
        queue=job.queue,
        job_id=job.job_id,
        token=job.token,
        message=message,
        error_type="ValueError",
        stack="Traceback ...",
        no_retry=no_retry,
    )


def release_req(job: LeasedJob, delay_ms: int = 0) -> worker_service_pb2.ReleaseRequest:
    return worker_service_pb2.ReleaseRequest(
        queue=job.queue, job_id=job.job_id, token=job.token, delay_ms=delay_ms
    )


async def complete(running: Any, job: LeasedJob, result: Any = None) -> int:
    """Complete a leased job; returns the state it ended in."""
    return (await running.workers.Complete(complete_req(job, result))).state  # type: ignore[no-any-return]


async def fail(
    running: Any, job: LeasedJob, message: str = "boom", no_retry: bool = False
) -> worker_service_pb2.FailResponse:
    return await running.workers.Fail(fail_req(job, message, no_retry))  # type: ignore[no-any-return]


async def promote(running: Any, queue: str, job_id: str) -> int:
    reply = await running.jobs.Promote(job_service_pb2.PromoteRequest(queue=queue, job_id=job_id))
    return reply.state  # type: ignore[no-any-return]


async def cancel(running: Any, queue: str, job_id: str, reason: str = "") -> int:
    reply = await running.jobs.Cancel(
        job_service_pb2.CancelRequest(queue=queue, job_id=job_id, reason=reason)
    )
    return reply.state  # type: ignore[no-any-return]


# --- StreamProgress --------------------------------------------------------------------------


async def stream_all(
    running: Any, queue: str, job_id: str, after: str = "", within: float = 5.0
) -> list[StreamItem]:
    """Every message of a StreamProgress call, up to its end."""

    async def read() -> list[StreamItem]:
        call = running.jobs.StreamProgress(
            job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id, after_event_id=after)
        )
        return [item async for item in call]

    return await asyncio.wait_for(read(), within)


class ProgressSubscriber:
    """A StreamProgress call read message by message."""

    def __init__(self, running: Any, queue: str, job_id: str, after: str = "") -> None:
        self.call = running.jobs.StreamProgress(
            job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id, after_event_id=after)
        )

    async def next(self, within: float = 3.0) -> StreamItem | None:
        """The next message, or None once the stream ended."""
        item = await asyncio.wait_for(self.call.read(), within)
        return None if item is grpc.aio.EOF else item

    async def rest(self, within: float = 5.0) -> list[StreamItem]:
        """Every remaining message, up to the stream's end."""
        items = []
        deadline = time.monotonic() + within
        while (item := await self.next(max(0.01, deadline - time.monotonic()))) is not None:
            items.append(item)
        return items

    def close(self) -> None:
        self.call.cancel()


def event_types(items: Iterable[StreamItem]) -> list[int]:
    return [item.event.type for item in items if item.HasField("event")]


E = events_pb2
"""Event types: `E.EVENT_TYPE_PROGRESS`..."""


# --- the worker stream -----------------------------------------------------------------------


class WorkerStream:
    """One worker's ReportProgress stream: send a message, wait for its ack; collect signals."""

    def __init__(self, stub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str) -> None:
        self.call = stub.ReportProgress()
        self.worker_id = worker_id
        self.seq = 0
        self.acks: dict[int, asyncio.Future[worker_service_pb2.ReportProgressResponse]] = {}
        self.signals: asyncio.Queue[worker_service_pb2.Signal] = asyncio.Queue()
        self.pushes: asyncio.Queue[worker_service_pb2.ReportProgressResponse] = asyncio.Queue()
        """Responses that bring the jobs of a request that waited (``lease_seq``)."""
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                response = await self.call.read()
                if response is grpc.aio.EOF:
                    break
                for signal in response.signals:
                    self.signals.put_nowait(signal)
                if response.lease_seq:
                    self.pushes.put_nowait(response)
                future = self.acks.pop(response.seq, None) if response.seq else None
                if future is not None and not future.done():
                    future.set_result(response)
        except Exception as exc:
            for future in self.acks.values():
                if not future.done():
                    future.set_exception(exc)
            if not self.ended.done():
                self.ended.set_exception(exc)
            return
        if not self.ended.done():
            self.ended.set_result(None)

    async def send(
        self,
        updates: Iterable[worker_service_pb2.LeaseUpdate] = (),
        outcomes: Iterable[worker_service_pb2.Outcome] = (),
        queues: Iterable[str] = (),
        within: float = 3.0,
        lease: worker_service_pb2.StreamLease | None = None,
    ) -> worker_service_pb2.ReportProgressResponse:
        """Send one message (asking for jobs with ``lease``) and return its acknowledgement."""
        future = await self.post(updates, outcomes, queues, lease)
        return await asyncio.wait_for(future, within)

    async def post(
        self,
        updates: Iterable[worker_service_pb2.LeaseUpdate] = (),
        outcomes: Iterable[worker_service_pb2.Outcome] = (),
        queues: Iterable[str] = (),
        lease: worker_service_pb2.StreamLease | None = None,
    ) -> asyncio.Future[worker_service_pb2.ReportProgressResponse]:
        """Send one message without waiting for its acknowledgement (the future)."""
        return await self.post_request(
            worker_service_pb2.ReportProgressRequest(
                updates=list(updates), outcomes=list(outcomes), queues=list(queues), lease=lease
            )
        )

    async def post_request(
        self, request: worker_service_pb2.ReportProgressRequest
    ) -> asyncio.Future[worker_service_pb2.ReportProgressResponse]:
        """Send ``request`` (its ``seq`` and first-message ``worker_id`` filled in) without
        waiting for its acknowledgement (the future)."""
        self.seq += 1
        future = self.acks[self.seq] = asyncio.get_running_loop().create_future()
        request.seq = self.seq
        if self.seq == 1:
            request.worker_id = self.worker_id
        await self.call.write(request)
        return future

    async def send_request(
        self, request: worker_service_pb2.ReportProgressRequest, within: float = 3.0
    ) -> worker_service_pb2.ReportProgressResponse:
        """Send ``request`` (as post_request) and return its acknowledgement."""
        return await asyncio.wait_for(await self.post_request(request), within)

    async def signal(self, within: float = SIGNAL_WAIT) -> worker_service_pb2.Signal:
        return await asyncio.wait_for(self.signals.get(), within)

    async def no_signal(self, wait: float = 0.3) -> None:
        """Assert no signal arrives within `wait` seconds."""
        with contextlib.suppress(TimeoutError):
            signal = await asyncio.wait_for(self.signals.get(), wait)
            pytest.fail(f"unexpected signal {signal}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call.done_writing()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.ended), 2.0)
        self.call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


@contextlib.asynccontextmanager
async def worker_stream(
    running: Any, worker_id: str, queues: Iterable[str]
) -> AsyncIterator[WorkerStream]:
    """An open worker stream whose first message (worker id, queues) was acknowledged."""
    stream = WorkerStream(running.workers, worker_id)
    try:
        await stream.send(queues=queues)
        yield stream
    finally:
        await stream.close()


def update(
    job: LeasedJob,
    percent: float | None = None,
    value: Any = None,
    logs: Iterable[str] = (),
    lease_ms: int = 0,
) -> worker_service_pb2.LeaseUpdate:
    """A lease renewal of `job` with optional progress and log lines."""
    message = worker_service_pb2.LeaseUpdate(
        queue=job.queue,
        job_id=job.job_id,
        token=job.token,
        lease_ms=lease_ms,
        log_lines=list(logs),
    )
    if percent is not None:
        message.percent = percent
    if value is not None:
        message.value.CopyFrom(payload(value))
    return message


def outcome_complete(job: LeasedJob, result: Any = None) -> worker_service_pb2.Outcome:
    return worker_service_pb2.Outcome(complete=complete_req(job, result))


def outcome_fail(job: LeasedJob, message: str = "boom") -> worker_service_pb2.Outcome:
    return worker_service_pb2.Outcome(fail=fail_req(job, message))


def outcome_release(job: LeasedJob) -> worker_service_pb2.Outcome:
    return worker_service_pb2.Outcome(release=release_req(job))
