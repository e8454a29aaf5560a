"""What the scale tests share: brokers in-process or as child processes, a producer that records
which adds were acknowledged, and a worker that records what it ran.

(A module, not a conftest.py: a second ``conftest`` module would shadow the integration
tests' ``from conftest import ...`` when both directories run together.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from queue import Empty, Queue
from typing import Any
from uuid import uuid4

import pytest
from jobbroker import AsyncClient, JobBrokerError, JobContext, JobState, Worker
from jobbroker.errors import JobNotFound
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from topologies import Cluster, SentinelSet

FAST = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)
LISTENING = re.compile(r"jobbroker listening on (\S+):(\d+)")
RECOVERY_S = 30.0
"""Generous bound for recovering from a failover or a dead replica."""


def queue_name() -> str:
    return f"test-{uuid4().hex[:12]}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A Redis Cluster of this test's own (3 primaries + 3 replicas)."""
    topology = Cluster(tmp_path / "cluster")
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary + replica + 3 Sentinels of this test's own."""
    topology = SentinelSet(tmp_path / "sentinel")
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@contextlib.asynccontextmanager
async def broker(redis_url: str, **overrides: Any) -> AsyncIterator[str]:
    """A broker in this process; yields its address."""
    running = Broker(replace(FAST, redis_url=redis_url, **overrides))
    port = await running.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await running.stop(0.5)


class BrokerProcess:
    """``python -m jobbroker_broker`` as a child process, which a test may SIGKILL."""

    def __init__(self, redis_url: str, log: Path) -> None:
        self.log = log.open("wb")
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobbroker_broker",
                "--port",
                "0",
                "--redis-url",
                redis_url,
                "--maintenance-interval",
                "0.05",
                "--health-interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: Queue[str] = Queue()

        def read() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                self.kill()
                raise RuntimeError(f"broker did not start: {log.read_text()[-2000:]}") from None
            match = LISTENING.search(line)
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                return

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.log.close()


@dataclass
class Producer:
    """Adds jobs ``<prefix>-<n>`` one after another (custom ids: a retried add cannot make a
    second job) and records which adds were acknowledged."""

    client: AsyncClient
    queue: str
    prefix: str = "job"
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    _task: asyncio.Task[None] | None = None
    _stop: bool = False
    _added: asyncio.Event = field(default_factory=asyncio.Event)

    async def _run(self) -> None:
        n = 0
        while not self._stop:
            job_id = f"{self.prefix}-{n}"
            n += 1
            try:
                await self.client.add(self.queue, "work", {"n": n}, job_id=job_id, timeout=3)
            except JobBrokerError:
                self.refused += 1
                await asyncio.sleep(0.05)
                continue
            self.acknowledged.append(job_id)
            self._added.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def until(self, count: int, within: float = RECOVERY_S) -> None:
        """Wait until `count` adds in all were acknowledged."""
        async with asyncio.timeout(within):
            while len(self.acknowledged) < count:
                self._added.clear()
                await self._added.wait()


def recording_worker(
    queue: str | list[str], address: str | list[str], ran: list[str], delay: float = 0.0
) -> Worker:
    """A worker that runs every job of `queue` (or queues), recording each run's job id."""
    worker = Worker(queue, address=address, concurrency=8, lease=5, wait=1, grace=1)

    @worker.handler()
    async def run(ctx: JobContext) -> dict[str, str]:
        ran.append(ctx.id)
        if delay:
            await asyncio.sleep(delay)
        return {"ran": ctx.id}

    return worker


async def states(client: AsyncClient, queue: str, ids: list[str]) -> dict[str, JobState | None]:
    """Each job's state, None for a job Redis does not have."""
    out: dict[str, JobState | None] = {}
    for job_id in ids:
        try:
            out[job_id] = (await client.get_status(queue, job_id, timeout=5)).state
        except JobNotFound:
            out[job_id] = None
    return out


async def all_completed(
    client: AsyncClient, queue: str, ids: list[str], within: float = RECOVERY_S
) -> dict[str, JobState | None]:
    """Wait until every job that still exists is completed; returns the last states."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await states(client, queue, ids)
        pending = [i for i, s in found.items() if s is not None and s != JobState.COMPLETED]
        if not pending or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def wait_for(check: Callable[[], bool], what: str, within: float = RECOVERY_S) -> None:
    """Poll a blocking `check` (run in a thread) until it holds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(Exception):
            if await asyncio.to_thread(check):
                return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster the tests of one module share (none of them kills a node)."""
    topology = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
