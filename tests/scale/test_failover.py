"""A Redis primary dies under load (Redis Cluster failover, Sentinel failover): the broker
recovers by itself, workers keep receiving jobs, and with ``durability replicas`` no
acknowledged add is lost. With durability off, what is lost is counted (docs/scaling.md)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from jobbroker import AsyncClient, JobState
from scale_support import (
    Producer,
    all_completed,
    broker,
    cluster,
    queue_name,
    recording_worker,
    sentinels,
    wait_for,
)
from topologies import SENTINEL_SERVICE, Cluster, SentinelSet, Server
from topologies import client as node_client

pytestmark = pytest.mark.scale
__all__ = ["cluster", "sentinels"]  # fixtures used by name

FULL = os.environ.get("JOBBROKER_SCALE_FULL") == "1"
MODES = ["replicas", "none"] if FULL else ["replicas"]
"""Durability off only counts what a failover loses (docs/scaling.md): the full scale run
(JOBBROKER_SCALE_FULL=1) does it, the default run tests the guarantee only."""

BEFORE, AFTER = 40, 40
"""Adds acknowledged before the primary dies, and after it (the broker recovered)."""


async def _under_load(
    url: str,
    queue: str,
    kill: Server,
    failed_over: Callable[[], bool],
    durability: str,
    primary_port: Callable[[], int],
    servers: list[Server],
    restart: Callable[[], None],
) -> tuple[int, int]:
    """Add and run jobs, SIGKILL the primary `kill` midway, wait for the failover, then
    `restart` the dead server (as a supervisor would: it comes back as a replica, without data,
    so that ``durability replicas`` has a replica again); returns (acknowledged adds, lost
    ones)."""
    ran: list[str] = []
    async with (
        broker(url, durability=durability, durability_timeout=2.0) as address,
        AsyncClient(address, retries=0) as client,
        recording_worker(queue, address, ran),
    ):
        producer = Producer(client, queue)
        producer.start()
        await producer.until(BEFORE)
        kill.kill()
        await wait_for(failed_over, "the failover")
        restart()
        await producer.until(BEFORE + AFTER)
        await producer.stop()
        acknowledged = list(producer.acknowledged)
        found = await all_completed(client, queue, acknowledged)
    lost = [job_id for job_id, state in found.items() if state is None]
    if lost and durability != "none":
        # Tell a lost job from a stale read: does the primary of now have it?
        has = node_client(primary_port()).exists(f"jb:{{{queue}}}:job:{lost[0]}")
        print(f"lost {lost[:5]}...; the primary of now has {lost[0]}: {bool(has)}")
        for server in servers:
            print(server.address, server.describe(f"jb:{{{queue}}}:job:{lost[0]}"))
    stuck = {i: s for i, s in found.items() if s not in (None, JobState.COMPLETED)}
    assert not stuck, f"jobs not completed after the failover: {stuck}"
    print(f"durability={durability}: {len(acknowledged)} adds acknowledged, {len(lost)} lost")
    return len(acknowledged), len(lost)


@pytest.mark.parametrize("durability", MODES)
async def test_cluster_primary_killed_under_load(
    cluster: Cluster, durability: str, record_property: pytest.RecordProperty
) -> None:
    queue = queue_name()
    key = f"jb:{{{queue}}}:waiting"
    primary = cluster.primary_of(key)
    _, lost = await _under_load(
        cluster.url,
        queue,
        primary,
        lambda: cluster.primary_of(key) != primary,
        durability,
        lambda: cluster.primary_of(key).port,
        cluster.servers,
        # A cluster node keeps its nodes.conf: it learns the failover's newer epoch for its
        # slots and rejoins as a replica of the node that took them over.
        primary.start,
    )
    record_property("lost", lost)
    if durability != "none":
        assert lost == 0


@pytest.mark.parametrize("durability", MODES)
async def test_sentinel_primary_killed_under_load(
    sentinels: SentinelSet, durability: str, record_property: pytest.RecordProperty
) -> None:
    port = sentinels.primary.port
    _, lost = await _under_load(
        sentinels.url,
        queue_name(),
        sentinels.primary,
        lambda: sentinels.master_port() != port,
        durability,
        sentinels.master_port,
        [sentinels.primary, sentinels.replica],
        # As a replica of the new primary, as Redis' docs ask of a primary without persistence
        # (docs/scaling.md). Started as an empty primary instead, it can meet a Sentinel that
        # has not yet heard of the failover and re-points the new primary at it: the new
        # primary then resyncs from the empty one and drops every job (seen once under load).
        lambda: sentinels.primary.start("--replicaof", "127.0.0.1", str(sentinels.master_port())),
    )
    record_property("lost", lost)
    if durability != "none":
        assert lost == 0


@pytest.mark.parametrize("durability", MODES)
async def test_sentinel_switchover_with_the_old_primary_alive(
    sentinels: SentinelSet, durability: str
) -> None:
    # SENTINEL FAILOVER demotes a live primary: connections to it now get READONLY (or read a
    # replica), and the broker must move every one of them, event readers included. Until
    # the Sentinels demote it, the old primary still takes writes that its resync will drop:
    # with durability none those adds are lost (counted), with replicas they are refused.
    queue = queue_name()
    ran: list[str] = []
    old = sentinels.master_port()
    async with (
        broker(sentinels.url, durability=durability) as address,
        AsyncClient(address) as client,
        recording_worker(queue, address, ran),
    ):
        first = (await client.add(queue, "work", {}, job_id="before")).job_id
        assert (await all_completed(client, queue, [first]))[first] == JobState.COMPLETED
        node_client(sentinels.sentinels[0].port).execute_command(
            "SENTINEL", "FAILOVER", SENTINEL_SERVICE
        )
        producer = Producer(client, queue, prefix="around")
        producer.start()
        await wait_for(lambda: sentinels.master_port() != old, "the switchover")
        await producer.until(40)
        await producer.stop()
        found = await all_completed(client, queue, producer.acknowledged)
    lost = [job_id for job_id, state in found.items() if state is None]
    print(f"switchover, durability={durability}: {len(found)} acknowledged, {len(lost)} lost")
    assert {s for s in found.values() if s is not None} == {JobState.COMPLETED}
    if durability != "none":
        assert lost == []
