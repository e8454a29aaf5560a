"""Waiting for jobs: a long-polling Lease call, and a request for jobs on a worker stream that
found none (``StreamLease.wait_ms``). Both lease, wait for an event that may have made a job
ready for them, and lease again, until they got jobs or their time ran out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ...storage.store import CONCURRENCY_FULL, PAUSED
from .common import Parts

T = TypeVar("T")

# Events after which a job may be waiting, so a long poll tries again.
_READY_EVENTS = frozenset({b"added", b"waiting", b"released", b"stalled"})
# While the queue is paused only a resume helps; while it is full only a finished job.
_WAKERS = {
    PAUSED: frozenset({b"resumed"}),
    CONCURRENCY_FULL: frozenset(
        {b"completed", b"failed", b"cancelled", b"released", b"stalled", b"resumed"}
    ),
}
# What an add on this replica looks like to a long poll (EventHub.added).
_ADDED = {b"e": b"added"}
POLL_FALLBACK_S = 1.0
"""A long poll tries again at least this often, in case an event was missed (a reader
reconnecting)."""

Leased = tuple[T, dict[str, int]]
"""What one try leased (empty or not), and per queue what held its leasing back (0 nothing,
PAUSED, CONCURRENCY_FULL, or N > 0: the rate limit, for N more ms)."""


async def long_poll(
    parts: Parts,
    queues: Sequence[str],
    wait_s: float,
    held: dict[str, int],
    lease: Callable[[], Awaitable[Leased[T]]],
    got: Callable[[T], bool],
    ready: asyncio.Event | None = None,
    ended: Callable[[], bool] = lambda: False,
) -> T | None:
    """After a try that leased nothing (``held`` its reasons), wait up to ``wait_s`` seconds
    for an event that may have made a job ready, and ``lease()`` again, until a try ``got``
    something (returned) or the time ran out (its last try returned). None when the broker
    started shutting down or the caller ``ended`` the wait (setting ``ready``, its wake-up
    event, to be heard at once): a long poll then ends empty."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    ready = ready or asyncio.Event()

    def waker(queue: str) -> Callable[[bytes, dict[bytes, bytes]], None]:
        def on_event(_: bytes, fields: dict[bytes, bytes]) -> None:
            # What can end the wait depends on what held this queue's leasing back.
            why = held.get(queue, 0)
            wakers = _WAKERS.get(why, _READY_EVENTS) if why <= 0 else ()
            if fields.get(b"e") in wakers:
                ready.set()

        return on_event

    def adder(on_event: Callable[[bytes, dict[bytes, bytes]], None]) -> Callable[[], None]:
        return lambda: on_event(b"", _ADDED)

    stops = [parts.streams.on_closing(ready.set)]
    try:
        for queue in queues:
            on_event = waker(queue)
            stops.append(await parts.hub.subscribe(queue, on_event))
            stops.append(parts.hub.on_added(queue, adder(on_event)))
        while True:
            ready.clear()
            if parts.streams.closing or ended():
                return None
            leased, now_held = await lease()
            held.clear()
            held.update(now_held)
            remaining = deadline - loop.time()
            if got(leased) or remaining <= 0:
                return leased
            # Rate-limited: sleep until the first window ends (the fallback bounds it).
            limited = [why / 1000 for why in held.values() if why > 0]
            pause = min(remaining, POLL_FALLBACK_S, *limited)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await ready.wait()
    finally:
        for stop in stops:
            stop()
