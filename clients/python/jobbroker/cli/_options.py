"""Parsing of the CLI's option values: durations, backoff, retention, JSON data."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson

from ..errors import InvalidArgument
from ..models import Backoff, JobOptions, Keep, Retention

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class OptionError(ValueError):
    """An option value the CLI cannot use; the message names the option."""


def duration(value: str, option: str) -> float:
    """``1.5`` (seconds), ``500ms``, ``30s``, ``5m``, ``2h`` or ``1d`` as seconds."""
    match = _DURATION.match(value)
    if match is None:
        raise OptionError(
            f"{option}: {value!r} is not a duration (use seconds, or 500ms, 30s, 5m, 2h, 1d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def maybe_duration(value: str | None, option: str) -> float | None:
    """:func:`duration`, or None when the option was not given."""
    return duration(value, option) if value else None


def backoff(value: str, jitter: float, max_delay: str | None) -> Backoff:
    """``fixed:DELAY`` or ``exponential:DELAY`` (``exponential:5s`` waits 5 s, 10 s, 20 s ...)."""
    kind, sep, delay = value.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("fixed", "exponential"):
        raise OptionError(f"--backoff: {value!r} is not fixed:DELAY or exponential:DELAY")
    if not 0.0 <= jitter <= 1.0:
        raise OptionError(f"--backoff-jitter: {jitter} is not between 0 and 1")
    return Backoff(
        "fixed" if kind == "fixed" else "exponential",
        duration(delay, "--backoff"),
        jitter=jitter,
        max_delay=duration(max_delay, "--backoff-max") if max_delay else None,
    )


def retention(value: str, option: str) -> Retention:
    """``true`` (remove at once), ``false`` (keep), ``N`` (keep the last N), a duration like
    ``1h`` (keep for that long), or both: ``100,1h``."""
    text = value.strip().lower()
    if text in ("true", "yes", "remove"):
        return True
    if text in ("false", "no", "keep"):
        return False
    last = 0
    age: float | None = None
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            last = int(part)
        else:
            try:
                age = duration(part, option)
            except OptionError:
                raise OptionError(
                    f"{option}: {value!r} is not true, false, N (keep the last N), "
                    "a duration (keep for that long) or N,DURATION"
                ) from None
    if age is None:
        return last
    return Keep(last=last, age=age)


def json_data(value: str | None, option: str = "--data") -> Any:
    """The ``--data`` value as a Python value: JSON text, ``@path`` (a JSON file) or ``-``
    (JSON on standard input). None when not given."""
    if value is None:
        return None
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise OptionError(f"{option}: cannot read {value[1:]!r}: {exc.strerror}") from None
    else:
        text = value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OptionError(f"{option}: not valid JSON ({exc})") from None


def attempt_fields(
    *,
    backoff_spec: str | None,
    timeout: str | None,
    remove_on_complete: str,
    remove_on_fail: str,
    backoff_jitter: float = 0.0,
    backoff_max: str | None = None,
) -> dict[str, Any]:
    """The JobOptions fields ``add`` and ``schedules add`` share (retries, the attempt's
    time limit, retention), from their options' text."""
    return {
        "backoff": backoff(backoff_spec, backoff_jitter, backoff_max) if backoff_spec else None,
        "timeout": maybe_duration(timeout, "--timeout"),
        "remove_on_complete": retention(remove_on_complete, "--remove-on-complete"),
        "remove_on_fail": retention(remove_on_fail, "--remove-on-fail"),
    }


def _flag(field: str) -> str:
    """The option of ``add`` that sets a JobOptions field (``options.timeout_ms``)."""
    path = field.removeprefix("options.")
    special = {"backoff.jitter": "--backoff-jitter", "backoff.max_delay_ms": "--backoff-max"}
    return special.get(path) or "--" + path.split(".")[0].removesuffix("_ms").replace("_", "-")


def job_options(**fields: Any) -> JobOptions:
    """The JobOptions of the options given; a value it refuses is an :class:`OptionError`
    naming the option (``--timeout: must be at least 1 ms ...``)."""
    try:
        return JobOptions(**fields)
    except InvalidArgument as exc:
        problem = exc.message.removeprefix(f"{exc.field}: ")
        raise OptionError(f"{_flag(exc.field)}: {problem}") from None
