"""A broker with its metrics endpoint on, over a Redis of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .harness import Running, start_broker, stop_broker


@pytest.fixture
async def broker(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a quiet Redis: the job gauges then cover only this test's queues."""
    running = await start_broker(private_redis.url)
    yield running
    await stop_broker(running)
