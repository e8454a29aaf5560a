"""Several broker replicas on one Redis serve the same queues: a worker on one replica and a
subscriber on another see the same job (progress crosses replicas, so does Cancel); clients
and workers given every replica's address balance over them and move on when one dies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from jobbroker import (
    AsyncClient,
    Event,
    EventType,
    JobCancelled,
    JobContext,
    JobState,
    Worker,
)
from scale_support import (
    BrokerProcess,
    Producer,
    all_completed,
    broker,
    queue_name,
    recording_worker,
)

pytestmark = pytest.mark.scale


@contextlib.asynccontextmanager
async def replicas(redis_url: str, count: int) -> AsyncIterator[list[str]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(broker(redis_url)) for _ in range(count)]


@pytest.mark.parametrize("count", [2, 3])
async def test_progress_on_one_replica_reaches_a_subscriber_on_another(
    redis_url: str, queue: str, count: int
) -> None:
    seen_progress = asyncio.Event()
    async with replicas(redis_url, count) as addresses:
        worker = Worker(queue, address=addresses[0], lease=5, wait=1)

        @worker.handler()
        async def report(ctx: JobContext) -> str:
            ctx.progress(42, value={"step": "one"})
            await seen_progress.wait()
            return "done"

        async with AsyncClient(addresses[-1]) as client:
            added = await client.add(queue, "report", {})
            events: list[Event] = []
            stream = client.stream_progress(queue, added.job_id)
            async with asyncio.timeout(20):
                await anext(stream)  # the snapshot: the subscription is live, start the worker
                async with worker:
                    async for item in stream:
                        assert isinstance(item, Event)
                        events.append(item)
                        if item.type == EventType.PROGRESS:
                            seen_progress.set()
    progress = [e for e in events if e.type == EventType.PROGRESS]
    assert progress
    assert progress[0].progress is not None
    assert progress[0].progress.percent == 42
    assert events[-1].type == EventType.COMPLETED


@pytest.mark.parametrize("count", [2, 3])
async def test_cancel_on_one_replica_reaches_the_worker_on_another(
    redis_url: str, queue: str, count: int
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    async with replicas(redis_url, count) as addresses:
        worker = Worker(queue, address=addresses[0], lease=5, wait=1)

        @worker.handler()
        async def wait_forever(ctx: JobContext) -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async with worker, AsyncClient(addresses[-1]) as client:
            added = await client.add(queue, "long", {})
            async with asyncio.timeout(20):
                await started.wait()
                await client.cancel(queue, added.job_id)
                await cancelled.wait()
                with pytest.raises(JobCancelled):
                    await client.wait(queue, added.job_id)


async def test_clients_and_workers_balance_over_every_replica(redis_url: str, queue: str) -> None:
    async with replicas(redis_url, 3) as addresses:
        everyone = ",".join(addresses)
        ran: list[str] = []
        async with (
            AsyncClient(everyone) as client,
            recording_worker(queue, [*addresses], ran),
        ):
            ids = [(await client.add(queue, "work", {}, job_id=f"j{i}")).job_id for i in range(30)]
            found = await all_completed(client, queue, ids)
    assert set(found.values()) == {JobState.COMPLETED}


def terminal_events(redis_url: str, queue: str) -> dict[str, int]:
    """How many terminal events (completed, failed, cancelled) each job of `queue` has."""
    from topologies import sync_client

    client = sync_client(redis_url)
    counts: dict[str, int] = {}
    try:
        for _, fields in client.xrange(f"jb:{{{queue}}}:events"):
            if fields.get(b"e") in (b"completed", b"failed", b"cancelled"):
                job = fields[b"j"].decode()
                counts[job] = counts.get(job, 0) + 1
    finally:
        client.close()
    return counts


async def test_a_replica_killed_under_load(redis_url: str, tmp_path: Path) -> None:
    queue = queue_name()
    children = [BrokerProcess(redis_url, tmp_path / f"broker-{i}.log") for i in range(2)]
    try:
        everyone = ",".join(child.address for child in children)
        ran: list[str] = []
        async with (
            AsyncClient(everyone, timeout=5) as client,
            recording_worker(queue, everyone, ran, delay=0.01),
        ):
            producer = Producer(client, queue)
            producer.start()
            await producer.until(60)
            children[0].kill()
            await producer.until(160)
            await producer.stop()
            acknowledged = list(producer.acknowledged)
            found = await all_completed(client, queue, acknowledged)
        assert {found[i] for i in acknowledged} == {JobState.COMPLETED}
        ends = terminal_events(redis_url, queue)
        assert {ends.get(i, 0) for i in acknowledged} == {1}, "every job ends exactly once"
    finally:
        for child in children:
            child.kill()
        with contextlib.suppress(redis.RedisError):
            from topologies import sync_client

            client = sync_client(redis_url)
            keys = list(client.scan_iter(match=f"jb:{{{queue}}}*"))
            if keys:
                client.delete(*keys)
            client.srem("jb:queues", queue)
