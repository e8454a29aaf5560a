"""The broker on a Redis Cluster: the lifecycle suite passes, queues land on different shards,
cross-queue views (ListQueues) see them all, events of queues on different shards reach their
subscribers, and scripts missing on a node are loaded there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jobbroker import AsyncClient, EventType, JobState
from scale_support import (
    all_completed,
    broker,
    module_cluster,
    queue_name,
    recording_worker,
)
from topologies import Cluster
from topologies import client as node_client

pytestmark = pytest.mark.scale
__all__ = ["module_cluster"]  # fixture used by name

ROOT = Path(__file__).parents[2]


def test_the_lifecycle_suite_passes_on_a_cluster(module_cluster: Cluster) -> None:
    # The integration lifecycle tests, unchanged, with the cluster as the session's Redis.
    # (JOBBROKER_TEST_REDIS=cluster ./scripts/test tests/integration runs them all so.)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/integration/test_lifecycle.py",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "JOBBROKER_TEST_REDIS"},
            "JOBBROKER_TEST_REDIS_URL": module_cluster.url,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


async def test_queues_spread_over_shards_and_are_all_listed(module_cluster: Cluster) -> None:
    # Names are random: draw until every shard holds some (12 at least), so the test never
    # depends on luck (12 random names miss a shard about 2 % of the time).
    queues: list[str] = []
    while (
        len(queues) < 12
        or len({module_cluster.primary_of(f"jb:{{{q}}}:waiting").port for q in queues}) < 3
    ):
        queues.append(queue_name())
    async with broker(module_cluster.url) as address, AsyncClient(address) as client:
        for queue in queues:
            await client.add(queue, "work", {})
        listed = {info.name: info for info in await client.queues()}
    shards = {module_cluster.primary_of(f"jb:{{{q}}}:waiting").port for q in queues}
    assert len(shards) == 3
    for queue in queues:
        assert listed[queue].counts.waiting == 1


async def test_events_of_queues_on_every_shard_reach_their_subscribers(
    module_cluster: Cluster,
) -> None:
    # One queue per shard: the replica reads three streams on three nodes at once.
    by_shard: dict[int, str] = {}
    while len(by_shard) < 3:
        queue = queue_name()
        by_shard.setdefault(module_cluster.primary_of(f"jb:{{{queue}}}:waiting").port, queue)
    queues = list(by_shard.values())
    ran: list[str] = []
    async with broker(module_cluster.url) as address, AsyncClient(address) as client:

        async def completed_events(queue: str) -> int:
            async for event in client.watch_events(queue):
                if event.type == EventType.COMPLETED:
                    return 1
            return 0

        watchers = [asyncio.create_task(completed_events(q)) for q in queues]
        await asyncio.sleep(0.2)  # let the watchers subscribe
        async with recording_worker(queues, address, ran):
            ids = {q: (await client.add(q, "work", {})).job_id for q in queues}
            async with asyncio.timeout(20):
                done = await asyncio.gather(*watchers)
            for queue, job_id in ids.items():
                found = await all_completed(client, queue, [job_id])
                assert found[job_id] == JobState.COMPLETED
    assert done == [1, 1, 1]


async def test_scripts_missing_on_a_node_are_loaded_again(module_cluster: Cluster) -> None:
    queue = queue_name()
    async with broker(module_cluster.url) as address, AsyncClient(address) as client:
        await client.add(queue, "work", {})
        for server in module_cluster.primaries():
            node_client(server.port).script_flush()
        added = await client.add(queue, "work", {})
        assert added.state == JobState.WAITING
