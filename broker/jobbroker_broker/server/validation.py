"""Request checks: each failure names the offending field (INVALID_ARGUMENT) or limit."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import orjson
from jobbroker.limits import (
    MAX_ATTEMPTS,
    MAX_DURATION_MS,
    MAX_GROUP,
    MAX_JOB_ID,
    MAX_PRIORITY,
)
from jobbroker.v1 import job_pb2

from ..errors import InvalidArgument, LimitExceeded
from ..settings import Settings
from ..storage.contracts.hashes import JobField as F
from ..storage.contracts.jobs import AddJob

JSON = "application/json"
QUEUE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ID_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f{}]")
# W3C Trace Context: version 00's four fields; a later version may append fields after a dash.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[ -~]*)?")
MAX_TRACESTATE = 512
"""Characters of a tracestate kept at most (what W3C asks every hop to be able to carry)."""


def queue_name(value: str, field: str = "queue") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not QUEUE_NAME.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 characters from A-Z a-z 0-9 . _ : -")
    return value


def job_name(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > 128 or _CONTROL.search(value):
        raise InvalidArgument(field, "must be 1-128 characters without control characters")
    return value


def _key(value: str, field: str, longest: int) -> str:
    """A name that becomes part of Redis keys: no spaces, braces (the hash tag) or controls."""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > longest or _ID_FORBIDDEN.search(value):
        raise InvalidArgument(
            field, f"must be 1-{longest} characters without spaces, braces or controls"
        )
    return value


def job_id(value: str, field: str = "job_id") -> str:
    return _key(value, field, MAX_JOB_ID)


def group(value: str, field: str) -> str:
    """A job's group (JobOptions.group): 1-128 characters, as the proto says."""
    return _key(value, field, MAX_GROUP)


def custom_job_id(value: str, field: str) -> str:
    if not value:
        return ""
    job_id(value, field)
    if value.isdigit():
        raise InvalidArgument(field, "must not be all digits (generated ids are)")
    return value


def _json_depth_ok(body: bytes, max_depth: int) -> bool:
    # Cheap bounds first: fewer bytes, or fewer brackets, than the limit cannot nest deeper.
    if len(body) <= max_depth or body.count(b"[") + body.count(b"{") <= max_depth:
        return True
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def is_json(content_type: str) -> bool:
    """Whether a MIME type means JSON ("" does; parameters such as a charset are ignored)."""
    if not content_type or content_type == JSON:  # the common cases, without the parsing
        return True
    return content_type.split(";", 1)[0].strip().lower() == JSON


def payload(value: job_pb2.Payload, field: str, settings: Settings) -> tuple[bytes, str]:
    """Check a payload; returns its body and content type, as sent (read back unchanged)."""
    body = value.body
    if len(body) > settings.max_payload_bytes:
        raise LimitExceeded(
            "max_payload_bytes",
            f"{field} is {len(body)} bytes, over {settings.max_payload_bytes}",
            field=field,
        )
    content_type = value.content_type
    if is_json(content_type):
        if body:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"{field}.body", f"is not valid JSON: {exc}") from None
            if not _json_depth_ok(body, settings.max_json_depth):
                raise InvalidArgument(
                    f"{field}.body", f"nests deeper than {settings.max_json_depth} levels"
                )
        return body, content_type
    if len(content_type) > 128 or _CONTROL.search(content_type):
        raise InvalidArgument(f"{field}.content_type", "must be a MIME type of at most 128 chars")
    return body, content_type


def _duration(value: int, field: str) -> str:
    if value > MAX_DURATION_MS:
        raise InvalidArgument(field, f"must be at most {MAX_DURATION_MS} ms (ten years)")
    return str(value) if value else ""


def _retention(policy: job_pb2.RetentionPolicy, field: str, present: bool) -> str:
    if not present:
        return ""
    if policy.remove:
        return "1,0,0"
    if not policy.keep_last and not policy.keep_age_ms:
        return ""
    _duration(policy.keep_age_ms, f"{field}.keep_age_ms")
    return f"0,{policy.keep_last},{policy.keep_age_ms}"


def options(opts: job_pb2.JobOptions, field: str) -> Sequence[str | bytes]:
    """The job options the add script takes: each option set, by its job hash field, as
    (field, value) pairs flattened; unset options are left out."""
    if not opts.ByteSize():
        return ()  # every option unset, the common case of a bulk add: nothing to check
    if opts.priority > MAX_PRIORITY:
        raise InvalidArgument(f"{field}.priority", f"must be 0 (none) or 1-{MAX_PRIORITY}")
    if opts.group:
        group(opts.group, f"{field}.group")
    if opts.attempts > MAX_ATTEMPTS:
        raise InvalidArgument(f"{field}.attempts", f"must be at most {MAX_ATTEMPTS}")
    backoff = _backoff(opts.backoff, f"{field}.backoff") if opts.HasField("backoff") else {}
    values: dict[bytes, str] = {
        F.PRIORITY: str(opts.priority) if opts.priority else "",
        F.LIFO: "1" if opts.lifo else "",
        F.DELAY_MS: _duration(opts.delay_ms, f"{field}.delay_ms"),
        F.ATTEMPTS: str(opts.attempts) if opts.attempts > 1 else "",
        F.TIMEOUT_MS: _duration(opts.timeout_ms, f"{field}.timeout_ms"),
        F.LIFESPAN_MS: _duration(opts.lifespan_ms, f"{field}.lifespan_ms"),
        F.REMOVE_ON_COMPLETE: _retention(
            opts.remove_on_complete,
            f"{field}.remove_on_complete",
            opts.HasField("remove_on_complete"),
        ),
        F.REMOVE_ON_FAIL: _retention(
            opts.remove_on_fail, f"{field}.remove_on_fail", opts.HasField("remove_on_fail")
        ),
        F.GROUP: opts.group,
        F.TRACE_CONTEXT: (
            trace_context(opts.trace_context, f"{field}.trace_context")
            if opts.HasField("trace_context")
            else ""
        ),
        **backoff,
    }
    return [item for name, value in values.items() if value for item in (name, value)]


def trace_context(carried: job_pb2.TraceContext, field: str) -> str:
    """A trace context as the job hash keeps it (contracts.hashes.JobField.TRACE_CONTEXT);
    '' for an empty one."""
    traceparent, tracestate = carried.traceparent, carried.tracestate
    if not traceparent:
        if tracestate:
            raise InvalidArgument(f"{field}.traceparent", "is required with a tracestate")
        return ""
    match = _TRACEPARENT.fullmatch(traceparent)
    if (
        match is None
        or len(traceparent) > 256
        or match.group(1) == "ff"
        or (match.group(1) == "00" and match.group(4))
        or not match.group(2).strip("0")
        or not match.group(3).strip("0")
    ):
        raise InvalidArgument(
            f"{field}.traceparent",
            "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, "
            "lower case, ids not all zero",
        )
    if not tracestate:
        return traceparent
    if len(tracestate) > MAX_TRACESTATE or _CONTROL.search(tracestate):
        raise InvalidArgument(
            f"{field}.tracestate",
            f"must be at most {MAX_TRACESTATE} characters, without control characters",
        )
    return f"{traceparent} {tracestate.strip()}"


def traceparent_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, str]:
    """The ``traceparent`` and ``tracestate`` of a call's metadata ('' for one not sent): the
    trace context of an Add whose job carries none (docs/tracing.md)."""
    traceparent = tracestate = ""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            traceparent = value
        elif key == "tracestate" and isinstance(value, str):
            tracestate = value
    return traceparent, tracestate


def _backoff(backoff: job_pb2.Backoff, field: str) -> dict[bytes, str]:
    if backoff.type not in (
        job_pb2.BACKOFF_TYPE_UNSPECIFIED,
        job_pb2.BACKOFF_TYPE_FIXED,
        job_pb2.BACKOFF_TYPE_EXPONENTIAL,
    ):
        raise InvalidArgument(f"{field}.type", f"unknown backoff type {backoff.type}")
    if backoff.type == job_pb2.BACKOFF_TYPE_UNSPECIFIED and backoff.delay_ms:
        raise InvalidArgument(f"{field}.type", "is required when delay_ms is set")
    if not 0.0 <= backoff.jitter <= 1.0 or math.isnan(backoff.jitter):
        raise InvalidArgument(f"{field}.jitter", "must be between 0 and 1")
    return {
        F.BACKOFF_TYPE: str(backoff.type) if backoff.type else "",
        F.BACKOFF_DELAY_MS: _duration(backoff.delay_ms, f"{field}.delay_ms"),
        F.BACKOFF_JITTER: repr(backoff.jitter) if backoff.jitter else "",
        F.BACKOFF_MAX_MS: _duration(backoff.max_delay_ms, f"{field}.max_delay_ms"),
    }


def new_job(
    name: str,
    data: job_pb2.Payload,
    opts: job_pb2.JobOptions,
    field: str,
    settings: Settings,
) -> AddJob:
    """One job of an add, as the add script takes it."""
    prefix = f"{field}." if field else ""
    body, content_type = payload(data, f"{prefix}data", settings)
    return AddJob(
        id=custom_job_id(opts.job_id, f"{prefix}options.job_id"),
        name=job_name(name, f"{prefix}name"),
        data=body,
        data_type=content_type,
        options=options(opts, f"{prefix}options"),
    )


def event_id(value: str, field: str = "after_event_id") -> str:
    """A stream event id such as 1700000000000-0."""
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise InvalidArgument(field, "is not an event id (like 1700000000000-0)")
    return value


def bounded(value: int, field: str, default: int, low: int, high: int) -> int:
    """A count or duration with a default for 0 and an allowed range."""
    if value == 0:
        return default
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}")
    return value
