"""When a repeatable job runs: cron expressions (read by croniter) in a time zone, or every N ms.

Pure functions of an injected "after" instant, so daylight-saving behaviour is unit-tested with
fixed datetimes. Occurrences are computed with aware datetimes in the schedule's zone:

- spring forward: a wall time that does not exist that day (02:30 in America/New_York on the
  March change) runs once, at the first instant after the gap (03:00 local), as croniter defines;
- fall back: a wall time that happens twice (01:30 on the November change) runs once, at its
  first instance. Expressions whose hour field is ``*`` (every hour) are the exception: their
  occurrences are real elapsed time, so both 01:00s run, as in Vixie cron.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

_HOUR = 1  # croniter's `expanded` lists minute, hour, day, month, weekday[, second]
_MAX_SKIPS = 8  # restarts of croniter past repeated wall times before giving up


class BadTiming(ValueError):
    """A cron expression or time zone that cannot be used; `field` names which."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule runs: a cron expression in a zone, or every `every_ms` from `anchor_ms`."""

    cron: str = ""
    zone: str = "UTC"
    every_ms: int = 0
    anchor_ms: int = 0
    """every_ms schedules run at anchor_ms + k * every_ms."""


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone called `name` ('' is UTC); BadTiming('timezone') when there is none."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadTiming("timezone", f"{name!r} is not an IANA time zone") from None


def check_cron(expression: str, zone: str) -> None:
    """Raise BadTiming('cron') unless `expression` has 5 or 6 fields that croniter accepts and
    that match some time."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise BadTiming("cron", "must have five fields, or six with seconds first")
    try:
        croniter(expression, datetime.now(zone_of(zone)), second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise BadTiming("cron", f"{expression!r} is not a valid cron expression: {exc}") from None
    if next_run(Timing(cron=expression, zone=zone), 0) is None:
        raise BadTiming("cron", f"{expression!r} never matches")


def _fold_end(local: datetime) -> int:
    """The first second (since the epoch) after the repeated wall times `local` is one of."""
    zone = local.tzinfo
    earlier, later = local.replace(fold=0).utcoffset(), local.replace(fold=1).utcoffset()
    assert earlier is not None
    assert later is not None
    low = int(local.timestamp())  # a second of the repeat: fold 1
    high = low + int((earlier - later).total_seconds())  # past the repeat: fold 0
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).fold:
            low = middle
        else:
            high = middle
    return high


def _cron_next(timing: Timing, after_ms: int) -> int | None:
    zone = zone_of(timing.zone)
    six = len(timing.cron.split()) == 6
    start_ms = after_ms
    for _ in range(_MAX_SKIPS):
        start = datetime.fromtimestamp(start_ms / 1000, zone)
        try:
            it = croniter(timing.cron, start, ret_type=datetime, second_at_beginning=six)
            candidate: datetime = it.get_next(datetime)
        except (CroniterError, ValueError, KeyError, TypeError):
            return None  # invalid, or no match within croniter's search horizon
        at_ms = to_ms(candidate)
        # fromtimestamp sets fold=1 on the second instance of a repeated wall time.
        local = datetime.fromtimestamp(at_ms / 1000, zone)
        if at_ms <= after_ms:
            start_ms = at_ms
        elif local.fold and it.expanded[_HOUR] != ["*"]:
            start_ms = _fold_end(local) * 1000 - 1000
        else:
            return at_ms
    return None


def next_run(timing: Timing, after_ms: int) -> int | None:
    """The first occurrence strictly after `after_ms` (ms since the epoch), or None if none."""
    if timing.every_ms:
        if after_ms < timing.anchor_ms:
            return timing.anchor_ms
        periods = (after_ms - timing.anchor_ms) // timing.every_ms + 1
        return timing.anchor_ms + periods * timing.every_ms
    return _cron_next(timing, after_ms)


def local_time(at_ms: int, zone: str) -> datetime:
    """An instant as an aware datetime in `zone` (for messages and tests)."""
    return datetime.fromtimestamp(at_ms / 1000, zone_of(zone))


def to_ms(moment: datetime) -> int:
    """An aware datetime as ms since the epoch."""
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
