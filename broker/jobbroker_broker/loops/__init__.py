"""A background loop a broker starts and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib


class Loop:
    """Runs ``_run`` as a task. ``close()`` sets ``_stopping`` and wakes the loop, then waits
    for the pass under way to end: a loop is never cancelled mid-way through a Redis call
    (redis-py may turn such a cancellation into a connection error the loop would survive).
    Subclasses check ``_stopping`` between passes and wait on ``_wake``."""

    name = "loop"
    stop_timeout = 5.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task


async def wait_set(event: asyncio.Event, within: float) -> bool:
    """Wait for ``event`` at most ``within`` seconds; whether it was set."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True
