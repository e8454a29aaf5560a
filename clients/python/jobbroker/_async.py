"""AsyncClient: the producer's and operator's client on grpc.aio (the synchronous ``Client``
in ``_sync.py`` runs one on a thread of its own)."""

# A call's `timeout=` is its gRPC deadline, sent to the broker with the call: asyncio.timeout
# (what ASYNC109 suggests) cannot do that, and the two clients must share one signature.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, Unpack

import grpc

from . import _calls
from ._add_batch import AddBatcher
from ._calls import BulkItem, OptionFields
from ._queues import QueueCalls
from ._transport import CallPolicy, Transport
from .connection import ConnectionSettings
from .errors import JobNotFound, Unavailable
from .models import Added, Event, EventType, Job, JobOptions, JobState
from .v1 import job_service_pb2 as pb
from .v1.job_service_pb2_grpc import JobServiceStub

if TYPE_CHECKING:
    from .v1.job_service_pb2_grpc import JobServiceAsyncStub


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list()``."""

    jobs: list[Job]
    """The jobs of this page."""
    next_page_token: str
    """Pass it as ``page_token`` for the next page; empty on the last page."""
    total: int
    """Jobs in the state when the page was read."""


@dataclass(frozen=True, slots=True)
class Logs:
    """Log lines of a job, as ``logs()`` returns them."""

    lines: list[str]
    """The lines asked for, oldest first."""
    total: int
    """Lines the job has in all."""


class AsyncClient(QueueCalls):
    """A producer's and operator's client of the broker's JobService and QueueService, on
    asyncio (the queue calls come from :class:`~jobbroker._queues.QueueCalls`).

    ``address`` is ``host:port``, any gRPC target (``dns:///brokers:50051``), or several IP
    ``host:port`` addresses (a list, or a comma-separated string): calls are spread round robin
    over the brokers. Use ``async with AsyncClient(...) as client:`` or ``await client.close()``.
    Without an address, ``JOBBROKER_ADDRESS`` names it (else ``127.0.0.1:50051``); ``token``
    and TLS likewise come from ``JOBBROKER_TOKEN`` and ``JOBBROKER_TLS``/``_TLS_CA``/
    ``_TLS_CERT``/``_TLS_KEY`` when not given (:class:`~jobbroker.ConnectionSettings`).

    Every unary call has a deadline: ``timeout`` seconds unless the call's own ``timeout=`` says
    otherwise. Retries spend that same budget. A call that fails with UNAVAILABLE (broker or
    Redis unreachable, broker shutting down) is retried up to ``retries`` times with exponential
    backoff and jitter (``retry_backoff`` doubling up to ``retry_backoff_max`` seconds), but only
    when repeating it is harmless: every call except ``add``/``add_bulk`` (and those too when
    every job carries a custom ``job_id``: an idempotent add) and the bulk queue operations
    (``drain``, ``clean``, ``obliterate``, ``retry_failed``, ``promote_delayed``). A refusal
    from a broker that is shutting down (reason SHUTTING_DOWN) is retried for every call: the
    broker refused it before doing anything. Streams (``stream_progress``, ``watch_events``)
    and ``wait`` are not limited by ``retries``: they reconnect and resume until their own
    timeout. Errors are raised as :mod:`jobbroker.errors` exceptions, one per error reason.

    ``credentials`` turns TLS on (:func:`jobbroker.tls_credentials` builds them from PEM files);
    ``token`` is an API token (``jobbroker token create``) sent with every call.
    """

    def __init__(
        self,
        address: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 2.0,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        policy = CallPolicy(timeout, retries, retry_backoff, retry_backoff_max)
        settings = ConnectionSettings.from_env(
            address=address,
            token=token,
            credentials=credentials,
            metadata=metadata,
            channel_options=channel_options,
        )
        transport = Transport(settings, policy)
        super().__init__(transport)
        self._adds = AddBatcher(transport)

    @property
    def target(self) -> str:
        """The gRPC target the client connects to."""
        return self._transport.target

    @property
    def timeout(self) -> float:
        """Deadline of each unary call in seconds, unless the call's ``timeout=`` says otherwise."""
        return self._transport.policy.timeout

    @property
    def retries(self) -> int:
        """Retries of a unary call that may be repeated (see the class's description)."""
        return self._transport.policy.retries

    @property
    def retry_backoff(self) -> float:
        """First retry delay in seconds."""
        return self._transport.policy.retry_backoff

    @property
    def retry_backoff_max(self) -> float:
        """Longest retry delay in seconds."""
        return self._transport.policy.retry_backoff_max

    def _jobs(self) -> JobServiceAsyncStub:
        return self._transport.stub(JobServiceStub)

    async def close(self) -> None:
        """Close the connection; calls in flight are cancelled."""
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def add(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        options: JobOptions | None = None,
        timeout: float | None = None,
        **option_fields: Unpack[OptionFields],
    ) -> Added:
        """Add one job; once this returns, the job is stored.

        ``data`` is any JSON-encodable value (encoded for you) or :class:`~jobbroker.Raw` bytes.
        Options come as ``options=JobOptions(...)`` and/or keywords that override its fields:
        ``priority=1, delay=5, attempts=3, backoff=Backoff("exponential", 5), job_id="order-7"``;
        the per-attempt time limit is ``attempt_timeout=`` (``timeout=`` is this call's deadline).

        Only an add with a custom ``job_id`` is retried on UNAVAILABLE: without one, an add whose
        answer was lost may have been stored, and adding it again would make a second job. With
        one, a retry that finds the job stored by the lost attempt returns ``duplicate=True``.
        """
        opts = _calls.job_options(options, option_fields)
        request = _calls.add_request(queue, name, data, opts)
        try:
            reply = await self._adds.add(request, timeout, bool(opts.job_id))
        except asyncio.CancelledError:
            self._transport.raise_if_closed()
            raise
        return Added(reply.job_id, _calls.state_of(reply.state), reply.duplicate)

    async def add_bulk(
        self, queue: str, jobs: Iterable[BulkItem], *, timeout: float | None = None
    ) -> builtins.list[Added]:
        """Add several jobs to one queue atomically: all of them, or none.

        ``jobs`` holds ``(name, data)`` or ``(name, data, JobOptions)`` tuples; the answers come in
        the same order. Retried on UNAVAILABLE only when every job has a custom ``job_id``.
        """
        request, idempotent = _calls.bulk_request(queue, jobs)
        reply = await self._transport.unary(
            self._jobs().AddBulk, request, timeout=timeout, idempotent=idempotent
        )
        return [Added(r.job_id, _calls.state_of(r.state), r.duplicate) for r in reply.results]

    async def get_status(self, queue: str, job_id: str, *, timeout: float | None = None) -> Job:
        """The job's current snapshot. Raises :class:`~jobbroker.JobNotFound`."""
        request = pb.GetStatusRequest(queue=queue, job_id=job_id)
        reply = await self._transport.unary(self._jobs().GetStatus, request, timeout=timeout)
        return Job.from_proto(reply.job)

    async def cancel(
        self, queue: str, job_id: str, reason: str = "", *, timeout: float | None = None
    ) -> JobState:
        """Cancel a job. A waiting or delayed job is CANCELLED at once (the answer); an active
        one answers ACTIVE: its worker is told to stop and the job ends CANCELLED shortly.
        Raises :class:`~jobbroker.errors.JobFinished` for a job that already ended."""
        request = pb.CancelRequest(queue=queue, job_id=job_id, reason=reason)
        reply = await self._transport.unary(self._jobs().Cancel, request, timeout=timeout)
        return _calls.state_of(reply.state)

    async def stream_progress(
        self,
        queue: str,
        job_id: str,
        *,
        after_event_id: str = "",
        timeout: float | None = None,
    ) -> AsyncGenerator[Job | Event, None]:
        """Follow a job: its snapshot first (a :class:`~jobbroker.Job`), then each of its events
        (:class:`~jobbroker.Event`: active, progress, failed...); the iteration ends after the
        event that ends the job (``event.final``). On a finished job: the snapshot, then the end.

        With ``after_event_id`` (an event's ``id``) it starts with the events after that one and
        no snapshot. If the broker becomes unreachable, the client reconnects (whatever
        ``retries`` says, until ``timeout``) and resumes after the last event it delivered:
        nothing is lost or repeated.
        Should the broker no longer keep that event (or the first reconnection comes before any
        event was seen), the iteration goes on with a fresh snapshot (a ``Job`` again).

        ``timeout`` bounds the whole stream (``DeadlineExceeded`` once it passes); by default the
        stream lasts as long as the job does.
        """

        def request(after: str) -> pb.StreamProgressRequest:
            return pb.StreamProgressRequest(queue=queue, job_id=job_id, after_event_id=after)

        def convert(item: pb.StreamProgressResponse, last: str) -> tuple[Job | Event, str]:
            if item.HasField("event"):
                return Event.from_proto(item.event), item.event.event_id
            return Job.from_proto(item.snapshot), item.snapshot_event_id or last

        stream = self._transport.resumable(
            lambda: self._jobs().StreamProgress, request, convert, after_event_id, timeout
        )
        async with contextlib.aclosing(stream):
            async for value in stream:
                yield value

    async def wait(self, queue: str, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job ends; return its result (decoded, as ``Job.result``).

        Raises :class:`~jobbroker.JobFailed` or :class:`~jobbroker.JobCancelled` (with the
        job as ``.job``) if it ended that way, :class:`~jobbroker.JobNotFound` if it does not
        exist or was removed before it ended, and :class:`TimeoutError` once ``timeout``
        seconds have passed (default: no limit). Follows the job with ``stream_progress``, so it
        rides out broker restarts the same way.
        """
        async with asyncio.timeout(timeout):
            while True:
                snapshot: Job | None = None
                stream = self.stream_progress(queue, job_id)
                async with contextlib.aclosing(stream):
                    async for item in stream:
                        if isinstance(item, Job):
                            snapshot = item
                            if item.state.terminal:
                                return _calls.outcome(item)
                        elif item.type is EventType.REMOVED:
                            raise JobNotFound(f"job {job_id} of queue {queue} was removed")
                        elif item.type is EventType.COMPLETED:
                            return item.result
                        elif _calls.ends_run(item):
                            try:
                                fresh: Job | None = await self.get_status(queue, job_id)
                            except (JobNotFound, Unavailable):
                                # Removed, or the broker went away right after the event:
                                # the event itself says how the job ended.
                                fresh = None
                            return _calls.outcome(_calls.finished_job(snapshot, item, fresh))
                # The stream ended without an ending event (it should not): look again.
                job = await self.get_status(queue, job_id)
                if job.state.terminal:
                    return _calls.outcome(job)
                await asyncio.sleep(self._transport.policy.retry_backoff)

    async def list(
        self,
        queue: str,
        state: JobState | str,
        *,
        page_size: int = 50,
        page_token: str = "",
        descending: bool = False,
        timeout: float | None = None,
    ) -> Page:
        """One page of the jobs in ``state`` (a :class:`~jobbroker.JobState` or its name), in the
        state's natural order (waiting: the order they will be served; others: oldest first) or
        newest first with ``descending``. Pass ``next_page_token`` back for the next page."""
        request = pb.ListJobsRequest(
            queue=queue,
            state=_calls.state_arg(state).to_proto(),
            page_size=page_size,
            page_token=page_token,
            descending=descending,
        )
        reply = await self._transport.unary(self._jobs().ListJobs, request, timeout=timeout)
        jobs = [Job.from_proto(job) for job in reply.jobs]
        return Page(jobs, reply.next_page_token, reply.total)

    async def iter_jobs(
        self,
        queue: str,
        state: JobState | str,
        *,
        page_size: int = 100,
        descending: bool = False,
        timeout: float | None = None,
    ) -> AsyncGenerator[Job, None]:
        """Every job in ``state``, walking the pages of ``list()`` (``timeout`` is per page)."""
        token = ""
        while True:
            page = await self.list(
                queue,
                state,
                page_size=page_size,
                page_token=token,
                descending=descending,
                timeout=timeout,
            )
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def retry(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Move a failed or cancelled job back to waiting with fresh attempts; its new state.
        Raises :class:`~jobbroker.errors.JobNotRetryable` for a job in another state."""
        request = pb.RetryRequest(queue=queue, job_id=job_id)
        reply = await self._transport.unary(self._jobs().Retry, request, timeout=timeout)
        return _calls.state_of(reply.state)

    async def promote(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Make a delayed job waiting now; its new state. Raises
        :class:`~jobbroker.errors.JobNotDelayed` for a job that is not delayed."""
        request = pb.PromoteRequest(queue=queue, job_id=job_id)
        reply = await self._transport.unary(self._jobs().Promote, request, timeout=timeout)
        return _calls.state_of(reply.state)

    async def remove(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Remove a job and its logs; the state it was in. Raises
        :class:`~jobbroker.errors.JobActive` for an active job (cancel it first)."""
        request = pb.RemoveRequest(queue=queue, job_id=job_id)
        reply = await self._transport.unary(self._jobs().Remove, request, timeout=timeout)
        return _calls.state_of(reply.state)

    async def logs(
        self,
        queue: str,
        job_id: str,
        offset: int = 0,
        limit: int = 100,
        *,
        timeout: float | None = None,
    ) -> Logs:
        """Up to ``limit`` (1-1,000) of the job's log lines from line ``offset`` (0-based)."""
        request = pb.GetLogsRequest(queue=queue, job_id=job_id, offset=offset, limit=limit)
        reply = await self._transport.unary(self._jobs().GetLogs, request, timeout=timeout)
        return Logs(builtins.list(reply.lines), reply.total)
