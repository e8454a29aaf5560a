"""Single Adds of one queue are not all serialised behind one slow script call: while a durable
add waits for a replica, the broker stores the queue's next Adds."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from helpers import add, private_broker
from jobbroker_broker.storage.keys import QueueKeys


async def wait_stored(r: redis.Redis, queue: str, count: int) -> None:
    """Until `count` jobs of the queue are waiting (far sooner than the durable wait below)."""
    async with asyncio.timeout(10):
        while r.zcard(QueueKeys(queue).key("waiting")) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_adds_go_on_while_one_durable_add_waits_for_a_replica(
    unconfirming_redis: Any, queue: str
) -> None:
    # A paused replica: each add is stored at once, then waits 30 s for it to confirm.
    settings = {"durability": "replicas", "durability_timeout": 30.0, "redis_timeout": 60.0}
    r = redis.Redis.from_url(unconfirming_redis.url)
    async with private_broker(unconfirming_redis.url, **settings) as running:
        first = asyncio.ensure_future(add(running, queue, {"n": 0}))
        await wait_stored(r, queue, 1)
        later = [asyncio.ensure_future(add(running, queue, {"n": n})) for n in (1,)]
        await wait_stored(r, queue, 2)
        assert not first.done()
        for call in [first, *later]:
            call.cancel()
        await asyncio.gather(first, *later, return_exceptions=True)


async def test_concurrent_single_adds_each_get_their_own_answer(broker: Any, queue: str) -> None:
    """Bursts of single Adds of one queue, some alone (run in the caller's task) and most
    gathered into batches: every Add is answered with its own job, each stored once, and a
    duplicate custom id is answered as a duplicate only for the later Adds."""
    r = redis.Redis.from_url(broker.broker.settings.redis_url)
    for burst in range(3):
        replies = await asyncio.gather(
            *(add(broker, queue, {"burst": burst, "n": n}) for n in range(150)),
            *(add(broker, queue, {"same": True}, job_id=f"same-{burst}") for _ in range(5)),
        )
        ids = [reply.job_id for reply in replies[:150]]
        assert len(set(ids)) == 150
        same = replies[150:]
        assert {reply.job_id for reply in same} == {f"same-{burst}"}
        assert sum(not reply.duplicate for reply in same) == 1
        assert r.zcard(QueueKeys(queue).key("waiting")) == 151 * (burst + 1)
    alone = await add(broker, queue, {"alone": True})
    assert not alone.duplicate
    assert r.zcard(QueueKeys(queue).key("waiting")) == 151 * 3 + 1
