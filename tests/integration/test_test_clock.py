"""A broker without Settings.test_clock (every deployed one) has no clock to move: its scripts
never read a queue's clock key, whoever writes it."""

from __future__ import annotations

import pytest
import redis
from conftest import Running
from helpers import add_id, status
from jobbroker.v1 import job_pb2
from jobbroker_broker.server.test_clock import QueueClocks
from jobbroker_broker.storage.keys import QueueKeys

HOUR_MS = 3_600_000


async def test_a_production_broker_ignores_a_clock_key_written_into_redis(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    assert broker.broker.test_clock is None
    job_id = await add_id(broker, queue, delay_ms=HOUR_MS)
    r.set(QueueKeys(queue).key("clock"), 2 * HOUR_MS)

    await broker.broker.maintenance.run_now([queue])

    assert (await status(broker, queue, job_id)).state == job_pb2.JOB_STATE_DELAYED
    (now,) = await broker.broker.store.now_ms([queue])
    assert now < (await status(broker, queue, job_id)).run_at_ms


async def test_no_queue_clocks_on_a_production_broker(broker: Running) -> None:
    parts = broker.broker
    with pytest.raises(RuntimeError, match="no test clock"):
        QueueClocks(parts.store, parts.maintenance, parts.schedule_loop)
