"""A controllable clock for tests against the in-process broker: move its time forward through
delays, backoffs, leases, lifespans, rate-limit windows and schedules without sleeping.

The clock acts on the broker itself, not on a mock: the test broker runs with its test clock
on, where every script reads "now" as Redis' time plus the queue's clock offset, and the
schedule loop reads the same. Each queue has its own clock, so tests sharing a broker (and
running in parallel) move only the time of their own queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol


class ClockControl(Protocol):
    """What the test broker offers (``jobbroker_broker.testing.BrokerClock``)."""

    def advance(self, queues: Sequence[str], ms: int) -> None: ...

    def now_ms(self, queue: str) -> int: ...


class TestClock:
    """The time of some queues of the test broker (the ``jobbroker_clock`` fixture: the test's
    ``jobbroker_queue``, and any queue given to :meth:`watch`)::

        def test_reminder_goes_out_a_day_later(jobbroker_client, jobbroker_queue,
                                               jobbroker_clock, run_worker):
            jobbroker_client.add(jobbroker_queue, "remind", {}, JobOptions(delay=86_400))
            jobbroker_clock.advance(timedelta(days=1))  # the job is waiting now
            run_worker(worker, until="idle")
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, control: ClockControl, queues: Sequence[str]) -> None:
        if not queues:
            raise ValueError("a test clock needs at least one queue")
        self._control = control
        self.queues: list[str] = list(dict.fromkeys(queues))
        """The queues whose time this clock moves."""
        self.advanced = timedelta(0)
        """How far the clock has moved their time since the test began."""

    def advance(self, by: float | timedelta) -> datetime:
        """Move the queues' time forward by `by` (seconds, or a timedelta) and return the new
        :meth:`now`. It returns once the broker has done what fell due: delayed jobs and
        retries after a backoff are waiting, leases that ran out are reaped (the job stalled,
        back to waiting or failed), jobs past their lifespan failed, rate-limit windows ended,
        and schedules due by then added their jobs (once each: occurrences skipped over are
        not caught up, as after a broker outage)."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        ms = step // timedelta(milliseconds=1)
        if ms < 0:
            raise ValueError(f"time only moves forward (got {step})")
        self._control.advance(self.queues, ms)
        self.advanced += timedelta(milliseconds=ms)
        return self.now()

    def advance_to(self, moment: datetime) -> datetime:
        """Move time forward to `moment` (an aware datetime), for example a cron schedule's
        next run; a moment already past is an error."""
        if moment.tzinfo is None:
            raise ValueError("advance_to needs an aware datetime (with a tzinfo)")
        step = moment - self.now()
        if step < timedelta(0):
            raise ValueError(f"{moment.isoformat()} is in the past of the test clock")
        return self.advance(step)

    def now(self) -> datetime:
        """The queues' "now" (the first queue's), in UTC, as the broker sees it."""
        return datetime.fromtimestamp(self._control.now_ms(self.queues[0]) / 1000, UTC)

    def watch(self, *queues: str) -> None:
        """Move the time of `queues` too from now on; they catch up with how far this clock
        has moved already (give queues the test has not used yet)."""
        added = [queue for queue in queues if queue not in self.queues]
        if added and self.advanced:
            self._control.advance(added, self.advanced // timedelta(milliseconds=1))
        self.queues.extend(added)
