"""StreamProgress: a snapshot, then the job's events in order, ending after the terminal one;
resumable from an event id; told when its resume point was trimmed away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis
from conftest import Running
from helpers import (
    E,
    ProgressSubscriber,
    S,
    add_id,
    cancel,
    complete,
    decoded,
    event_types,
    expect_error,
    fail,
    lease_one,
    payload,
    private_broker,
    stream_all,
    update,
    worker_stream,
)
from jobbroker.v1 import job_service_pb2
from jobbroker_broker.storage.keys import QueueKeys


@pytest.fixture
async def quiet(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a Redis of its own, for the tests that bound a latency: in the shared Redis
    it would also maintain every queue other tests left behind (see test_options.quiet)."""
    async with private_broker(private_redis.url) as running:
        yield running


async def test_snapshot_then_progress_then_terminal_event_then_end(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue, {"q": 1})
    subscriber = ProgressSubscriber(broker, queue, job_id)
    first = await subscriber.next()
    assert first is not None
    assert first.HasField("snapshot")
    assert not first.HasField("event")
    assert (first.snapshot.id, first.snapshot.state) == (job_id, S.JOB_STATE_WAITING)
    assert first.snapshot_event_id
    assert not first.resume_point_trimmed

    async with worker_stream(broker, "worker-s", [queue]) as stream:
        leased = await lease_one(broker, queue, "worker-s")
        for i, token in enumerate(["Once", " upon", " a time"]):
            await stream.send([update(leased, percent=30 * (i + 1), value={"text": token})])
        await complete(broker, leased, {"text": "Once upon a time"})

    rest = await subscriber.rest()
    assert event_types(rest) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]
    events = [item.event for item in rest]
    assert all(e.job_id == job_id and e.queue == queue for e in events)
    assert (events[0].attempt, events[0].worker_id, events[0].fence) == (
        1,
        "worker-s",
        leased.fence,
    )
    assert [e.progress.percent for e in events[1:4]] == [30, 60, 90]
    assert [decoded(e.progress.value)["text"] for e in events[1:4]] == ["Once", " upon", " a time"]
    assert (events[-1].state, decoded(events[-1].result)) == (
        S.JOB_STATE_COMPLETED,
        {"text": "Once upon a time"},
    )
    ids = [e.event_id for e in events]
    assert ids == sorted(ids, key=_id_key)
    assert len(set(ids)) == len(ids)
    stamps = [e.timestamp_ms for e in events]
    assert stamps == sorted(stamps)


async def test_retries_and_final_failure_are_streamed(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, attempts=2)
    subscriber = ProgressSubscriber(broker, queue, job_id)
    await subscriber.next()
    await fail(broker, await lease_one(broker, queue), "first")
    await fail(broker, await lease_one(broker, queue), "second")
    rest = await subscriber.rest()
    assert event_types(rest) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_FAILED,
        E.EVENT_TYPE_WAITING,
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_FAILED,
        E.EVENT_TYPE_RETRIES_EXHAUSTED,
    ]
    first_failure, last = rest[1].event, rest[-2].event
    assert (first_failure.state, first_failure.failure.message, first_failure.attempt) == (
        S.JOB_STATE_WAITING,
        "first",
        1,
    )
    assert (last.state, last.failure.reason, last.failure.message) == (
        S.JOB_STATE_FAILED,
        S.FAILURE_REASON_ERROR,
        "second",
    )
    exhausted = rest[-1].event
    assert (exhausted.failure.message, exhausted.attempt) == ("second", 2)
    # The event that ends the stream says so on the wire; the last attempt's FAILED does not.
    assert [item.event.final for item in rest] == [False] * 5 + [True]


async def test_resume_after_an_event_gets_exactly_the_events_after_it(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    subscriber = ProgressSubscriber(broker, queue, job_id)
    await subscriber.next()
    async with worker_stream(broker, "worker-r", [queue]) as stream:
        leased = await lease_one(broker, queue, "worker-r")
        for percent in (10, 20, 30, 40, 50):
            await stream.send([update(leased, percent=percent)])
        # Events of other jobs in between must not show up in this job's stream.
        await add_id(broker, queue)
        await complete(broker, leased)
    full = [item.event for item in await subscriber.rest()]
    assert len(full) == 7
    assert [e.final for e in full] == [False] * 6 + [True]

    for k in (0, 3, 5, 6):
        resumed = await stream_all(broker, queue, job_id, after=full[k].event_id)
        assert not any(item.HasField("snapshot") for item in resumed)
        assert [item.event for item in resumed] == full[k + 1 :]


async def test_resume_mid_flight_has_no_gaps_and_no_repeats(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue, "worker-m")
    seen = []
    async with worker_stream(broker, "worker-m", [queue]) as stream:
        first = ProgressSubscriber(broker, queue, job_id)
        snapshot = await first.next()
        assert snapshot is not None
        await stream.send([update(leased, percent=1)])
        await stream.send([update(leased, percent=2)])
        for _ in range(2):
            item = await first.next()
            assert item is not None
            seen.append(item.event)
        first.close()

        # Progress sent while nobody listens.
        await stream.send([update(leased, percent=3)])
        await stream.send([update(leased, percent=4)])
        second = ProgressSubscriber(broker, queue, job_id, after=seen[-1].event_id)
        await asyncio.sleep(0.05)
        await stream.send([update(leased, percent=5)])
        await complete(broker, leased)
        seen.extend(item.event for item in await second.rest())

    assert [e.progress.percent for e in seen if e.type == E.EVENT_TYPE_PROGRESS] == [1, 2, 3, 4, 5]
    assert seen[-1].type == E.EVENT_TYPE_COMPLETED
    assert len({e.event_id for e in seen}) == len(seen)


async def test_resume_racing_the_final_event_still_gets_it(broker: Running, queue: str) -> None:
    # Regression: the resume point and the snapshot were read in two Redis calls, so a final
    # event landing between them was neither replayed nor sent live (the stream ended after
    # ACTIVE). Many resumes around one completion hit that window in most rounds.
    for round_ in range(4):
        job_queue = f"{queue}-{round_}"
        job_id = await add_id(broker, job_queue)
        [first] = await _first_message(broker, job_queue, job_id)
        leased = await lease_one(broker, job_queue)

        async def resume_many(
            job_queue: str = job_queue, job_id: str = job_id, after: str = first.snapshot_event_id
        ) -> list[Any]:
            tasks = []
            for i in range(40):
                tasks.append(asyncio.create_task(stream_all(broker, job_queue, job_id, after)))
                if i % 5 == 0:
                    await asyncio.sleep(0.0005)
            return await asyncio.gather(*tasks)

        async def complete_soon(leased: Any = leased) -> None:
            await asyncio.sleep(0.003)
            await complete(broker, leased)

        streams, _ = await asyncio.gather(resume_many(), complete_soon())
        endings = [event_types(items)[-1:] for items in streams]
        assert endings == [[E.EVENT_TYPE_COMPLETED]] * len(streams), f"round {round_}: {endings}"


async def test_resume_from_the_snapshot_event_id_misses_nothing(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    [snapshot] = await asyncio.wait_for(_first_message(broker, queue, job_id), 3)
    leased = await lease_one(broker, queue)
    await complete(broker, leased)
    resumed = await stream_all(broker, queue, job_id, after=snapshot.snapshot_event_id)
    assert event_types(resumed) == [E.EVENT_TYPE_ACTIVE, E.EVENT_TYPE_COMPLETED]


def _id_key(event_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in event_id.split("-"))


async def _first_message(
    broker: Running, queue: str, job_id: str
) -> list[job_service_pb2.StreamProgressResponse]:
    subscriber = ProgressSubscriber(broker, queue, job_id)
    try:
        item = await subscriber.next()
        assert item is not None
        return [item]
    finally:
        subscriber.close()


async def test_resume_from_a_trimmed_point_gets_a_snapshot_marked_trimmed(
    redis_url: str, queue: str, r: redis.Redis
) -> None:
    async with private_broker(redis_url, events_maxlen=10) as running:
        job_id = await add_id(running, queue, {"watched": True})
        [first] = await _first_message(running, queue, job_id)
        old_id = first.snapshot_event_id
        # Stream trimming is approximate (whole nodes of ~100 entries): make plenty of events.
        for _ in range(3):
            await running.jobs.AddBulk(
                job_service_pb2.AddBulkRequest(
                    queue=queue,
                    jobs=[job_service_pb2.BulkJob(name="noise", data=payload({}))] * 150,
                )
            )
        # A precondition, not the behaviour under test: the resume point is really gone.
        oldest = r.xrange(QueueKeys(queue).key("events"), count=1)
        assert oldest
        oldest_id = oldest[0][0].decode()
        assert _id_key(oldest_id) > _id_key(old_id), "not trimmed; the test needs more events"

        subscriber = ProgressSubscriber(running, queue, job_id, after=old_id)
        item = await subscriber.next()
        assert item is not None
        assert item.HasField("snapshot")
        assert item.resume_point_trimmed
        assert (item.snapshot.id, item.snapshot.state) == (job_id, S.JOB_STATE_WAITING)
        assert item.snapshot_event_id

        # After the snapshot the stream goes on live.
        assert await cancel(running, queue, job_id) == S.JOB_STATE_CANCELLED
        assert event_types(await subscriber.rest()) == [E.EVENT_TYPE_CANCELLED]


async def test_stream_of_a_finished_job_sends_the_snapshot_and_ends(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    await complete(broker, await lease_one(broker, queue), {"done": 1})
    items = await stream_all(broker, queue, job_id)
    assert len(items) == 1
    assert items[0].snapshot.state == S.JOB_STATE_COMPLETED
    assert decoded(items[0].snapshot.result) == {"done": 1}


async def test_stream_of_an_unknown_job_is_not_found(broker: Running, queue: str) -> None:
    await expect_error(
        stream_all(broker, queue, "missing"), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND"
    )


async def test_stream_with_a_malformed_event_id_is_refused(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    error = await expect_error(
        stream_all(broker, queue, job_id, after="yesterday"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert "after_event_id" in error.details()


async def test_stream_ends_when_the_job_is_cancelled_or_removed(
    broker: Running, queue: str
) -> None:
    cancelled = await add_id(broker, queue)
    subscriber = ProgressSubscriber(broker, queue, cancelled)
    await subscriber.next()
    await cancel(broker, queue, cancelled)
    [ended] = await subscriber.rest()
    assert (ended.event.type, ended.event.final) == (E.EVENT_TYPE_CANCELLED, True)

    removed = await add_id(broker, queue)
    subscriber = ProgressSubscriber(broker, queue, removed)
    await subscriber.next()
    await broker.jobs.Remove(job_service_pb2.RemoveRequest(queue=queue, job_id=removed))
    [ended] = await subscriber.rest()
    assert (ended.event.type, ended.event.final) == (E.EVENT_TYPE_REMOVED, True)


async def test_subscriber_on_one_replica_sees_progress_reported_on_another(
    quiet: Running, private_redis: Any, queue: str
) -> None:
    job_id = await add_id(quiet, queue)
    subscriber = ProgressSubscriber(quiet, queue, job_id)
    await subscriber.next()
    async with (
        private_broker(private_redis.url) as other,
        worker_stream(other, "worker-o", [queue]) as stream,
    ):
        leased = await lease_one(other, queue, "worker-o")
        await stream.send([update(leased, percent=50)])
        await complete(other, leased, {"ok": 1})
    rest = await subscriber.rest()
    assert event_types(rest) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]
    assert rest[1].event.progress.percent == 50


async def test_fifty_subscribers_of_one_job_all_get_every_event(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    subscribers = [ProgressSubscriber(broker, queue, job_id) for _ in range(50)]
    firsts = await asyncio.gather(*(s.next() for s in subscribers))
    assert all(f is not None and f.snapshot.id == job_id for f in firsts)

    async with worker_stream(broker, "worker-f", [queue]) as stream:
        leased = await lease_one(broker, queue, "worker-f")
        for percent in range(5, 101, 5):
            await stream.send([update(leased, percent=percent)])
        await complete(broker, leased)

    results = await asyncio.gather(*(s.rest() for s in subscribers))
    reference = [item.event for item in results[0]]
    assert len(reference) == 22
    assert [e.progress.percent for e in reference[1:21]] == list(range(5, 101, 5))
    assert all([item.event for item in rest] == reference for rest in results)
