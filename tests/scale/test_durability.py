"""Durable adds when replicas do not confirm (issue 19): a wait that times out says the job was
stored, a primary without a replica in sync refuses adds before writing them, and a retry with
the same job id finds a stored job (``duplicate``). Also: the broker moves to a new Sentinel
primary when a Sentinel announces it (``+switch-master``), not at its next health check."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from jobbroker import Added, AsyncClient
from jobbroker.errors import JobNotFound, Unavailable
from jobbroker_broker.server.app import Broker
from ports import free_ports
from scale_support import FAST, RECOVERY_S, broker, queue_name, sentinels, wait_for
from topologies import SENTINEL_SERVICE, SentinelSet, Server, replicated, start_replicated
from topologies import client as node_client

pytestmark = pytest.mark.scale
__all__ = ["sentinels"]  # a fixture used by name

WAIT_S = 2.0
"""--durability-timeout: what a stopped replica makes an add wait, and long enough for a live
one on a loaded machine."""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """A primary and one replica of it, without Sentinels."""
    primary, replicas = replicated(tmp_path / "pair", free_ports(2))
    try:
        start_replicated(primary, replicas)
        yield primary, replicas[0]
    finally:
        for server in (primary, *replicas):
            if server.process is not None and server.running:
                os.kill(server.process.pid, signal.SIGCONT)
            server.kill()


def _url(server: Server) -> str:
    return f"redis://{server.address}/0"


async def test_an_add_the_replica_does_not_confirm_says_it_was_stored(
    pair: tuple[Server, Server],
) -> None:
    primary, replica = pair
    queue = queue_name()
    async with (
        broker(_url(primary), durability="replicas", durability_timeout=WAIT_S) as address,
        AsyncClient(address, retries=0) as client,
    ):
        assert not (await client.add(queue, "work", {}, job_id="confirmed")).duplicate
        assert replica.process is not None
        # Stopped, the replica stays connected (the primary sees no error) but acknowledges
        # nothing: the WAIT runs out.
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(Unavailable, match="stored on the Redis primary") as raised:
                await client.add(queue, "work", {}, job_id="unconfirmed")
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        assert raised.value.reason == "DURABILITY_TIMEOUT"
        assert raised.value.metadata["stored"] == "true"
        assert (await client.get_status(queue, "unconfirmed")).name == "work"
        # What a client's retries get once the replica confirms again: the job, once, as a
        # duplicate.
        again, _ = await _until_added(client, queue, "unconfirmed")
        assert again.duplicate


async def test_without_a_replica_in_sync_adds_are_refused_before_they_are_written(
    pair: tuple[Server, Server],
) -> None:
    primary, replica = pair
    queue = queue_name()
    async with (
        broker(_url(primary), durability="replicas", durability_timeout=WAIT_S) as address,
        AsyncClient(address, retries=0) as client,
    ):
        await client.add(queue, "work", {}, job_id="before")
        replica.kill()
        await wait_for(
            lambda: node_client(primary.port).info("replication")["connected_slaves"] == 0,
            "the primary to see its replica gone",
        )
        # The broker last saw one replica: the next add waits (at most the timeout), and the
        # count is read again.
        with pytest.raises(Unavailable) as first:
            await client.add(queue, "work", {}, job_id="waited")
        assert first.value.metadata["stored"] == "true"
        with pytest.raises(Unavailable, match="not stored") as refused:
            await client.add(queue, "work", {}, job_id="refused")
        assert refused.value.reason == "DURABILITY_TIMEOUT"
        assert refused.value.metadata == {
            "queue": queue,
            "stored": "false",
            "replicas_online": "0",
        }
        with pytest.raises(JobNotFound):
            await client.get_status(queue, "refused")
        replica.start("--replicaof", "127.0.0.1", str(primary.port))
        await wait_for(
            lambda: node_client(replica.port).info("replication")["master_link_status"] == "up",
            "the replica in sync again",
        )

        # Stored by this add, or by an attempt of it that timed out, never by the refused one.
        added, stored_before = await _until_added(client, queue, "refused")
        assert added.duplicate == stored_before


async def _until_added(client: AsyncClient, queue: str, job_id: str) -> tuple[Added, bool]:
    """Add `job_id` until an add is acknowledged, as a client retrying UNAVAILABLE does;
    returns the add's answer and whether a failed attempt before it said the job was stored
    (a wait that timed out while the replica caught up)."""
    stored = False
    async with asyncio.timeout(RECOVERY_S):
        while True:
            try:
                return await client.add(queue, "work", {}, job_id=job_id), stored
            except Unavailable as exc:
                stored = stored or exc.metadata.get("stored") == "true"
                await asyncio.sleep(0.1)


@pytest.fixture
async def slow_health_broker(sentinels: SentinelSet) -> AsyncIterator[Broker]:
    """A broker on the Sentinel set whose health loop (the other way to see a failover)
    checks once at start and then not for a minute."""
    running = Broker(replace(FAST, redis_url=sentinels.url, health_interval=60.0))
    await running.start()
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_a_switchover_is_followed_as_soon_as_a_sentinel_announces_it(
    sentinels: SentinelSet, slow_health_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    running = slow_health_broker
    assert running.switch_watch is not None
    old, new = sentinels.primary, sentinels.replica
    queue = queue_name()
    async with AsyncClient(f"127.0.0.1:{running.port}") as client:
        await client.add(queue, "work", {}, job_id="before")
        assert running.connection.primary == ("127.0.0.1", old.port)
        caplog.set_level(logging.WARNING)
        node_client(sentinels.sentinels[0].port).execute_command(
            "SENTINEL", "FAILOVER", SENTINEL_SERVICE
        )
        watch = running.switch_watch
        await wait_for(lambda: watch.heard > 0, "a +switch-master message")
        assert running.connection.primary == ("127.0.0.1", new.port)
        assert "the Sentinels name it" not in caplog.text  # not the health loop
        # Adds were held back from the moment the leading Sentinel began the promotion (the
        # old primary still took writes then, which its resync drops) until the announcement.
        messages = [r.getMessage() for r in caplog.records]
        fenced = next(i for i, m in enumerate(messages) if f"promoting 127.0.0.1:{new.port}" in m)
        moved = next(i for i, m in enumerate(messages) if "a Sentinel announced it" in m)
        assert fenced < moved
        assert not running.connection.fenced
        await client.add(queue, "work", {}, job_id="after")
        assert node_client(new.port).exists(f"jb:{{{queue}}}:job:after")


async def test_a_sentinel_the_broker_cannot_subscribe_to_is_said_in_the_log(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    down = sentinels.sentinels[2]
    down.kill()
    caplog.set_level(logging.WARNING)
    async with broker(sentinels.url) as address, AsyncClient(address) as client:
        await client.add(queue_name(), "work", {})  # the other Sentinels name the primary

        def said() -> bool:
            return f"failover events of Sentinel 127.0.0.1:{down.port}" in caplog.text

        await wait_for(said, "the warning")
    assert caplog.text.count(f"Sentinel 127.0.0.1:{down.port}") == 1  # once, not per retry
