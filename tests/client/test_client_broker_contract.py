"""Broker behaviour the client relies on, checked where the client tests found it wanting.
Each was a broker bug the client tests found; they stay as regression tests."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from jobbroker_broker.server.app import Broker

from .conftest import SETTINGS
from .support import Api


async def test_a_broker_stopped_right_after_start_stops(redis_url: str) -> None:
    # Restarting a broker on the same port (what the resumption tests do) needs stop() to
    # return. It once hung when the health loop's cancellation landed during its Redis PING
    # (fixed in 0001d70); the client tests found it.
    broker = Broker(replace(SETTINGS, redis_url=redis_url))
    await broker.start()
    await asyncio.wait_for(broker.stop(0.2), 3)


async def test_get_status_reports_the_delay_option(client: Api, queue: str) -> None:
    added = await client.add(queue, "later", delay=60)

    job = await client.get_status(queue, added.job_id)
    assert job.proto is not None
    assert job.proto.options.delay_ms == 60_000
