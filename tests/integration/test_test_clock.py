"""A broker without Settings.test_clock (every deployed one) has no clock to move: its scripts
never read a queue's clock key, whoever writes it. One with it moves queues' time on the
session's Redis (a cluster too: JOBBROKER_TEST_REDIS=cluster)."""

from __future__ import annotations

import pytest
import redis
from conftest import Running
from helpers import add_id, private_broker, redis_now_ms, status
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


async def test_a_test_clock_broker_moves_a_queue_and_its_windows(
    redis_url: str, queue: str, r: redis.Redis
) -> None:
    counter = QueueKeys(queue).prefix + "gcount:tenant"
    r.set(counter, 1, px=HOUR_MS)  # a group's rate-limit window under way
    async with private_broker(redis_url, test_clock=True) as running:
        clocks = running.broker.test_clock
        assert clocks is not None
        job_id = await add_id(running, queue, delay_ms=HOUR_MS)

        await clocks.advance([queue], HOUR_MS)

        assert (await status(running, queue, job_id)).state == job_pb2.JOB_STATE_WAITING
        real = redis_now_ms(r)
        assert await clocks.now_ms(queue) >= real + HOUR_MS
        assert r.exists(counter) == 0, "the window ended with the hour"
