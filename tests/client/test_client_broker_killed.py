"""The only broker a client knows is killed (SIGKILL) and started again on its port a few seconds
later, or twenty: with the clients' default settings, ``wait()`` still returns the job's result,
and ``stream_progress`` and ``watch_events`` (async and sync) deliver every event exactly once, in
order, the events of the outage included. Every follower runs in the same outage, concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from deploy.brokers import BrokerProcess
from jobbroker import AsyncClient, Client, Event, EventType, Job

from .conftest import BrokerFactory
from .support import AsyncApi, FakeWorker, SyncApi, stream_opened

WITHIN = 30.0
"""Seconds any awaited condition may take on a loaded machine."""
RESULT = {"answer": 42}

SKIP_SLOW = pytest.mark.skipif(
    os.environ.get("JOBBROKER_SKIP_SLOW") == "1", reason="JOBBROKER_SKIP_SLOW=1"
)


@pytest.fixture
def flaky(redis_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    """The clients' one broker: a process on a port that stays the same across restarts."""
    broker = BrokerProcess(redis_url, tmp_path, "--health-interval", "0.2")
    try:
        broker.start()
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    """Threads of the synchronous followers (the default pool may be too small for them)."""
    with ThreadPoolExecutor(8, "sync-follower") as pool:
        yield pool


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (polling) until ``condition()`` holds; fail after WITHIN seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while not condition():
        assert loop.time() < deadline, f"not within {WITHIN} s: {what}"
        await asyncio.sleep(0.02)


@dataclass
class Seen:
    """What a stream delivered, and when (``time.monotonic()``, the event loop's clock)."""

    items: list[Any] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, item: Any) -> None:
        self.items.append(item)
        self.times.append(time.monotonic())

    def progressed(self, job_id: str, percent: float) -> bool:
        """Whether the job's progress event of ``percent`` came."""
        return any(
            isinstance(i, Event)
            and i.job_id == job_id
            and i.progress is not None
            and i.progress.percent == percent
            for i in self.items
        )

    def back(self, since: float) -> float:
        """Seconds from ``since`` to the first item delivered after it."""
        return next(t for t in self.times if t >= since) - since


def ends(event: Event, job_id: str) -> bool:
    return event.job_id == job_id and event.type is EventType.COMPLETED


async def watch_async(client: AsyncClient, queue: str, job_id: str, into: Seen) -> None:
    events = client.watch_events(queue, after_event_id="0-0")
    async with contextlib.aclosing(events):
        async for event in events:
            into.add(event)
            if ends(event, job_id):
                return


def watch_sync(client: Client, queue: str, job_id: str, into: Seen) -> None:
    with contextlib.closing(client.watch_events(queue, after_event_id="0-0")) as events:
        for event in events:
            into.add(event)
            if ends(event, job_id):
                return


async def follow_async(client: AsyncClient, queue: str, job_id: str, into: Seen) -> None:
    async for item in client.stream_progress(queue, job_id):
        into.add(item)


def follow_sync(client: Client, queue: str, job_id: str, into: Seen) -> None:
    for item in client.stream_progress(queue, job_id):
        into.add(item)


def event_ids(r: redis.Redis, queue: str, job_id: str) -> list[str]:
    """The ids of the queue's events as Redis keeps them, up to the job's completion."""
    ids: list[str] = []
    for raw_id, fields in r.xrange(f"jb:{{{queue}}}:events"):
        ids.append(raw_id.decode())
        if fields.get(b"j") == job_id.encode() and fields.get(b"e") == b"completed":
            break
    return ids


@pytest.mark.parametrize(
    "down", [3.0, pytest.param(20.0, marks=[pytest.mark.slow, SKIP_SLOW], id="20.0")]
)
async def test_default_clients_ride_out_a_killed_broker_without_gap_or_repeat(
    flaky: BrokerProcess,
    start_broker: BrokerFactory,
    threads: ThreadPoolExecutor,
    r: redis.Redis,
    queue: str,
    down: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "jobbroker.client")
    loop = asyncio.get_running_loop()
    # Default settings all: no retries=, no channel options.
    waiting_async, following_async = AsyncClient(flaky.address), AsyncClient(flaky.address)
    waiting_sync, following_sync = Client(flaky.address), Client(flaky.address)
    # The job's worker goes through a broker of its own that stays up, so the job moves on
    # while the followers' broker is away.
    steady = await start_broker()
    worker = FakeWorker(steady.address, queue)
    job_id = (await following_async.add(queue, "job")).job_id

    # wait() follows the job with stream_progress: know when each wait's stream is open.
    wait_async_open = await stream_opened(AsyncApi(waiting_async))
    wait_sync_open = await stream_opened(SyncApi(waiting_sync))
    streamed_async, streamed_sync, watched_async, watched_sync = Seen(), Seen(), Seen(), Seen()
    followers = {
        "async wait": asyncio.ensure_future(waiting_async.wait(queue, job_id)),
        "sync wait": loop.run_in_executor(threads, waiting_sync.wait, queue, job_id),
        "async stream_progress": asyncio.ensure_future(
            follow_async(following_async, queue, job_id, streamed_async)
        ),
        "sync stream_progress": loop.run_in_executor(
            threads, follow_sync, following_sync, queue, job_id, streamed_sync
        ),
        "async watch_events": asyncio.ensure_future(
            watch_async(following_async, queue, job_id, watched_async)
        ),
        "sync watch_events": loop.run_in_executor(
            threads, watch_sync, following_sync, queue, job_id, watched_sync
        ),
    }
    streams = [streamed_async, streamed_sync, watched_async, watched_sync]
    try:
        await until(
            lambda: (
                wait_async_open.is_set()
                and wait_sync_open.is_set()
                and all(s.items for s in streams)
            ),
            "every follower under way",
        )
        leased = await worker.lease(lease_ms=120_000)
        await worker.report(leased, percent=10)
        await until(
            lambda: all(s.progressed(job_id, 10) for s in streams), "progress 10 everywhere"
        )

        flaky.kill()  # SIGKILL: no goodbye to the clients
        await worker.report(leased, percent=20)
        await worker.report(leased, percent=30)
        await asyncio.sleep(down)
        await loop.run_in_executor(threads, flaky.start)  # same port; returns once serving
        serving_again = loop.time()
        await worker.report(leased, percent=40)
        await worker.complete(leased, RESULT)

        _, pending = await asyncio.wait(followers.values(), timeout=WITHIN)
        assert not pending, [name for name, f in followers.items() if f in pending]
        results = {name: follower.result() for name, follower in followers.items()}
    finally:
        for follower in followers.values():
            follower.cancel()
        await worker.close()
        await waiting_async.close()
        await following_async.close()
        await loop.run_in_executor(threads, waiting_sync.close)
        await loop.run_in_executor(threads, following_sync.close)

    assert results["async wait"] == RESULT
    assert results["sync wait"] == RESULT
    for streamed in (streamed_async, streamed_sync):
        assert isinstance(streamed.items[0], Job)
        events = streamed.items[1:]
        assert all(isinstance(e, Event) for e in events), events
        assert [(e.type, e.progress.percent if e.progress else None) for e in events] == [
            (EventType.ACTIVE, None),
            (EventType.PROGRESS, 10),
            (EventType.PROGRESS, 20),
            (EventType.PROGRESS, 30),
            (EventType.PROGRESS, 40),
            (EventType.COMPLETED, None),
        ]
    # The watchers saw the queue's events exactly as Redis keeps them: none lost, none twice.
    kept = event_ids(r, queue, job_id)
    assert [e.id for e in watched_async.items] == kept
    assert [e.id for e in watched_sync.items] == kept
    # The outage is logged once per client (four of them), not once per stream.
    logged = [
        (rec.levelno, rec.getMessage()) for rec in caplog.records if rec.name == "jobbroker.client"
    ]
    warned = [m for level, m in logged if level == logging.WARNING]
    back = [m for level, m in logged if level == logging.INFO]
    assert len(warned) == 4, warned
    assert all(m.startswith(f"streams from {flaky.address} interrupted") for m in warned), warned
    assert back == [f"streams from {flaky.address} resumed"] * 4, back
    shown = ", ".join(f"{s.back(serving_again):.2f}" for s in streams)
    print(f"streams delivered again {shown} s after the broker served again")
