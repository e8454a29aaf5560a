"""Throughput and failure rate per minute, counted from a queue's events, drawn as inline SVG.

The counts come from the queue's event stream (WatchEvents), replayed from an hour back when
the dashboard starts following the queue, then live; so the history goes back as far as the
broker keeps events (``--events-maxlen``, 10,000 by default). Drawing on the server keeps the
page free of chart scripts, and the Content-Security-Policy strict.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobbroker import Event, EventType

MINUTE_MS = 60_000


class MinuteCounts:
    """Completed jobs and failed attempts per minute, for the last ``minutes`` minutes."""

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self._counts: dict[int, list[int]] = {}

    def add(self, event: Event) -> None:
        if event.timestamp is None:
            return
        if event.type is EventType.COMPLETED:
            index = 0
        elif event.type is EventType.FAILED:
            index = 1
        else:
            return
        minute = int(event.timestamp.timestamp() * 1000) // MINUTE_MS
        bucket = self._counts.setdefault(minute, [0, 0])
        bucket[index] += 1
        if len(self._counts) > self.minutes + 5:
            for old in sorted(self._counts)[: len(self._counts) - self.minutes]:
                del self._counts[old]

    def window(self, now_ms: int) -> list[tuple[int, int, int]]:
        """(minute, completed, failed) for each of the last ``minutes`` minutes, oldest first."""
        last = now_ms // MINUTE_MS
        rows = []
        for minute in range(last - self.minutes + 1, last + 1):
            completed, failed = self._counts.get(minute, (0, 0))
            rows.append((minute, completed, failed))
        return rows


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    """The tooltip (an SVG <title>): the minute and its value."""


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    top: str
    """The value at the top of the scale."""
    total: str
    """A summary of the window."""
    bars: list[Bar]
    width: int = 600
    height: int = 100


def _label(minute: int) -> str:
    seconds = minute * 60
    return f"{(seconds // 3600) % 24:02d}:{(seconds // 60) % 60:02d} UTC"


def _bars(values: list[float], minutes: list[int], top: float, unit: str) -> list[Bar]:
    width, height = 600 / max(1, len(values)), 100.0
    bars = []
    for i, (value, minute) in enumerate(zip(values, minutes, strict=True)):
        h = 0.0 if top <= 0 else height * value / top
        bars.append(
            Bar(
                x=round(i * width, 2),
                y=round(height - h, 2),
                width=round(max(width - 1, 1), 2),
                height=round(h, 2),
                label=f"{_label(minute)}: {value:g}{unit}",
            )
        )
    return bars


def throughput_chart(rows: list[tuple[int, int, int]]) -> Chart:
    completed = [float(c) for _, c, _ in rows]
    minutes = [m for m, _, _ in rows]
    top = max(completed, default=0.0)
    return Chart(
        title="Completed per minute",
        top=f"{top:g}",
        total=f"{sum(completed):g} in {len(rows)} min",
        bars=_bars(completed, minutes, top, " completed"),
    )


def failure_chart(rows: list[tuple[int, int, int]]) -> Chart:
    rates = [100.0 * f / (c + f) if c + f else 0.0 for _, c, f in rows]
    minutes = [m for m, _, _ in rows]
    failed = sum(f for _, _, f in rows)
    ended = sum(c + f for _, c, f in rows)
    overall = 100.0 * failed / ended if ended else 0.0
    return Chart(
        title="Failed attempts, % per minute",
        top="100%",
        total=f"{overall:.1f}% of {ended} attempts",
        bars=_bars([round(r, 1) for r in rates], minutes, 100.0, "% failed"),
    )
