"""Concurrent reads of one key share Redis calls: at most one call per key in flight.

A burst of thousands of ``StreamProgress`` calls on one job (a dashboard's viewers, a fan-out of
subscribers) would otherwise send one snapshot read each at once and exhaust the Redis
connection pool. A caller that finds no call of its key running reads at once, in its own task;
callers that arrive while one runs wait, and the next call, sent once it ends, answers all of
them. Every caller's answer thus comes from a read sent *after* the caller arrived: a stream
that subscribed to events before asking for its snapshot still misses nothing between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared answer's error as seen: every caller may have gone away."""
    if not future.cancelled():
        future.exception()


class Coalesced(Generic[K, V]):
    """``await coalesced(key)`` is ``await read(key)``, with concurrent calls of one key
    sharing reads."""

    def __init__(self, read: Callable[[K], Awaitable[V]]) -> None:
        self._read = read
        self._busy: set[K] = set()
        """Keys with a read in flight."""
        self._next: dict[K, asyncio.Future[V]] = {}
        """The answer of each key's next read, for the callers waiting for it."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, key: K) -> V:
        if key not in self._busy:
            self._busy.add(key)
            try:
                return await self._read(key)
            finally:
                self._hand_off(key)
        future = self._next.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._next[key] = future
        return await asyncio.shield(future)

    def _hand_off(self, key: K) -> None:
        """A read of ``key`` ended: start the next one if callers wait for it."""
        if key in self._next:
            task = asyncio.create_task(self._serve(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._busy.discard(key)

    async def _serve(self, key: K) -> None:
        try:
            while (future := self._next.pop(key, None)) is not None:
                try:
                    future.set_result(await self._read(key))
                except Exception as error:  # the read's own error, for every caller of it
                    future.set_exception(error)
                except BaseException:  # this task cancelled (the broker stopping)
                    future.cancel()
                    raise
        finally:
            self._busy.discard(key)
            left = self._next.pop(key, None)
            if left is not None:
                left.cancel()
