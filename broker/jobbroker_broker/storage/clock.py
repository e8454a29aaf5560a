"""Move a queue's test clock (Settings.test_clock; lua/advance_clock.lua)."""

from __future__ import annotations

import re

from .contracts.clock import ADVANCE_CLOCK, AdvanceArgs, GroupItem
from .store import Store, redis_errors

_GLOB = re.compile(r"([*?\[\]\\])")


async def advance_clock(store: Store, queue: str, ms: int) -> int:
    """Move `queue`'s time forward by `ms`, shortening its rate-limit windows under way by as
    much; returns its clock offset. Finds the group counters with SCAN: for tests only."""
    counter_prefix = store.keys(queue).prefix + "gcount:"
    groups: list[GroupItem] = []
    with redis_errors():
        async for key in store.redis.scan_iter(match=_GLOB.sub(r"\\\1", counter_prefix) + "*"):
            name = key.decode() if isinstance(key, bytes) else str(key)
            groups.append(GroupItem(name[len(counter_prefix) :]))
    return await store.run(ADVANCE_CLOCK, queue, AdvanceArgs(ms, len(groups)), groups)
