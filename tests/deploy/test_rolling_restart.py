"""A rolling restart of two brokers under load: each is stopped with SIGTERM and started again
while a producer adds jobs, a worker runs them (reporting progress) and subscribers follow
them, all through both brokers' addresses. No job and no progress event may be lost, and
every job runs once."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from jobbroker import AsyncClient, Event, EventType, JobContext, JobState, Worker

from .brokers import BrokerProcess

JOBS = 400
FOLLOWED = 40
STEPS = 3


@pytest.fixture
def brokers(redis_url: str, tmp_path: Path) -> Iterator[list[BrokerProcess]]:
    pair = [
        BrokerProcess(redis_url, tmp_path, "--shutdown-grace", "10", "--health-interval", "0.2")
        for _ in range(2)
    ]
    try:
        for broker in pair:
            broker.start()
        yield pair
    finally:
        for broker in pair:
            broker.kill()


def recorded_progress(r: redis.Redis, queue: str, job_ids: list[str]) -> dict[str, int]:
    """How many progress events the queue's event stream holds for each job."""
    counts = dict.fromkeys(job_ids, 0)
    for _, fields in r.xrange(f"jb:{{{queue}}}:events"):
        job_id = fields.get(b"j", b"").decode()
        if fields.get(b"e") == b"progress" and job_id in counts:
            counts[job_id] += 1
    return counts


async def test_a_rolling_restart_under_load_loses_no_job_and_no_progress_event(
    brokers: list[BrokerProcess], queue: str, r: redis.Redis
) -> None:
    addresses = [b.address for b in brokers]
    runs: collections.Counter[str] = collections.Counter()
    worker = Worker(queue, address=addresses, concurrency=20, wait=1, lease=10)

    @worker.handler("step")
    async def step(job: JobContext) -> str:
        runs[job.id] += 1
        for i in range(1, STEPS + 1):
            job.progress(i * 100 // STEPS)
            await asyncio.sleep(0.01)
        return "done"

    added: list[str] = []
    enough_added = asyncio.Event()
    seen: dict[str, list[float]] = {}
    async with AsyncClient(addresses, retries=20, retry_backoff_max=0.5) as client:

        async def produce() -> None:
            for i in range(JOBS):
                # A custom id makes Add idempotent, so the client may retry it through a restart.
                reply = await client.add(queue, "step", {"i": i}, job_id=f"{queue}-{i}")
                added.append(reply.job_id)
                if len(added) == FOLLOWED:
                    enough_added.set()
                await asyncio.sleep(0.01)

        async def follow(job_id: str) -> None:
            values = seen.setdefault(job_id, [])
            async for item in client.stream_progress(
                queue, job_id, after_event_id="0-0", timeout=120
            ):
                if isinstance(item, Event) and item.type == EventType.PROGRESS:
                    assert item.progress is not None
                    values.append(item.progress.percent or 0.0)

        producer = asyncio.create_task(produce())
        followers: list[asyncio.Task[None]] = []
        async with worker:
            await asyncio.wait_for(enough_added.wait(), 30)
            followers = [asyncio.create_task(follow(j)) for j in added[:FOLLOWED]]
            for broker in brokers:  # one at a time, as a deploy does
                await asyncio.sleep(0.5)
                code = await asyncio.to_thread(broker.terminate)
                assert code == 0, broker.log_text()
                await asyncio.to_thread(broker.start)
            await asyncio.wait_for(producer, 120)
            await asyncio.wait_for(asyncio.gather(*followers), 120)
            for job_id in added:
                assert await client.wait(queue, job_id, timeout=60) == "done"

        states = collections.Counter()
        for job_id in added:
            job = await client.get_status(queue, job_id)
            states[job.state] += 1
    assert len(added) == JOBS
    assert states == {JobState.COMPLETED: JOBS}
    assert all(runs[j] == 1 for j in added), {j: runs[j] for j in added if runs[j] != 1}
    # The SDK may merge progress reports made between two sends, so the truth is what the
    # broker recorded: every recorded progress event reached its subscriber, in order.
    recorded = recorded_progress(r, queue, added[:FOLLOWED])
    for job_id in added[:FOLLOWED]:
        assert len(seen[job_id]) == recorded[job_id] >= 1, (job_id, seen[job_id])
        assert seen[job_id] == sorted(seen[job_id])
        assert seen[job_id][-1] == 100
