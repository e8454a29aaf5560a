"""The broker's open streams: counted per caller, and ended from outside when their token is
revoked or the broker shuts down.

A stream is ended with a status: a server stream (StreamProgress, WatchEvents) is cancelled
where it waits for its next event, never halfway through sending one, so a client that resumes
from the last event id it received misses nothing. A worker stream drains instead: the message
being applied is finished and acknowledged, then the stream ends, and the worker resends
whatever was not acknowledged, to this broker or another.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BrokerError, LimitExceeded, ShuttingDown
from ..loops import wait_set


@dataclass(eq=False, slots=True)
class OpenStream:
    owner: str
    """Who holds it: a token id, or the peer address without authentication."""
    task: asyncio.Task[object] | None
    ending: BrokerError | None = None
    """Set once the stream is to end, with the status it ends with."""
    waiting: bool = False
    """True while the stream waits for its next item (a safe point to cancel it)."""
    drain: Callable[[], None] | None = None
    """How to end the stream gracefully, when cancelling it would lose work."""

    def end(self, error: BrokerError) -> None:
        if self.ending is not None:
            return
        self.ending = error
        if self.drain is not None:
            self.drain()
        elif self.waiting and self.task is not None:
            self.task.cancel()


_current: contextvars.ContextVar[OpenStream | None] = contextvars.ContextVar(
    "jobbroker_stream", default=None
)


def current() -> OpenStream | None:
    """The stream the running handler serves."""
    return _current.get()


class OpenStreams:
    def __init__(self, per_owner: int) -> None:
        self.per_owner = per_owner
        self.closing = False
        self._open: set[OpenStream] = set()
        self._counts: Counter[str] = Counter()
        self._closing_callbacks: set[Callable[[], None]] = set()
        self._all_closed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, owner: str) -> OpenStream:
        if self.closing:
            raise ShuttingDown("the broker is shutting down; reconnect")
        if self._counts[owner] >= self.per_owner:
            raise LimitExceeded(
                "max_streams_per_token",
                f"{self._counts[owner]} streams are open for this caller, the most allowed",
            )
        stream = OpenStream(owner, asyncio.current_task())
        self._open.add(stream)
        self._counts[owner] += 1
        _current.set(stream)
        return stream

    def on_closing(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the broker starts shutting down (long polls end early);
        returns the function that forgets it."""
        self._closing_callbacks.add(callback)
        return lambda: self._closing_callbacks.discard(callback)

    def close(self, stream: OpenStream) -> None:
        if stream in self._open:
            self._open.discard(stream)
            self._counts[stream.owner] -= 1
            if self._counts[stream.owner] <= 0:
                del self._counts[stream.owner]
            if self.closing and not self._open:
                self._all_closed.set()

    def end(self, owners: Callable[[str], bool], error: BrokerError) -> int:
        """End the streams whose owner ``owners`` accepts; returns how many."""
        ended = [s for s in self._open if owners(s.owner)]
        for stream in ended:
            stream.end(error)
        return len(ended)

    def shut_down(self) -> int:
        """Refuse new streams and end every open one with UNAVAILABLE."""
        self.closing = True
        if not self._open:
            self._all_closed.set()
        for callback in list(self._closing_callbacks):
            callback()
        return self.end(
            lambda _: True,
            ShuttingDown("the broker is shutting down; reconnect"),
        )

    async def closed(self, within: float) -> bool:
        """Wait until every stream has ended (after ``shut_down``), at most ``within`` seconds;
        False if some are still open."""
        return await wait_set(self._all_closed, within)
