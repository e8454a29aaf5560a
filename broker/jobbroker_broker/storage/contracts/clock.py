"""The test clock: move a queue's "now" forward (only a broker with Settings.test_clock reads
it; see lua/lib/test_clock.lua)."""

from __future__ import annotations

from typing import NamedTuple

from .base import Contract, Scalar


class AdvanceArgs(NamedTuple):
    ms: int
    """How far to move the queue's clock, in ms (not negative)."""


ADVANCE_CLOCK: Contract[AdvanceArgs, int] = Contract(
    "advance_clock", ("prefix", "clock", "limiter", "groups"), AdvanceArgs, Scalar("offset", int)
)
