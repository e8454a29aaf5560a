"""The broker (or its Redis) goes away and comes back: idempotent calls retry with backoff, a
non-idempotent add fails fast, and a progress stream resumes where it left off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from jobbroker import AsyncClient, Event, EventType, Job, JobOptions, JobState, errors
from jobbroker.errors import DeadlineExceeded
from ports import free_port

from .conftest import BrokerFactory, BrokerHost, ClientFactory, RunningBroker
from .support import Api, FakeWorker, Timer

PATIENT: dict[str, Any] = {
    "retries": 40,
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.25,
    # gRPC's own reconnection backoff (up to 2 s by the client's default) would add up to a
    # second after each restart; the tests do not need to wait for it.
    "channel_options": [("grpc.max_reconnect_backoff_ms", 250)],
}
"""Client settings with which unary calls ride out a broker restart (several seconds, on a busy
machine); streams and wait() need none."""

DOWN = 1.0
"""Seconds a broker stays away while a get_status waits for it."""

BRIEFLY = 0.5
"""Seconds a broker (or Redis) stays away in the other tests."""


async def restart_later(
    start_broker: BrokerFactory, port: int, after: float = BRIEFLY
) -> RunningBroker:
    await asyncio.sleep(after)
    return await start_broker(port=port)


async def test_get_status_retries_while_the_broker_is_down(
    make_client: ClientFactory,
    broker_host: BrokerHost,
    start_broker: BrokerFactory,
    queue: str,
) -> None:
    broker = await start_broker()
    client = make_client(broker.address, **PATIENT)
    added = await client.add(queue, "job", {"n": 1})
    await broker_host.stop(broker)

    back = asyncio.ensure_future(restart_later(start_broker, broker.port, DOWN))
    with Timer() as timer:
        job = await client.get_status(queue, added.job_id)
    await back

    assert job.data == {"n": 1}
    assert timer.elapsed >= DOWN * 0.8


async def test_an_add_without_job_id_fails_fast_but_one_with_a_job_id_is_retried(
    make_client: ClientFactory,
    broker_host: BrokerHost,
    start_broker: BrokerFactory,
    queue: str,
) -> None:
    broker = await start_broker()
    client = make_client(broker.address, **PATIENT)
    await broker_host.stop(broker)

    # Were these retried, the broker would be back before the retries ran out: they would
    # succeed instead of failing fast.
    back = asyncio.ensure_future(restart_later(start_broker, broker.port))
    with Timer() as fast, pytest.raises(errors.Unavailable):
        await client.add(queue, "job", {"n": 1})
    with Timer() as bulk_fast, pytest.raises(errors.Unavailable):
        await client.add_bulk(queue, [("a", 1, JobOptions(job_id="bulk-a")), ("b", 2)])
    with Timer() as patient:
        added = await client.add(queue, "job", {"n": 2}, job_id="order-2")
    bulk = await client.add_bulk(
        queue, [("a", 1, JobOptions(job_id="bulk-a")), ("b", 2, JobOptions(job_id="bulk-b"))]
    )
    await back

    assert fast.elapsed < 0.5
    assert bulk_fast.elapsed < 0.5
    assert patient.elapsed >= BRIEFLY * 0.5
    assert added.job_id == "order-2"
    assert [a.job_id for a in bulk] == ["bulk-a", "bulk-b"]
    page = await client.list(queue, JobState.WAITING)
    assert [(j.id, j.data) for j in page.jobs] == [
        ("order-2", {"n": 2}),
        ("bulk-a", 1),
        ("bulk-b", 2),
    ]


async def test_redis_down_fails_a_plain_add_fast_and_retries_an_idempotent_one(
    make_client: ClientFactory, start_broker: BrokerFactory, private_redis: Any, queue: str
) -> None:
    broker = await start_broker(url=private_redis.url, redis_timeout=1.0)
    client = make_client(broker.address, **PATIENT)
    private_redis.stop()

    async def redis_back() -> None:
        await asyncio.sleep(BRIEFLY)
        await asyncio.to_thread(private_redis.start)

    back = asyncio.ensure_future(redis_back())
    with pytest.raises(errors.RedisUnavailable) as caught:
        await client.add(queue, "job")
    assert caught.value.reason == "REDIS_UNAVAILABLE"
    added = await client.add(queue, "job", job_id="survives")
    await back

    assert added.job_id == "survives"
    assert (await client.get_status(queue, "survives")).state is JobState.WAITING


async def test_stream_progress_resumes_across_a_broker_restart_without_gap_or_repeat(
    make_client: ClientFactory,
    broker_host: BrokerHost,
    start_broker: BrokerFactory,
    queue: str,
) -> None:
    broker = await start_broker()
    # Default settings: a stream reconnects until its own timeout, whatever `retries` says.
    client: Api = make_client(broker.address)
    # The worker goes through a broker of its own, which stays up all along, so events happen
    # while the client's broker is down.
    steady = await start_broker()
    worker = FakeWorker(steady.address, queue)
    added = await client.add(queue, "job")

    items: list[Job | Event] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        async for item in client.stream_progress(queue, added.job_id):
            items.append(item)
            arrived.set()

    async def seen(count: int) -> None:
        while len(items) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)

    following = asyncio.ensure_future(follow())
    try:
        await seen(1)
        leased = await worker.lease()
        await worker.report(leased, percent=10)
        await seen(3)  # snapshot, active, progress 10

        await broker_host.stop(broker)
        await worker.report(leased, percent=20)
        await worker.report(leased, percent=30)
        await asyncio.sleep(BRIEFLY)  # down a while: the client retries meanwhile
        await start_broker(port=broker.port)
        await worker.report(leased, percent=40)
        await worker.complete(leased, "done")
        await asyncio.wait_for(following, 10)
    finally:
        following.cancel()
        await worker.close()

    assert isinstance(items[0], Job)
    events = items[1:]
    assert all(isinstance(e, Event) for e in events)
    assert [
        (e.type, e.progress.percent if e.progress else None) for e in events if isinstance(e, Event)
    ] == [
        (EventType.ACTIVE, None),
        (EventType.PROGRESS, 10),
        (EventType.PROGRESS, 20),
        (EventType.PROGRESS, 30),
        (EventType.PROGRESS, 40),
        (EventType.COMPLETED, None),
    ]
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


async def test_redis_down_fails_concurrent_plain_adds_and_retries_idempotent_ones(
    make_client: ClientFactory, start_broker: BrokerFactory, private_redis: Any, queue: str
) -> None:
    """Adds made at once travel together; when Redis is down, those without a job id fail
    (they may or may not be stored), those with one are retried on their own until stored."""
    broker = await start_broker(url=private_redis.url, redis_timeout=1.0)
    client = make_client(broker.address, **PATIENT)
    private_redis.stop()

    async def redis_back() -> None:
        await asyncio.sleep(BRIEFLY)
        await asyncio.to_thread(private_redis.start)

    back = asyncio.ensure_future(redis_back())
    calls = [client.add(queue, "job", {"n": n}) for n in range(5)]
    calls += [client.add(queue, "job", {"n": n}, job_id=f"keep-{n}") for n in range(5)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    await back

    assert all(isinstance(r, errors.RedisUnavailable) for r in results[:5]), results
    assert [getattr(r, "job_id", r) for r in results[5:]] == [f"keep-{n}" for n in range(5)]
    for n in range(5):
        assert (await client.get_status(queue, f"keep-{n}")).state is JobState.WAITING


PATIENCE = 1.5
"""Seconds the streams below are given."""


async def test_streams_and_wait_keep_reconnecting_until_their_own_timeout(
    make_client: ClientFactory, queue: str
) -> None:
    """With default settings (3 retries, about 0.6 s of them) and no broker at all: the streams
    and wait() keep trying for their whole timeout, then say so; `retries` does not cut them."""
    client = make_client(f"127.0.0.1:{free_port()}")

    async def drain(stream: AsyncIterator[Any]) -> None:
        async for _ in stream:
            pass

    async def timed(call: Awaitable[Any], error: type[Exception]) -> float:
        with Timer() as timer, pytest.raises(error) as raised:
            await call
        if error is DeadlineExceeded:  # and it says why the stream got nowhere
            assert "while it reconnected; last error UNAVAILABLE" in str(raised.value)
        return timer.elapsed

    elapsed = await asyncio.gather(
        timed(drain(client.stream_progress(queue, "job-1", timeout=PATIENCE)), DeadlineExceeded),
        timed(drain(client.watch_events(queue, timeout=PATIENCE)), DeadlineExceeded),
        timed(client.wait(queue, "job-1", timeout=PATIENCE), TimeoutError),
    )
    assert all(PATIENCE * 0.9 <= e < PATIENCE + 5 for e in elapsed), elapsed


async def test_a_watch_from_now_that_breaks_before_its_first_event_resumes_from_its_start(
    broker_host: BrokerHost, start_broker: BrokerFactory, queue: str
) -> None:
    # Without a resume point before the first event, the watch would start "from now" again
    # after the restart, and the job added while its broker was away would be lost to it.
    watched, other = await start_broker(), await start_broker()
    started = asyncio.Event()

    class Started(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "starts after event" in record.getMessage():
                started.set()

    client_log = logging.getLogger("jobbroker.client")
    handler, level = Started(), client_log.level
    client_log.addHandler(handler)
    client_log.setLevel(logging.DEBUG)
    try:
        async with AsyncClient(watched.address) as watcher, AsyncClient(other.address) as adder:
            events = watcher.watch_events(queue, timeout=60)
            first = asyncio.ensure_future(anext(events))
            await asyncio.wait_for(started.wait(), 30)  # the client has its resume point
            await broker_host.stop(watched)
            await adder.add(queue, "while-away", {}, job_id="while-away")
            await start_broker(port=watched.port)
            event = await asyncio.wait_for(first, 30)
            await events.aclose()
    finally:
        client_log.removeHandler(handler)
        client_log.setLevel(level)
    assert (event.job_id, event.type) == ("while-away", EventType.ADDED)
