"""The test clock: move a queue's "now" forward (only a broker with Settings.test_clock reads
it; see lua/lib/test_clock.lua)."""

from __future__ import annotations

from typing import NamedTuple

from .base import Contract, Scalar


class AdvanceArgs(NamedTuple):
    ms: int
    """How far to move the queue's clock, in ms (not negative)."""
    group_count: int


class GroupItem(NamedTuple):
    group: str
    """A group with a rate-limit window under way (a ``gcount:<group>`` key)."""


ADVANCE_CLOCK: Contract[AdvanceArgs, int] = Contract(
    "advance_clock",
    ("prefix", "clock", "limiter"),
    AdvanceArgs,
    Scalar("offset", int),
    item=GroupItem,
    per="group",
)
