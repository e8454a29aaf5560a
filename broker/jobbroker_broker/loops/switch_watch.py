"""Hear a Sentinel failover as it happens, on every Sentinel's own channels:

- ``+selected-slave`` / ``+failover-state-send-slaveof-noone`` (from the Sentinel leading the
  failover, just before it promotes a replica): adds are refused from now on
  (``RedisConnection.fence``), since the old primary stays writable in a switchover and what it
  takes from the promotion on is lost, while every Sentinel still names it;
- ``+switch-master <service> <old-ip> <old-port> <new-ip> <new-port>`` (every Sentinel, once it
  names the new primary): the connections move at once (``RedisConnection.switch``) instead
  of at the next health check, and adds go on;
- ``-failover-abort-slave-timeout``, ``+failover-end-for-timeout``: the fence is lifted.

The health loop's ``follow()`` stays as the fallback for a missed message (a Sentinel down, a
subscription reconnecting), and the fence lapses by itself (docs/scaling.md).
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

SWITCH = "+switch-master"
PROMOTING = ("+selected-slave", "+failover-state-send-slaveof-noone")
GIVEN_UP = ("-failover-abort-slave-timeout", "+failover-end-for-timeout")
POLL_S = 1.0
"""Longest wait of one read for a message (then it reads again)."""
RETRY_S = (0.1, 2.0)
"""First and longest pause before subscribing again to a Sentinel that did not answer."""


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


def parse_switch(data: bytes | str, service: str) -> tuple[str, int] | None:
    """The new primary a ``+switch-master`` message names, if it is about ``service``."""
    parts = _text(data).split()
    if len(parts) != 5 or parts[0] != service or not parts[4].isdigit():
        return None
    return parts[3], int(parts[4])


def parse_instance(data: bytes | str, service: str) -> tuple[str, int] | None:
    """The address of the instance an event names (``<type> <name> <ip> <port> [@ <master>
    <ip> <port>]``), if it is about ``service``."""
    parts = _text(data).split()
    if len(parts) < 4 or not parts[3].isdigit():
        return None
    about = parts[5] if len(parts) >= 8 and parts[4] == "@" else parts[1]
    if about != service:
        return None
    return parts[2], int(parts[3])


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

    async def close(self) -> None:
        """Stop at once: a listener only reads, so cancelling it mid-read loses nothing (a
        read that redis-py turns into a connection error ends the loop all the same)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, sentinel: Redis) -> None:
        pause = RETRY_S[0]
        warned = False
        kwargs: dict[str, object] = sentinel.connection_pool.connection_kwargs
        while not self._stopping:
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe(SWITCH, *PROMOTING, *GIVEN_UP)
                pause = RETRY_S[0]
                while not self._stopping:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is not None:
                        await self._heard(message["channel"], message["data"], sentinel)
            except (redis.exceptions.RedisError, OSError) as exc:
                # Said once per Sentinel: one that is down stays quiet while it is retried.
                log.log(
                    logging.DEBUG if warned else logging.WARNING,
                    "no subscription to the failover events of Sentinel %s:%s (%s); retrying. "
                    "Without any, failovers are followed by the health check only",
                    kwargs.get("host"),
                    kwargs.get("port"),
                    exc,
                )
                warned = True
            finally:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()
            if not self._stopping:
                await wait_set(self._wake, pause)
                pause = min(pause * 2, RETRY_S[1])

    async def _heard(self, channel: bytes | str, data: bytes | str, sentinel: Redis) -> None:
        service = self.connection.target.service
        name = _text(channel)
        if name == SWITCH:
            primary = parse_switch(data, service)
            if primary is not None:
                self.heard += 1
                await self.connection.switch(primary, sentinel)
            return
        instance = parse_instance(data, service)
        if instance is None:
            return
        if name in PROMOTING:
            await self.connection.fence(instance)
        elif name in GIVEN_UP:
            self.connection.unfence()
