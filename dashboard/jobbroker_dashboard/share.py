"""Shared: broker answers shared for a moment among the pages that need the same one.

Fifty open pages of one queue, told of the same event, each ask for the queue's counts; the
first asks the broker, the others await that same answer. So the broker's load follows the
number of queues and views open, not the number of pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_PRUNE_AT = 1_000
"""Entries kept before expired ones are dropped."""


class Shared:
    """Answers by key, reused for ``ttl`` seconds once they arrive (and while in flight)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The answer for ``key``: a fresh or in-flight one, else ``make()``'s."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = self._entries.get(key)
        if entry is not None:
            started, future = entry
            fresh = not future.done() or (
                now - started < self.ttl and not future.cancelled() and future.exception() is None
            )
            if fresh:
                # shield: one page going away must not cancel the call the others await.
                result: T = await asyncio.shield(future)
                return result
        if len(self._entries) >= _PRUNE_AT:
            self._prune(now)
        future = asyncio.ensure_future(make())
        # An answer nobody awaits any more (every page closed) must not warn "never retrieved".
        future.add_done_callback(_retrieve)
        self._entries[key] = (now, future)
        return await asyncio.shield(future)

    def forget(self, key: Hashable) -> None:
        """Drop the answer for ``key`` (after a write changed it)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def _prune(self, now: float) -> None:
        for key, (started, future) in list(self._entries.items()):
            if future.done() and now - started >= self.ttl:
                del self._entries[key]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
