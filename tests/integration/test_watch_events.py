"""WatchEvents: a queue's events in order with their payloads, resumable by event id, told when
the resume point was trimmed away; queue-level events; events of one replica seen on another."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import pytest
import redis
from conftest import Running
from helpers import (
    E,
    S,
    add_id,
    cancel,
    complete,
    decoded,
    error_info,
    expect_error,
    fail,
    lease,
    lease_one,
    payload,
    private_broker,
    update,
    worker_stream,
)
from jobbroker.v1 import job_pb2, job_service_pb2, queue_service_pb2, queue_service_pb2_grpc
from jobbroker_broker.loops.registry import WorkerRegistry
from jobbroker_broker.server.services import queue_feed
from jobbroker_broker.server.services.common import Parts
from jobbroker_broker.storage import codec
from jobbroker_broker.storage.keys import QueueKeys

Q = queue_service_pb2
Response = Q.WatchEventsResponse
FROM_START = "0-0"


class Watcher:
    """A WatchEvents call read message by message."""

    def __init__(self, running: Running, queue: str, after: str = "") -> None:
        stub = queue_service_pb2_grpc.QueueServiceStub(running.channel)
        self.call = stub.WatchEvents(Q.WatchEventsRequest(queue=queue, after_event_id=after))
        self.items: asyncio.Queue[Response] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.call:
            self.items.put_nowait(item)

    async def take(self, count: int, within: float = 5.0) -> list[Response]:
        async def read() -> list[Response]:
            return [await self.items.get() for _ in range(count)]

        return await asyncio.wait_for(read(), within)

    async def until(self, event_type: int, within: float = 5.0) -> list[Response]:
        """Every message up to and including the first event of `event_type`."""
        out: list[Response] = []

        async def read() -> None:
            while not out or out[-1].event.type != event_type:
                out.append(await self.items.get())

        await asyncio.wait_for(read(), within)
        return out

    async def nothing_more(self, wait: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(self.items.get(), wait)
            pytest.fail(f"unexpected message {item}")

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


@contextlib.asynccontextmanager
async def watching(running: Running, queue: str, after: str = FROM_START) -> Any:
    watcher = Watcher(running, queue, after)
    try:
        yield watcher
    finally:
        await watcher.close()


def queues(running: Running) -> queue_service_pb2_grpc.QueueServiceStub:
    return queue_service_pb2_grpc.QueueServiceStub(running.channel)


def types(items: list[Response]) -> list[int]:
    return [item.event.type for item in items]


def _id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


async def _lifecycle(running: Running, queue: str) -> dict[str, str]:
    """A job completed with progress, one failed twice, one cancelled, then retried."""
    done = await add_id(running, queue, {"n": 1})
    async with worker_stream(running, "worker-w", [queue]) as stream:
        leased = await lease_one(running, queue, "worker-w")
        await stream.send([update(leased, percent=50, value={"half": True})])
        await complete(running, leased, {"answer": 42})
    failing = await add_id(running, queue, {"n": 2}, attempts=2)
    await fail(running, await lease_one(running, queue, "worker-w"), "first")
    await fail(running, await lease_one(running, queue, "worker-w"), "second")
    cancelled = await add_id(running, queue, {"n": 3})
    await cancel(running, queue, cancelled, "not needed")
    await running.jobs.Retry(job_service_pb2.RetryRequest(queue=queue, job_id=failing))
    return {"done": done, "failing": failing, "cancelled": cancelled}


# Each lease takes the queue's only waiting job: BullMQ's `drained` follows its `active`.
LIFECYCLE_TYPES = [
    E.EVENT_TYPE_ADDED,
    E.EVENT_TYPE_ACTIVE,
    E.EVENT_TYPE_DRAINED,
    E.EVENT_TYPE_PROGRESS,
    E.EVENT_TYPE_COMPLETED,
    E.EVENT_TYPE_ADDED,
    E.EVENT_TYPE_ACTIVE,
    E.EVENT_TYPE_DRAINED,
    E.EVENT_TYPE_FAILED,
    E.EVENT_TYPE_WAITING,
    E.EVENT_TYPE_ACTIVE,
    E.EVENT_TYPE_DRAINED,
    E.EVENT_TYPE_FAILED,
    E.EVENT_TYPE_RETRIES_EXHAUSTED,
    E.EVENT_TYPE_ADDED,
    E.EVENT_TYPE_CANCELLED,
    E.EVENT_TYPE_WAITING,
]


async def test_a_queues_events_arrive_in_order_with_their_payloads(
    broker: Running, queue: str
) -> None:
    async with watching(broker, queue) as watcher:
        ids = await _lifecycle(broker, queue)
        items = await watcher.take(len(LIFECYCLE_TYPES))
        await watcher.nothing_more()
    assert types(items) == LIFECYCLE_TYPES
    assert not any(item.resume_point_trimmed for item in items)
    assert all(item.event.queue == queue for item in items)
    # A job's last event says so itself: a client needs no list of final types.
    assert [item.event.final for item in items] == [
        t in (E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_RETRIES_EXHAUSTED, E.EVENT_TYPE_CANCELLED)
        for t in LIFECYCLE_TYPES
    ]
    events = [item.event for item in items if item.event.type != E.EVENT_TYPE_DRAINED]
    assert [e.job_id for e in events] == [ids["done"]] * 4 + [ids["failing"]] * 7 + [
        ids["cancelled"]
    ] * 2 + [ids["failing"]]
    added, active, progress, completed = events[:4]
    assert (added.name, added.state) == ("job", S.JOB_STATE_WAITING)
    assert (active.attempt, active.worker_id, active.state) == (1, "worker-w", S.JOB_STATE_ACTIVE)
    assert active.fence > 0
    assert (progress.progress.percent, decoded(progress.progress.value)) == (50, {"half": True})
    assert (completed.state, decoded(completed.result)) == (S.JOB_STATE_COMPLETED, {"answer": 42})
    first_fail, second_fail, exhausted = events[6], events[9], events[10]
    assert (first_fail.failure.message, first_fail.attempt, first_fail.state) == (
        "first",
        1,
        S.JOB_STATE_WAITING,
    )
    assert first_fail.failure.reason == job_pb2.FAILURE_REASON_ERROR
    assert (second_fail.failure.message, second_fail.attempt, second_fail.state) == (
        "second",
        2,
        S.JOB_STATE_FAILED,
    )
    assert (exhausted.failure.message, exhausted.attempt) == ("second", 2)
    assert events[12].state == S.JOB_STATE_CANCELLED
    event_ids = [item.event.event_id for item in items]
    assert event_ids == sorted(event_ids, key=_id_key)
    assert len(set(event_ids)) == len(event_ids)
    assert all(i.event.timestamp_ms == _id_key(i.event.event_id)[0] for i in items)


async def test_resume_after_an_event_gets_exactly_the_events_after_it(
    broker: Running, queue: str
) -> None:
    async with watching(broker, queue) as watcher:
        await _lifecycle(broker, queue)
        full = await watcher.take(len(LIFECYCLE_TYPES))
    for k in (0, 4, len(full) - 2):
        async with watching(broker, queue, full[k].event.event_id) as resumed:
            rest = await resumed.take(len(full) - k - 1)
            await resumed.nothing_more(0.2)
        assert [item.event for item in rest] == [item.event for item in full[k + 1 :]]
        assert not any(item.resume_point_trimmed for item in rest)

    # Resumed at the newest event: nothing is replayed, new events follow live.
    async with watching(broker, queue, full[-1].event.event_id) as resumed:
        await resumed.nothing_more(0.2)
        job_id = await add_id(broker, queue)
        [item] = await resumed.take(1)
    assert (item.event.type, item.event.job_id) == (E.EVENT_TYPE_ADDED, job_id)
    assert not item.resume_point_trimmed


async def test_without_a_resume_point_only_new_events_are_sent(broker: Running, queue: str) -> None:
    old = await add_id(broker, queue)
    async with watching(broker, queue, after="") as watcher:
        # The call has no reply until an event comes: add jobs until one shows up, then check
        # that what came is new, in order, and not the job added before the call.
        probes: list[str] = []
        first: list[Response] = []
        while not first:
            probes.append(await add_id(broker, queue, delay_ms=3_600_000))
            with contextlib.suppress(TimeoutError):
                first = await watcher.take(1, within=0.1)
        last = await add_id(broker, queue)
        rest = await watcher.until(E.EVENT_TYPE_ADDED)
        while rest[-1].event.job_id != last:
            rest += await watcher.until(E.EVENT_TYPE_ADDED)
    seen = [item.event.job_id for item in first + rest]
    assert old not in seen
    assert seen[-1] == last
    assert seen[:-1] == probes[probes.index(seen[0]) :]
    assert not any(item.resume_point_trimmed for item in first + rest)


async def test_a_trimmed_resume_point_is_flagged_on_the_first_message(
    redis_url: str, queue: str, r: redis.Redis
) -> None:
    async with private_broker(redis_url, events_maxlen=10) as running:
        async with watching(running, queue) as watcher:
            await add_id(running, queue)
            [first] = await watcher.take(1)
            jobs = [job_service_pb2.BulkJob(name="bulk", data=payload(i)) for i in range(300)]
            await running.jobs.AddBulk(job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs))
        [(oldest, _)] = r.xrange(QueueKeys(queue).key("events"), count=1)
        kept = r.xlen(QueueKeys(queue).key("events"))
        assert kept < 300, "the stream was trimmed"

        for after in (first.event.event_id, FROM_START):
            async with watching(running, queue, after) as resumed:
                replayed = await resumed.take(kept)
                await resumed.nothing_more(0.2)
            assert replayed[0].resume_point_trimmed
            assert replayed[0].event.event_id == oldest.decode()
            assert not any(item.resume_point_trimmed for item in replayed[1:])

        # A resume point still kept is not flagged.
        async with watching(running, queue, oldest.decode()) as resumed:
            replayed = await resumed.take(kept - 1)
        assert not any(item.resume_point_trimmed for item in replayed)


async def test_queue_events_paused_resumed_purged_drained_cleaned(
    broker: Running, queue: str
) -> None:
    """An operator's DrainQueue is `purged` (with the count); `drained` is BullMQ's: the lease
    that took the last waiting job emits it, once."""
    stub = queues(broker)
    async with watching(broker, queue) as watcher:
        await stub.PauseQueue(Q.PauseQueueRequest(queue=queue))
        await stub.ResumeQueue(Q.ResumeQueueRequest(queue=queue))
        for _ in range(3):
            await add_id(broker, queue)
        purged = await stub.DrainQueue(Q.DrainQueueRequest(queue=queue))
        assert purged.removed == 3
        for _ in range(2):
            await add_id(broker, queue)
            await complete(broker, await lease_one(broker, queue))
            assert await lease(broker, queue) == []  # an empty queue: no second `drained`
        cleaned = await stub.CleanQueue(
            Q.CleanQueueRequest(queue=queue, state=S.JOB_STATE_COMPLETED, grace_ms=0)
        )
        assert len(cleaned.job_ids) == 2
        items = await watcher.until(E.EVENT_TYPE_CLEANED)
    queue_level = [item.event for item in items if not item.event.job_id]
    assert [(e.type, e.count) for e in queue_level] == [
        (E.EVENT_TYPE_PAUSED, 0),
        (E.EVENT_TYPE_RESUMED, 0),
        (E.EVENT_TYPE_PURGED, 3),
        (E.EVENT_TYPE_DRAINED, 0),
        (E.EVENT_TYPE_DRAINED, 0),
        (E.EVENT_TYPE_CLEANED, 2),
    ]
    kinds = types(items)
    assert kinds.index(E.EVENT_TYPE_DRAINED) == kinds.index(E.EVENT_TYPE_ACTIVE) + 1
    assert queue_level[-1].state == S.JOB_STATE_COMPLETED


async def test_events_caused_on_one_broker_reach_a_watcher_on_another(
    broker: Running, redis_url: str, queue: str
) -> None:
    async with private_broker(redis_url) as other, watching(other, queue) as watcher:
        job_id = await add_id(broker, queue, {"x": 1})
        [added] = await watcher.take(1)
        assert (added.event.type, added.event.job_id) == (E.EVENT_TYPE_ADDED, job_id)
        # The watcher is live now: what follows comes through the other broker's fan-out.
        await complete(broker, await lease_one(broker, queue), {"y": 2})
        await queues(broker).PauseQueue(Q.PauseQueueRequest(queue=queue))
        items = await watcher.take(4)
    assert types(items) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_DRAINED,
        E.EVENT_TYPE_COMPLETED,
        E.EVENT_TYPE_PAUSED,
    ]
    assert decoded(items[2].event.result) == {"y": 2}


@pytest.mark.parametrize(
    ("queue_name", "after", "field"),
    [
        ("", "", "queue"),
        ("bad queue!", "", "queue"),
        ("{ok}", "", "queue"),
        ("ok", "yesterday", "after_event_id"),
        ("ok", "12-x", "after_event_id"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    broker: Running, queue_name: str, after: str, field: str
) -> None:
    async def first() -> Any:
        call = queues(broker).WatchEvents(
            Q.WatchEventsRequest(queue=queue_name, after_event_id=after)
        )
        async for item in call:
            return item
        return None

    error = await expect_error(first(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert error_info(error).metadata["field"] == field


async def test_a_watcher_that_falls_behind_goes_on_and_is_told_how_many_events_were_trimmed(
    redis_url: str, queue: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backlog of 5 live events, and a queue that keeps about 10: the watcher below falls
    # hundreds of events behind. It used to be ended with RESOURCE_EXHAUSTED; now it reads what
    # the queue still keeps and is told how many events were trimmed before it got to them.
    monkeypatch.setattr(queue_feed, "MAX_BACKLOG", 5)
    async with private_broker(redis_url, events_maxlen=10) as running:
        broker = running.broker
        feed = queue_feed.QueueFeed(
            Parts(
                broker.settings,
                broker.store,
                broker.hub,
                broker.maintenance,
                WorkerRegistry(broker.store),
                broker.streams,
            )
        )
        await add_id(running, queue)
        [(start, _)] = r.xrevrange(QueueKeys(queue).key("events"), count=1)
        delivered: list[str] = []
        fanned_out = asyncio.Event()

        def deliver(event_id: bytes, _: object) -> None:
            delivered.append(event_id.decode())
            fanned_out.set()

        unsubscribe = await broker.hub.subscribe(queue, deliver)
        watch = feed.watch(Q.WatchEventsRequest(queue=queue, after_event_id=start.decode()))
        try:
            first = asyncio.ensure_future(anext(watch))
            await add_id(running, queue)
            sent = [await asyncio.wait_for(first, 5)]
            # The watcher reads nothing while 300 jobs are added, 10 per call (the broker's
            # fan-out sees each call's events before the next call trims them).
            newest = ""
            async with asyncio.timeout(10):
                for _call in range(30):
                    jobs = [
                        job_service_pb2.BulkJob(name="bulk", data=payload(i)) for i in range(10)
                    ]
                    await running.jobs.AddBulk(
                        job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs)
                    )
                    [(last, _)] = r.xrevrange(QueueKeys(queue).key("events"), count=1)
                    newest = last.decode()
                    while not delivered or delivered[-1] != newest:
                        fanned_out.clear()
                        await fanned_out.wait()
                while sent[-1].event.event_id != newest:
                    sent.append(await anext(watch))
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
            unsubscribe()
    ids = [item.event.event_id for item in sent]
    assert ids == sorted(ids, key=codec.stream_id_key)
    assert set(ids) <= set(delivered)
    gaps = [item for item in sent if item.resume_point_trimmed]
    assert len(gaps) == 1
    assert gaps[0].events_lost > 0
    # Every event is either sent or counted as lost: none is lost silently.
    assert len(ids) + gaps[0].events_lost == len(delivered)
