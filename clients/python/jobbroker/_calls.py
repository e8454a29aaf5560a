"""What the clients' calls share besides the transport: how to build requests from Python
values and how to read replies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypedDict

from . import tracing
from .errors import JobBrokerError, JobCancelled, JobFailed
from .limits import MAX_DURATION_MS, MAX_UINT32, MIN_EVERY_MS
from .models import (
    Backoff,
    Event,
    EventType,
    Job,
    JobOptions,
    JobState,
    Retention,
    Seconds,
    encode,
    invalid,
    ms,
)
from .queue_models import QueueSettings, RateLimit, Schedule
from .v1 import job_service_pb2, queue_service_pb2


class OptionFields(TypedDict, total=False):
    """Job options given to ``add()`` as keywords, each the :class:`JobOptions` field of that
    name, except ``attempt_timeout``: it is ``JobOptions.timeout`` (``timeout=`` is the deadline
    of the call itself, as on every client method)."""

    job_id: str | None
    priority: int
    delay: Seconds | None
    attempts: int
    backoff: Backoff | None
    attempt_timeout: Seconds | None
    lifespan: Seconds | None
    remove_on_complete: Retention
    remove_on_fail: Retention
    lifo: bool
    group: str | None


BulkItem = tuple[str, Any] | tuple[str, Any, JobOptions | None]
"""One job of ``add_bulk()``: ``(name, data)`` or ``(name, data, options)``."""


def job_options(options: JobOptions | None, fields: OptionFields) -> JobOptions:
    """``options`` (or the defaults) with the keyword fields applied over it."""
    values: dict[str, Any] = dict(fields)
    if "attempt_timeout" in values:
        values["timeout"] = values.pop("attempt_timeout")
    base = options or JobOptions()
    return replace(base, **values) if values else base


def add_request(
    queue: str, name: str, data: Any, options: JobOptions
) -> job_service_pb2.AddRequest:
    request = job_service_pb2.AddRequest(
        queue=queue, name=name, data=encode(data), options=options.to_proto()
    )
    if tracing.loaded() and (carried := tracing.current_trace_context()) is not None:
        request.options.trace_context.CopyFrom(carried)
    return request


def bulk_request(
    queue: str, jobs: Iterable[BulkItem]
) -> tuple[job_service_pb2.AddBulkRequest, bool]:
    """The AddBulk request, and whether it may be retried: every job has a custom id."""
    request = job_service_pb2.AddBulkRequest(queue=queue)
    carried = tracing.current_trace_context() if tracing.loaded() else None
    idempotent = True
    for item in jobs:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise TypeError(
                f"add_bulk: each job is (name, data) or (name, data, options), got {item!r}"
            )
        name, data = item[0], item[1]
        options = (item[2] if len(item) == 3 else None) or JobOptions()
        idempotent = idempotent and bool(options.job_id)
        job = request.jobs.add(name=name, data=encode(data), options=options.to_proto())
        if carried is not None:
            job.options.trace_context.CopyFrom(carried)
    return request, idempotent and len(request.jobs) > 0


def state_of(value: int) -> JobState:
    """A job state of a reply (the broker always sets one)."""
    state = JobState.from_proto(value)
    if state is None:
        raise JobBrokerError("the broker answered without a job state")
    return state


def state_arg(state: JobState | str) -> JobState:
    """A state argument: a :class:`JobState` or its name (``"failed"``, ``"FAILED"``)."""
    if isinstance(state, JobState):
        return state
    try:
        return JobState(state.lower())
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise ValueError(f"state: {state!r} is not one of {names}") from None


def ends_run(event: Event) -> bool:
    """Whether ``wait()`` has its answer after this event: the job's run is over."""
    return event.final or (event.state is not None and event.state.terminal)


def finished_job(snapshot: Job | None, event: Event, fresh: Job | None) -> Job:
    """The finished job to report after ``event`` ended its run: the fresh snapshot when it
    still shows that end, else (removed at once, or already retried) what the event says."""
    if fresh is not None and fresh.state.terminal:
        return fresh
    base = fresh or snapshot
    if base is None:
        raise JobBrokerError(f"job {event.job_id} of queue {event.queue} ended unseen")
    state = event.state if event.state is not None and event.state.terminal else None
    if state is None:
        state = JobState.CANCELLED if event.type is EventType.CANCELLED else JobState.FAILED
    return replace(base, state=state, failure=event.failure or base.failure)


def outcome(job: Job) -> Any:
    """A finished job's result; its failure or cancellation as an exception."""
    if job.state is JobState.COMPLETED:
        return job.result
    if job.state is JobState.CANCELLED:
        raise JobCancelled(job)
    raise JobFailed(job)


def clean_request(
    queue: str, state: JobState | str, grace: Seconds, limit: int
) -> queue_service_pb2.CleanQueueRequest:
    return queue_service_pb2.CleanQueueRequest(
        queue=queue, state=state_arg(state).to_proto(), grace_ms=ms(grace), limit=limit
    )


def queue_settings(
    rate_limit: RateLimit | None,
    concurrency: int,
    group_rate_limit: RateLimit | None,
    max_stalled: int,
) -> QueueSettings:
    """The settings of ``update_settings()``; they replace the queue's current ones whole."""
    if concurrency < 0 or max_stalled < 0:
        raise ValueError("concurrency and max_stalled must not be negative")
    return QueueSettings(rate_limit, concurrency, group_rate_limit, max_stalled)


def schedule(
    queue: str,
    key: str,
    name: str,
    data: Any,
    *,
    cron: str | None,
    every: Seconds | None,
    timezone: str,
    limit: int,
    start_at: datetime | None,
    end_at: datetime | None,
    options: JobOptions | None,
) -> Schedule:
    """The schedule of ``upsert_schedule()``: exactly one of ``cron`` and ``every``."""
    if bool(cron) == (every is not None):
        raise ValueError("upsert_schedule: give exactly one of cron= and every=")
    if every is not None:
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        # The wire's 0 means "not set": say what is wrong with the value given instead.
        if not MIN_EVERY_MS <= round(seconds * 1000) <= MAX_DURATION_MS:
            raise invalid(
                "schedule.every_ms",
                f"must be between {MIN_EVERY_MS} and {MAX_DURATION_MS} (got {every!r} s)",
            )
    if isinstance(limit, bool) or not 0 <= limit <= MAX_UINT32:
        raise invalid("schedule.limit", f"must be 0 (no limit) or more (got {limit!r})")
    return Schedule(
        key=key,
        queue=queue,
        name=name,
        data=data,
        options=options or JobOptions(),
        cron=cron or "",
        timezone=timezone,
        every=every,
        limit=limit,
        start_at=start_at,
        end_at=end_at,
    )
