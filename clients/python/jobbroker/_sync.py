"""Client: the synchronous twin of AsyncClient, which it runs on a private event-loop thread."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar, Unpack

import grpc

from ._async import AsyncClient, Logs, Page
from ._calls import BulkItem, OptionFields
from .models import Added, Event, Job, JobOptions, JobState, Seconds
from .queue_models import QueueInfo, QueueSettings, RateLimit, Schedule, WorkerInfo
from .schemas import SchemaLike

T = TypeVar("T")


class Client:
    """The synchronous twin of :class:`AsyncClient`: the same methods, arguments, deadlines,
    retries and errors, blocking until done; streams are plain iterators.

    It runs an AsyncClient on a private event-loop thread. Use ``with Client(...) as client:``
    or call :meth:`close`. One Client may be shared by many threads.
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
        self._async = AsyncClient(
            address,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            credentials=credentials,
            token=token,
            metadata=metadata,
            channel_options=channel_options,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobbroker-client", daemon=True
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._thread, self._async)

    @property
    def target(self) -> str:
        """The gRPC target the client connects to."""
        return self._async.target

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if not self._finalizer.alive or threading.current_thread() is self._thread:
            call.close()
            raise RuntimeError(
                "the client is closed"
                if not self._finalizer.alive
                else "a Client cannot be called from its own thread"
            )
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the client was closed during the call") from None
        except BaseException:
            future.cancel()  # KeyboardInterrupt and the like: stop the call too
            raise

    def _iterate(self, iterator: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while (step := self._run(_next(iterator))) is not None:
                yield step[0]
        finally:
            usable = self._finalizer.alive and threading.current_thread() is not self._thread
            if usable:
                self._run(iterator.aclose())

    def add(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        options: JobOptions | None = None,
        timeout: float | None = None,
        **option_fields: Unpack[OptionFields],
    ) -> Added:
        """Add one job (see :meth:`AsyncClient.add`); retried only with a custom ``job_id``."""
        return self._run(
            self._async.add(queue, name, data, options=options, timeout=timeout, **option_fields)
        )

    def add_bulk(
        self, queue: str, jobs: Iterable[BulkItem], *, timeout: float | None = None
    ) -> builtins.list[Added]:
        """Add several jobs atomically (see :meth:`AsyncClient.add_bulk`)."""
        return self._run(self._async.add_bulk(queue, jobs, timeout=timeout))

    def get_status(self, queue: str, job_id: str, *, timeout: float | None = None) -> Job:
        """The job's current snapshot (see :meth:`AsyncClient.get_status`)."""
        return self._run(self._async.get_status(queue, job_id, timeout=timeout))

    def cancel(
        self, queue: str, job_id: str, reason: str = "", *, timeout: float | None = None
    ) -> JobState:
        """Cancel a job (see :meth:`AsyncClient.cancel`)."""
        return self._run(self._async.cancel(queue, job_id, reason, timeout=timeout))

    def stream_progress(
        self,
        queue: str,
        job_id: str,
        *,
        after_event_id: str = "",
        timeout: float | None = None,
    ) -> Iterator[Job | Event]:
        """Follow a job: snapshot, then events, resuming across reconnections (see
        :meth:`AsyncClient.stream_progress`)."""
        return self._iterate(
            self._async.stream_progress(
                queue, job_id, after_event_id=after_event_id, timeout=timeout
            )
        )

    def wait(self, queue: str, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job ends; its result, or JobFailed / JobCancelled / TimeoutError
        (see :meth:`AsyncClient.wait`)."""
        return self._run(self._async.wait(queue, job_id, timeout))

    def list(
        self,
        queue: str,
        state: JobState | str,
        *,
        page_size: int = 50,
        page_token: str = "",
        descending: bool = False,
        timeout: float | None = None,
    ) -> Page:
        """One page of the jobs in ``state`` (see :meth:`AsyncClient.list`)."""
        return self._run(
            self._async.list(
                queue,
                state,
                page_size=page_size,
                page_token=page_token,
                descending=descending,
                timeout=timeout,
            )
        )

    def iter_jobs(
        self,
        queue: str,
        state: JobState | str,
        *,
        page_size: int = 100,
        descending: bool = False,
        timeout: float | None = None,
    ) -> Iterator[Job]:
        """Every job in ``state``, page after page (see :meth:`AsyncClient.iter_jobs`)."""
        return self._iterate(
            self._async.iter_jobs(
                queue, state, page_size=page_size, descending=descending, timeout=timeout
            )
        )

    def retry(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Retry a failed or cancelled job (see :meth:`AsyncClient.retry`)."""
        return self._run(self._async.retry(queue, job_id, timeout=timeout))

    def promote(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Make a delayed job waiting now (see :meth:`AsyncClient.promote`)."""
        return self._run(self._async.promote(queue, job_id, timeout=timeout))

    def remove(self, queue: str, job_id: str, *, timeout: float | None = None) -> JobState:
        """Remove a job that is not active (see :meth:`AsyncClient.remove`)."""
        return self._run(self._async.remove(queue, job_id, timeout=timeout))

    def logs(
        self,
        queue: str,
        job_id: str,
        offset: int = 0,
        limit: int = 100,
        *,
        timeout: float | None = None,
    ) -> Logs:
        """A range of the job's log lines (see :meth:`AsyncClient.logs`)."""
        return self._run(self._async.logs(queue, job_id, offset, limit, timeout=timeout))

    # The operators' calls (QueueService): see AsyncClient's QueueCalls.

    def queues(self, *, timeout: float | None = None) -> builtins.list[QueueInfo]:
        """Every queue with its counts (see :meth:`AsyncClient.queues`)."""
        return self._run(self._async.queues(timeout=timeout))

    def queue(self, queue: str, *, timeout: float | None = None) -> QueueInfo:
        """One queue's counts, pause flag and settings (see :meth:`AsyncClient.queue`)."""
        return self._run(self._async.queue(queue, timeout=timeout))

    def pause(self, queue: str, *, timeout: float | None = None) -> None:
        """Pause a queue (see :meth:`AsyncClient.pause`)."""
        self._run(self._async.pause(queue, timeout=timeout))

    def resume(self, queue: str, *, timeout: float | None = None) -> None:
        """Resume a paused queue (see :meth:`AsyncClient.resume`)."""
        self._run(self._async.resume(queue, timeout=timeout))

    def drain(
        self, queue: str, include_delayed: bool = False, *, timeout: float | None = None
    ) -> int:
        """Remove the waiting (and delayed) jobs; how many (see :meth:`AsyncClient.drain`)."""
        return self._run(self._async.drain(queue, include_delayed, timeout=timeout))

    def clean(
        self,
        queue: str,
        state: JobState | str,
        grace: Seconds = 0,
        limit: int = 1000,
        *,
        timeout: float | None = None,
    ) -> builtins.list[str]:
        """Remove old jobs in one state; their ids (see :meth:`AsyncClient.clean`)."""
        return self._run(self._async.clean(queue, state, grace, limit, timeout=timeout))

    def obliterate(self, queue: str, force: bool = False, *, timeout: float | None = None) -> int:
        """Remove everything of a queue (see :meth:`AsyncClient.obliterate`)."""
        return self._run(self._async.obliterate(queue, force, timeout=timeout))

    def retry_failed(self, queue: str, *, timeout: float | None = None) -> int:
        """Retry every failed job (see :meth:`AsyncClient.retry_failed`)."""
        return self._run(self._async.retry_failed(queue, timeout=timeout))

    def promote_delayed(self, queue: str, *, timeout: float | None = None) -> int:
        """Make every delayed job waiting (see :meth:`AsyncClient.promote_delayed`)."""
        return self._run(self._async.promote_delayed(queue, timeout=timeout))

    def update_settings(
        self,
        queue: str,
        *,
        rate_limit: RateLimit | None = None,
        concurrency: int = 0,
        group_rate_limit: RateLimit | None = None,
        max_stalled: int = 0,
        timeout: float | None = None,
    ) -> QueueSettings:
        """Replace a queue's settings (see :meth:`AsyncClient.update_settings`)."""
        return self._run(
            self._async.update_settings(
                queue,
                rate_limit=rate_limit,
                concurrency=concurrency,
                group_rate_limit=group_rate_limit,
                max_stalled=max_stalled,
                timeout=timeout,
            )
        )

    def workers(self, queue: str, *, timeout: float | None = None) -> builtins.list[WorkerInfo]:
        """The workers seen on a queue lately (see :meth:`AsyncClient.workers`)."""
        return self._run(self._async.workers(queue, timeout=timeout))

    def watch_events(
        self, queue: str, *, after_event_id: str = "", timeout: float | None = None
    ) -> Iterator[Event]:
        """A queue's events as they happen, resuming across reconnections (see
        :meth:`AsyncClient.watch_events`)."""
        return self._iterate(
            self._async.watch_events(queue, after_event_id=after_event_id, timeout=timeout)
        )

    def upsert_schedule(
        self,
        queue: str,
        key: str,
        name: str,
        data: Any = None,
        *,
        cron: str | None = None,
        every: Seconds | None = None,
        timezone: str = "",
        limit: int = 0,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        options: JobOptions | None = None,
        timeout: float | None = None,
    ) -> Schedule:
        """Create or replace a repeatable job (see :meth:`AsyncClient.upsert_schedule`)."""
        return self._run(
            self._async.upsert_schedule(
                queue,
                key,
                name,
                data,
                cron=cron,
                every=every,
                timezone=timezone,
                limit=limit,
                start_at=start_at,
                end_at=end_at,
                options=options,
                timeout=timeout,
            )
        )

    def schedules(self, queue: str, *, timeout: float | None = None) -> builtins.list[Schedule]:
        """A queue's repeatable jobs (see :meth:`AsyncClient.schedules`)."""
        return self._run(self._async.schedules(queue, timeout=timeout))

    def schedule(self, queue: str, key: str, *, timeout: float | None = None) -> Schedule:
        """One repeatable job (see :meth:`AsyncClient.schedule`)."""
        return self._run(self._async.schedule(queue, key, timeout=timeout))

    def remove_schedule(self, queue: str, key: str, *, timeout: float | None = None) -> None:
        """Remove a repeatable job (see :meth:`AsyncClient.remove_schedule`)."""
        self._run(self._async.remove_schedule(queue, key, timeout=timeout))

    def set_job_schema(
        self, queue: str, name: str, schema: SchemaLike, *, timeout: float | None = None
    ) -> bool:
        """Set or remove a job name's data schema (see :meth:`AsyncClient.set_job_schema`)."""
        return self._run(self._async.set_job_schema(queue, name, schema, timeout=timeout))

    def job_schemas(self, queue: str, *, timeout: float | None = None) -> dict[str, Any]:
        """A queue's job data schemas (see :meth:`AsyncClient.job_schemas`)."""
        return self._run(self._async.job_schemas(queue, timeout=timeout))


async def _next(iterator: AsyncIterator[T]) -> tuple[T] | None:
    """The iterator's next item in a 1-tuple, or None at its end (a StopAsyncIteration cannot
    cross the thread boundary as an exception)."""
    try:
        return (await anext(iterator),)
    except StopAsyncIteration:
        return None


async def _close(client: AsyncClient) -> None:
    """Close the client, then end every call still running (one waiting out a retry backoff,
    say), so no thread stays blocked on a loop that is about to stop."""
    await client.close()
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)


def _shut_down(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: AsyncClient
) -> None:
    """Close a Client's AsyncClient and stop its thread (on close(), collection, or exit)."""
    if thread is threading.current_thread():  # collected on its own thread: cannot wait
        loop.call_soon(loop.stop)
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(_close(client), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()
