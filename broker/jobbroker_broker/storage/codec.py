"""Redis values <-> jobbroker.v1 messages."""

from __future__ import annotations

from collections.abc import Mapping

from jobbroker.v1 import events_pb2, job_pb2

from .contracts.hashes import JobField as F

STATES: dict[bytes, int] = {
    b"waiting": job_pb2.JOB_STATE_WAITING,
    b"delayed": job_pb2.JOB_STATE_DELAYED,
    b"active": job_pb2.JOB_STATE_ACTIVE,
    b"completed": job_pb2.JOB_STATE_COMPLETED,
    b"failed": job_pb2.JOB_STATE_FAILED,
    b"cancelled": job_pb2.JOB_STATE_CANCELLED,
}

EVENT_TYPES: dict[bytes, int] = {
    b"added": events_pb2.EVENT_TYPE_ADDED,
    b"waiting": events_pb2.EVENT_TYPE_WAITING,
    b"delayed": events_pb2.EVENT_TYPE_DELAYED,
    b"active": events_pb2.EVENT_TYPE_ACTIVE,
    b"progress": events_pb2.EVENT_TYPE_PROGRESS,
    b"completed": events_pb2.EVENT_TYPE_COMPLETED,
    b"failed": events_pb2.EVENT_TYPE_FAILED,
    b"retries-exhausted": events_pb2.EVENT_TYPE_RETRIES_EXHAUSTED,
    b"stalled": events_pb2.EVENT_TYPE_STALLED,
    b"cancelled": events_pb2.EVENT_TYPE_CANCELLED,
    b"cancel-requested": events_pb2.EVENT_TYPE_CANCEL_REQUESTED,
    b"removed": events_pb2.EVENT_TYPE_REMOVED,
    b"duplicated": events_pb2.EVENT_TYPE_DUPLICATED,
    b"released": events_pb2.EVENT_TYPE_RELEASED,
    b"paused": events_pb2.EVENT_TYPE_PAUSED,
    b"resumed": events_pb2.EVENT_TYPE_RESUMED,
    b"cleaned": events_pb2.EVENT_TYPE_CLEANED,
    b"purged": events_pb2.EVENT_TYPE_PURGED,
    b"drained": events_pb2.EVENT_TYPE_DRAINED,
}
FINAL_EVENTS = frozenset({b"completed", b"cancelled", b"removed", b"retries-exhausted"})
"""Events after which a job's progress stream ends (``JobEvent.final``)."""
TERMINAL_STATES = frozenset(
    {job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
)

Fields = Mapping[bytes, bytes]


def _int(fields: Fields, name: bytes) -> int:
    value = fields.get(name)
    return int(value) if value else 0


def _text(fields: Fields, name: bytes) -> str:
    value = fields.get(name)
    return value.decode() if value else ""


def payload(body: bytes | None, content_type: bytes | None) -> job_pb2.Payload:
    return job_pb2.Payload(
        body=body or b"", content_type=content_type.decode() if content_type else ""
    )


def progress(fields: Fields) -> job_pb2.Progress:
    """A job's progress, from its hash (or an event, which names the fields alike)."""
    result = job_pb2.Progress()
    percent = fields.get(F.PROGRESS_PERCENT)
    if percent:
        result.percent = float(percent)
    value = fields.get(F.PROGRESS_VALUE)
    if value is not None:
        result.value.CopyFrom(payload(value, fields.get(F.PROGRESS_VALUE_TYPE)))
    return result


def failure(fields: Fields) -> job_pb2.Failure | None:
    """A job's failure, from its hash (or an event, which names the fields alike and gives
    the attempt as ``a``)."""
    reason = _int(fields, F.FAILURE_REASON)
    if not reason:
        return None
    return job_pb2.Failure(
        reason=reason,  # type: ignore[arg-type]
        message=_text(fields, F.FAILURE_MESSAGE),
        error_type=_text(fields, F.FAILURE_TYPE),
        stack=_text(fields, F.FAILURE_STACK),
        attempt=_int(fields, F.FAILURE_ATTEMPT) or _int(fields, b"a"),
    )


def _retention(encoded: bytes | None) -> job_pb2.RetentionPolicy | None:
    if not encoded:
        return None
    remove, keep_last, keep_age = encoded.split(b",")
    return job_pb2.RetentionPolicy(
        remove=remove == b"1", keep_last=int(keep_last), keep_age_ms=int(keep_age)
    )


def options(job_id: str, fields: Fields) -> job_pb2.JobOptions:
    opts = job_pb2.JobOptions(
        priority=_int(fields, F.PRIORITY),
        lifo=fields.get(F.LIFO) == b"1",
        delay_ms=_int(fields, F.DELAY_MS),
        attempts=_int(fields, F.ATTEMPTS) or 1,
        timeout_ms=_int(fields, F.TIMEOUT_MS),
        lifespan_ms=_int(fields, F.LIFESPAN_MS),
        group=_text(fields, F.GROUP),
    )
    if not job_id.isdigit():
        opts.job_id = job_id
    if F.BACKOFF_TYPE in fields:
        opts.backoff.type = _int(fields, F.BACKOFF_TYPE)  # type: ignore[assignment]
        opts.backoff.delay_ms = _int(fields, F.BACKOFF_DELAY_MS)
        opts.backoff.jitter = float(fields.get(F.BACKOFF_JITTER) or 0)
        opts.backoff.max_delay_ms = _int(fields, F.BACKOFF_MAX_MS)
    for name, key in (
        (F.REMOVE_ON_COMPLETE, "remove_on_complete"),
        (F.REMOVE_ON_FAIL, "remove_on_fail"),
    ):
        policy = _retention(fields.get(name))
        if policy is not None:
            getattr(opts, key).CopyFrom(policy)
    carried = fields.get(F.TRACE_CONTEXT)
    if carried:
        trace_context(carried, opts.trace_context)
    return opts


def trace_context(encoded: bytes, into: job_pb2.TraceContext) -> None:
    """Fill ``into`` from a job hash's trace context field (contracts.hashes.JobField)."""
    traceparent, _, tracestate = encoded.decode().partition(" ")
    into.traceparent = traceparent
    if tracestate:
        into.tracestate = tracestate


def job(queue: str, job_id: str, fields: Fields, log_count: int = 0) -> job_pb2.Job:
    """A job snapshot from its hash."""
    state = STATES.get(fields.get(F.STATE, b""), job_pb2.JOB_STATE_UNSPECIFIED)
    result = job_pb2.Job(
        id=job_id,
        queue=queue,
        name=_text(fields, F.NAME),
        state=state,  # type: ignore[arg-type]
        data=payload(fields.get(F.DATA), fields.get(F.DATA_TYPE)),
        options=options(job_id, fields),
        attempts_made=_int(fields, F.ATTEMPTS_MADE),
        progress=progress(fields),
        created_at_ms=_int(fields, F.CREATED_AT),
        started_at_ms=_int(fields, F.STARTED_AT),
        finished_at_ms=_int(fields, F.FINISHED_AT),
        run_at_ms=_int(fields, F.RUN_AT),
        worker_id=_text(fields, F.WORKER),
        lease_expires_at_ms=(
            _int(fields, F.LEASE_EXPIRES_AT) if state == job_pb2.JOB_STATE_ACTIVE else 0
        ),
        cancel_requested=fields.get(F.CANCEL_REQUESTED) == b"1",
        cancel_reason=_text(fields, F.CANCEL_REASON),
        stalled_count=_int(fields, F.STALLED_COUNT),
        log_count=log_count,
    )
    if F.RESULT in fields:
        result.result.CopyFrom(payload(fields[F.RESULT], fields.get(F.RESULT_TYPE)))
    fail = failure(fields)
    if fail is not None:
        result.failure.CopyFrom(fail)
    return result


def stream_id_key(event_id: bytes | str) -> tuple[int, int]:
    """A stream entry id as a comparable (ms, seq) pair."""
    text = event_id.decode() if isinstance(event_id, bytes) else event_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _event_type(name: bytes, fields: Fields) -> int:
    if name == b"drained" and b"c" in fields:
        # Written by a broker from before `purged`: DrainQueue's event (with a count) was
        # named `drained`, which now means BullMQ's "ran empty" (never with a count).
        return events_pb2.EVENT_TYPE_PURGED
    return EVENT_TYPES.get(name, events_pb2.EVENT_TYPE_UNSPECIFIED)


def event(queue: str, event_id: bytes, fields: Fields) -> events_pb2.JobEvent:
    """A queue event from its stream entry."""
    name = fields.get(b"e", b"")
    ev = events_pb2.JobEvent(
        event_id=event_id.decode(),
        type=_event_type(name, fields),  # type: ignore[arg-type]
        queue=queue,
        job_id=_text(fields, b"j"),
        timestamp_ms=stream_id_key(event_id)[0],
        state=STATES.get(fields.get(b"s", b""), job_pb2.JOB_STATE_UNSPECIFIED),  # type: ignore[arg-type]
        attempt=_int(fields, b"a"),
        run_at_ms=_int(fields, b"ra"),
        worker_id=_text(fields, b"w"),
        fence=_int(fields, b"f"),
        name=_text(fields, b"n"),
        count=_int(fields, b"c"),
        final=name in FINAL_EVENTS,
    )
    if b"pp" in fields or b"pv" in fields:
        ev.progress.CopyFrom(progress(fields))
    if b"r" in fields:
        ev.result.CopyFrom(payload(fields[b"r"], fields.get(b"rct")))
    fail = failure(fields)
    if fail is not None:
        ev.failure.CopyFrom(fail)
    return ev
