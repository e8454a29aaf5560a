"""The HTTP API's add request, ``{name, data, options}``, with Bull's option names.

Bull counts ``delay``, ``timeout`` and ``backoff.delay`` in milliseconds, and
``removeOnComplete: {age}`` in seconds, as BullMQ's KeepJobs does; the client's JobOptions take
seconds. Anything else is refused with INVALID_ARGUMENT naming the field, as the broker would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobbroker import Backoff, InvalidArgument, JobOptions, Keep

from .httperrors import invalid

_JOB_OPTION_FIELDS = {
    # JobOptions names its fields as the proto does; the caller wrote Bull's.
    "options.priority": "options.priority",
    "options.attempts": "options.attempts",
    "options.delay_ms": "options.delay",
    "options.timeout_ms": "options.timeout",
    "options.lifespan_ms": "options.lifespan",
    "options.backoff.delay_ms": "options.backoff.delay",
    "options.backoff.max_delay_ms": "options.backoff.maxDelay",
    "options.backoff.jitter": "options.backoff.jitter",
    "options.backoff.type": "options.backoff.type",
    "options.remove_on_complete": "options.removeOnComplete",
    "options.remove_on_complete.keep_last": "options.removeOnComplete.count",
    "options.remove_on_complete.keep_age_ms": "options.removeOnComplete.age",
    "options.remove_on_fail": "options.removeOnFail",
    "options.remove_on_fail.keep_last": "options.removeOnFail.count",
    "options.remove_on_fail.keep_age_ms": "options.removeOnFail.age",
}


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"must be a number (got {value!r})")
    return float(value)


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be a whole number (got {value!r})")
    return value


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, f"must be true or false (got {value!r})")
    return value


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise invalid(field, f"must be a string (got {value!r})")
    return value


def _millis(value: Any, field: str) -> float:
    """Bull's milliseconds as the client's seconds."""
    return _number(value, field) / 1000


def _job_id(value: Any, field: str) -> str:
    # Bull takes numbers too; the broker keeps ids as strings.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _string(value, field)


def _backoff(value: Any, field: str) -> Backoff:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Backoff("fixed", value / 1000)  # Bull's `backoff: 5000`: fixed, 5 s
    if not isinstance(value, Mapping):
        raise invalid(field, f"must be {{type, delay}} or a delay in ms (got {value!r})")
    _only(value, {"type", "delay", "jitter", "maxDelay"}, field)
    kind = value.get("type", "fixed")
    if kind not in ("fixed", "exponential"):
        raise invalid(f"{field}.type", f"must be 'fixed' or 'exponential' (got {kind!r})")
    max_delay = value.get("maxDelay")
    return Backoff(
        kind,
        _millis(value.get("delay", 0), f"{field}.delay"),
        jitter=_number(value.get("jitter", 0), f"{field}.jitter"),
        max_delay=None if max_delay is None else _millis(max_delay, f"{field}.maxDelay"),
    )


def _retention(value: Any, field: str) -> bool | int | Keep:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if not isinstance(value, Mapping):
        raise invalid(field, f"must be true, false, a count or {{age, count}} (got {value!r})")
    _only(value, {"age", "count"}, field)
    age = value.get("age")
    return Keep(
        last=_integer(value.get("count", 0), f"{field}.count"),
        age=None if age is None else _number(age, f"{field}.age"),  # BullMQ: seconds
    )


_OPTIONS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "jobId": ("job_id", _job_id),
    "priority": ("priority", _integer),
    "delay": ("delay", _millis),
    "attempts": ("attempts", _integer),
    "backoff": ("backoff", _backoff),
    "timeout": ("timeout", _millis),
    "lifespan": ("lifespan", _millis),
    "removeOnComplete": ("remove_on_complete", _retention),
    "removeOnFail": ("remove_on_fail", _retention),
    "lifo": ("lifo", _boolean),
    "group": ("group", _string),
}
"""Bull's option name: the JobOptions field and how to read the value."""


def _only(value: Mapping[str, Any], allowed: set[str], field: str) -> None:
    for key in value:
        if key not in allowed:
            names = ", ".join(sorted(allowed))
            raise invalid(f"{field}.{key}", f"unknown option; known: {names}")


def job_options(value: Any) -> JobOptions:
    """Bull's job options (a JSON object) as :class:`jobbroker.JobOptions`."""
    if value is None:
        return JobOptions()
    if not isinstance(value, Mapping):
        raise invalid("options", f"must be an object (got {value!r})")
    _only(value, set(_OPTIONS), "options")
    fields: dict[str, Any] = {}
    for key, raw in value.items():
        if raw is None:
            continue
        name, read = _OPTIONS[key]
        fields[name] = read(raw, f"options.{key}")
    try:
        return JobOptions(**fields)
    except InvalidArgument as exc:
        field = _JOB_OPTION_FIELDS.get(exc.field, exc.field)
        problem = exc.message.split(": ", 1)[-1]
        raise invalid(field, problem) from None


def add_request(body: Any) -> tuple[str, Any, JobOptions]:
    """``{name, data, options}``: the job's name, data and options."""
    if not isinstance(body, Mapping):
        raise invalid("body", "must be a JSON object {name, data, options}")
    _only(body, {"name", "data", "options"}, "body")
    if "name" not in body:
        raise invalid("name", "is required")
    name = _string(body["name"], "name")
    return name, body.get("data"), job_options(body.get("options"))
