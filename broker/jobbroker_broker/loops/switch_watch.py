"""Hear a Sentinel failover as it is announced: every Sentinel publishes ``+switch-master
<service> <old-ip> <old-port> <new-ip> <new-port>`` once it names the new primary. On that
message for our service the connections move at once (``RedisConnection.switch``) instead of
at the next health check, which shortens the time a switchover's old primary, still writable
until the Sentinels demote it seconds later, takes writes its resync will drop
(docs/scaling.md). The health loop's ``follow()`` stays as the fallback for a missed message
(a Sentinel down, a subscription reconnecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions
from redis.asyncio import Redis

from ..storage.connection import RedisConnection
from . import Loop, wait_set

log = logging.getLogger(__name__)

CHANNEL = "+switch-master"
POLL_S = 0.5
"""Longest wait for one message: how often a listener looks at whether the broker stops."""
RETRY_S = (0.1, 2.0)
"""First and longest pause before subscribing again to a Sentinel that did not answer."""


def parse_switch(data: bytes | str, service: str) -> tuple[str, int] | None:
    """The new primary a ``+switch-master`` message names, if it is about ``service``."""
    text = data.decode() if isinstance(data, bytes) else data
    parts = text.split()
    if len(parts) != 5 or parts[0] != service or not parts[4].isdigit():
        return None
    return parts[3], int(parts[4])


class SwitchWatch(Loop):
    """One subscription to ``+switch-master`` per Sentinel (any of them may be down)."""

    name = "switch-watch"

    def __init__(self, connection: RedisConnection) -> None:
        super().__init__()
        self.connection = connection
        self.heard = 0
        """``+switch-master`` messages for our service received so far."""

    async def _run(self) -> None:
        await asyncio.gather(*(self._listen(s) for s in self.connection.sentinels))

    async def _listen(self, sentinel: Redis) -> None:
        pause = RETRY_S[0]
        while not self._stopping:
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                pause = RETRY_S[0]
                while not self._stopping:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is not None:
                        await self._announced(message["data"], sentinel)
            except (redis.exceptions.RedisError, OSError) as exc:
                log.debug("no +switch-master subscription on %s: %s", sentinel, exc)
            finally:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()
            if not self._stopping:
                await wait_set(self._wake, pause)
                pause = min(pause * 2, RETRY_S[1])

    async def _announced(self, data: bytes | str, sentinel: Redis) -> None:
        primary = parse_switch(data, self.connection.target.service)
        if primary is None:
            return
        self.heard += 1
        await self.connection.switch(primary, sentinel)
