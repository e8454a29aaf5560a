"""Next-run computation with fixed "now"s: cron in a zone, seconds, every N ms, DST changes."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from jobbroker_broker.storage.cron import (
    BadTiming,
    Timing,
    check_cron,
    local_time,
    next_run,
    to_ms,
    zone_of,
)

NY = "America/New_York"
NYZ = ZoneInfo(NY)


def runs(expression: str, zone: str, start: datetime, until: datetime) -> list[datetime]:
    """Every occurrence after `start` up to `until`, as local datetimes."""
    timing = Timing(cron=expression, zone=zone)
    out = []
    at = next_run(timing, to_ms(start))
    while at is not None and at <= to_ms(until):
        out.append(local_time(at, zone))
        at = next_run(timing, at)
    return out


def per_day(occurrences: list[datetime]) -> Counter[date]:
    return Counter(moment.date() for moment in occurrences)


def test_five_fields_in_a_zone() -> None:
    start = datetime(2024, 6, 1, 12, 0, tzinfo=NYZ)
    got = runs("0 3 * * *", NY, start, start + timedelta(days=2))
    assert got == [
        datetime(2024, 6, 2, 3, 0, tzinfo=NYZ),
        datetime(2024, 6, 3, 3, 0, tzinfo=NYZ),
    ]
    assert [moment.utcoffset() for moment in got] == [timedelta(hours=-4)] * 2


def test_utc_is_the_default_zone() -> None:
    start = datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC"))
    at = next_run(Timing(cron="0 3 * * *"), to_ms(start))
    assert at == to_ms(datetime(2024, 6, 2, 3, 0, tzinfo=ZoneInfo("UTC")))


def test_six_fields_have_seconds_first() -> None:
    start = datetime(2024, 6, 1, 12, 0, 5, 500_000, tzinfo=NYZ)
    got = runs("*/10 * * * * *", NY, start, start + timedelta(seconds=30))
    assert [moment.second for moment in got] == [10, 20, 30]
    # Strictly after: an occurrence exactly at "after" is not the next one.
    on_the_dot = to_ms(datetime(2024, 6, 1, 12, 0, 10, tzinfo=NYZ))
    assert next_run(Timing(cron="*/10 * * * * *", zone=NY), on_the_dot) == on_the_dot + 10_000


def test_spring_forward_runs_a_missing_time_once_just_after_the_gap() -> None:
    # 2024-03-10 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day.
    start = datetime(2024, 3, 8, 12, 0, tzinfo=NYZ)
    got = runs("30 2 * * *", NY, start, datetime(2024, 3, 12, 12, 0, tzinfo=NYZ))
    assert got == [
        datetime(2024, 3, 9, 2, 30, tzinfo=NYZ),
        datetime(2024, 3, 10, 3, 0, tzinfo=NYZ),
        datetime(2024, 3, 11, 2, 30, tzinfo=NYZ),
        datetime(2024, 3, 12, 2, 30, tzinfo=NYZ),
    ]
    assert set(per_day(got).values()) == {1}


def test_spring_forward_day_has_23_hourly_runs() -> None:
    day = datetime(2024, 3, 10, 0, 0, tzinfo=NYZ)
    got = runs("0 * * * *", NY, day - timedelta(seconds=1), day + timedelta(hours=23, minutes=1))
    assert per_day(got)[date(2024, 3, 10)] == 23
    assert len({to_ms(moment) for moment in got}) == len(got)


def test_fall_back_runs_a_repeated_time_once() -> None:
    # 2024-11-03 02:00 EDT falls back to 01:00 EST: 01:30 happens twice.
    start = datetime(2024, 11, 1, 12, 0, tzinfo=NYZ)
    got = runs("30 1 * * *", NY, start, datetime(2024, 11, 5, 12, 0, tzinfo=NYZ))
    assert per_day(got) == Counter(
        {date(2024, 11, 2): 1, date(2024, 11, 3): 1, date(2024, 11, 4): 1, date(2024, 11, 5): 1}
    )
    fallback = [moment for moment in got if moment.date() == date(2024, 11, 3)]
    assert fallback[0].utcoffset() == timedelta(hours=-4)  # the first 01:30 (EDT)


def test_fall_back_skips_the_repeat_even_when_started_between_the_two() -> None:
    between = datetime(2024, 11, 3, 1, 40, tzinfo=NYZ)  # fold 0: 01:40 EDT
    at = next_run(Timing(cron="30 1 * * *", zone=NY), to_ms(between))
    assert at == to_ms(datetime(2024, 11, 4, 1, 30, tzinfo=NYZ))


def test_fall_back_keeps_other_hours_and_minutes_of_the_repeated_hour() -> None:
    start = datetime(2024, 11, 3, 0, 0, tzinfo=NYZ)
    got = runs("*/20 1,2 * * *", NY, start, datetime(2024, 11, 3, 3, 0, tzinfo=NYZ))
    assert [(m.hour, m.minute, m.utcoffset()) for m in got] == [
        (1, 0, timedelta(hours=-4)),
        (1, 20, timedelta(hours=-4)),
        (1, 40, timedelta(hours=-4)),
        (2, 0, timedelta(hours=-5)),
        (2, 20, timedelta(hours=-5)),
        (2, 40, timedelta(hours=-5)),
    ]


def test_fall_back_every_hour_follows_real_time() -> None:
    # An hour field of "*" means every real hour: both 01:00s run (25 runs that day).
    day = datetime(2024, 11, 3, 0, 0, tzinfo=NYZ)
    got = runs("0 * * * *", NY, day - timedelta(seconds=1), day + timedelta(hours=24, minutes=59))
    assert per_day(got)[date(2024, 11, 3)] == 25
    assert len({to_ms(moment) for moment in got}) == len(got)


def test_fall_back_with_a_seconds_cron() -> None:
    start = datetime(2024, 11, 3, 1, 59, 58, tzinfo=NYZ)  # 01:59:58 EDT
    got = runs("0 30 1 * * *", NY, start, start + timedelta(days=1, hours=2))
    assert got == [datetime(2024, 11, 4, 1, 30, tzinfo=NYZ)]


def test_every_ms_counts_from_its_anchor() -> None:
    timing = Timing(every_ms=1_000, anchor_ms=10_500)
    assert next_run(timing, 0) == 10_500
    assert next_run(timing, 10_499) == 10_500
    assert next_run(timing, 10_500) == 11_500
    assert next_run(timing, 12_000) == 12_500


@pytest.mark.parametrize(
    "expression",
    ["", "bad", "* * * *", "61 * * * *", "* 25 * * *", "0 3 * * * 2024 1", "0 0 30 2 *", "@daily"],
)
def test_bad_cron_is_rejected(expression: str) -> None:
    with pytest.raises(BadTiming) as caught:
        check_cron(expression, "UTC")
    assert caught.value.field == "cron"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime"])
def test_bad_zone_is_rejected(zone: str) -> None:
    with pytest.raises(BadTiming) as caught:
        zone_of(zone)
    assert caught.value.field == "timezone"


def test_good_crons_are_accepted() -> None:
    for expression in ("0 3 * * *", "*/10 * * * * *", "0 9 * * mon-fri", "0 0 29 2 *"):
        check_cron(expression, NY)
    assert zone_of("") == ZoneInfo("UTC")
