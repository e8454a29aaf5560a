"""The operators' calls (QueueService) against a real broker, on both clients: queue counts,
pause and resume, bulk clean-ups, settings, workers, the queue's event feed and schedules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobbroker import (
    ConnectionSettings,
    Event,
    EventType,
    JobCounts,
    JobOptions,
    JobState,
    QueueInfo,
    QueueSettings,
    RateLimit,
    Schedule,
)
from jobbroker._queues import QueueCalls
from jobbroker._transport import Transport
from jobbroker.errors import InvalidArgument, JobActive, JobNotFound, ScheduleNotFound

from .support import Api, AsyncApi, FakeWorker


async def test_queue_and_queues_show_counts(client: Api, queue: str) -> None:
    await client.add(queue, "a")
    await client.add(queue, "b")
    await client.add(queue, "later", delay=3600)

    info = await client.queue(queue)
    assert info == QueueInfo(
        queue, JobCounts(waiting=2, delayed=1), paused=False, settings=QueueSettings()
    )
    assert info.counts.total == 3
    listed = {q.name: q for q in await client.queues()}
    assert listed[queue] == info


async def test_pause_and_resume_flip_the_flag(client: Api, queue: str) -> None:
    await client.add(queue, "a")
    await client.pause(queue)
    await client.pause(queue)  # idempotent
    assert (await client.queue(queue)).paused is True
    await client.resume(queue)
    assert (await client.queue(queue)).paused is False


async def test_drain_removes_waiting_and_optionally_delayed(client: Api, queue: str) -> None:
    await client.add(queue, "a")
    await client.add(queue, "b")
    await client.add(queue, "later", delay=3600)

    assert await client.drain(queue) == 2
    assert (await client.queue(queue)).counts == JobCounts(delayed=1)
    assert await client.drain(queue, include_delayed=True) == 1
    assert (await client.queue(queue)).counts == JobCounts()


async def test_clean_removes_finished_jobs_past_the_grace(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "a")
    await worker.complete(await worker.lease(), {"ok": True})

    assert await client.clean(queue, "completed", grace=3600) == []
    assert await client.clean(queue, JobState.COMPLETED) == [added.job_id]
    with pytest.raises(JobNotFound):
        await client.get_status(queue, added.job_id)
    with pytest.raises(InvalidArgument):
        await client.clean(queue, "active")


async def test_retry_failed_and_promote_delayed(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    failed = await client.add(queue, "a")
    await worker.fail(await worker.lease(), no_retry=True)
    delayed = await client.add(queue, "later", delay=3600)

    assert await client.retry_failed(queue) == 1
    assert (await client.get_status(queue, failed.job_id)).state is JobState.WAITING
    assert await client.promote_delayed(queue) == 1
    assert (await client.get_status(queue, delayed.job_id)).state is JobState.WAITING
    assert await client.retry_failed(queue) == 0


async def test_obliterate_refuses_active_jobs_unless_forced(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    await client.add(queue, "a")
    await client.add(queue, "b")
    await worker.lease()

    with pytest.raises(JobActive):
        await client.obliterate(queue)
    assert await client.obliterate(queue, force=True) == 2
    assert (await client.queue(queue)).counts == JobCounts()


async def test_update_settings_replaces_them_whole(client: Api, queue: str) -> None:
    stored = await client.update_settings(queue, rate_limit=RateLimit(10, 1), concurrency=4)
    assert stored == QueueSettings(RateLimit(10, 1.0), 4, None, 0)
    assert (await client.queue(queue)).settings == stored

    assert await client.update_settings(queue, max_stalled=3) == QueueSettings(max_stalled=3)
    assert await client.update_settings(queue) == QueueSettings()
    with pytest.raises(InvalidArgument) as caught:
        await client.update_settings(queue, rate_limit=RateLimit(1, 2 * 86_400))
    assert caught.value.field == "settings.rate_limit.duration_ms"


async def test_update_settings_with_every_served_field_set(client: Api, queue: str) -> None:
    stored = await client.update_settings(
        queue, rate_limit=RateLimit(10, 1), concurrency=4, max_stalled=3
    )
    assert stored == QueueSettings(RateLimit(10, 1.0), 4, None, 3)


async def test_group_rate_limit_is_stored(client: Api, queue: str) -> None:
    stored = await client.update_settings(queue, group_rate_limit=RateLimit(5, 0.5))
    assert stored == QueueSettings(None, 0, RateLimit(5, 0.5), 0)


async def test_only_repeatable_queue_calls_are_retried(queue: str) -> None:
    """Reads, pause/resume, settings and schedules go out idempotent; bulk operations not."""
    seen: dict[str, bool] = {}

    class Recording(Transport):
        """Answers every unary call at once, noting whether it may be retried."""

        async def unary(
            self, method: Any, request: Any, *, idempotent: bool = True, **_: Any
        ) -> Any:
            seen[type(request).__name__] = idempotent
            return _Empty()

    transport = Recording(ConnectionSettings(address="127.0.0.1:1"))
    client = QueueCalls(transport)
    try:
        await client.queues()
        await client.queue(queue)
        await client.pause(queue)
        await client.resume(queue)
        await client.update_settings(queue)
        await client.workers(queue)
        await client.schedules(queue)
        await client.schedule(queue, "k")
        await client.upsert_schedule(queue, "k", "job", every=60)
        await client.remove_schedule(queue, "k")
        await client.drain(queue)
        await client.clean(queue, "failed")
        await client.obliterate(queue)
        await client.retry_failed(queue)
        await client.promote_delayed(queue)
    finally:
        await transport.close()
    retried = {name for name, idempotent in seen.items() if idempotent}
    assert retried == {
        "ListQueuesRequest",
        "GetQueueRequest",
        "PauseQueueRequest",
        "ResumeQueueRequest",
        "UpdateQueueSettingsRequest",
        "ListWorkersRequest",
        "ListSchedulesRequest",
        "GetScheduleRequest",
        "UpsertScheduleRequest",
        "RemoveScheduleRequest",
    }
    assert set(seen) - retried == {
        "DrainQueueRequest",
        "CleanQueueRequest",
        "ObliterateQueueRequest",
        "RetryFailedJobsRequest",
        "PromoteDelayedJobsRequest",
    }


class _Empty:
    """A reply with every field empty, whatever the call."""

    removed = retried = promoted = 0
    job_ids = queues = workers = schedules = ()

    def __getattr__(self, name: str) -> Any:
        from jobbroker.v1 import queue_service_pb2 as pb

        return {"queue": pb.QueueInfo(), "settings": pb.QueueSettings()}.get(name, pb.Schedule())


async def test_upsert_schedule_needs_cron_or_every(client: Api, queue: str) -> None:
    with pytest.raises(ValueError, match="exactly one of cron= and every="):
        await client.upsert_schedule(queue, "k", "job")
    with pytest.raises(ValueError, match="exactly one"):
        await client.upsert_schedule(queue, "k", "job", cron="* * * * *", every=60)


def _events(api: Api, queue: str, **kwargs: Any) -> AsyncIterator[Event]:
    """watch_events of either client as an async iterator (the sync one's blocking steps run
    in a worker thread)."""
    if isinstance(api, AsyncApi):
        stream: AsyncIterator[Event] = api.client.watch_events(queue, **kwargs)
        return stream
    iterator = api.client.watch_events(queue, **kwargs)

    async def drive() -> AsyncIterator[Event]:
        try:
            while (item := await asyncio.to_thread(next, iterator, None)) is not None:
                yield item
        finally:
            await asyncio.to_thread(iterator.close)

    return drive()


async def test_watch_events_streams_the_queue_and_resumes_after_an_id(
    client: Api, queue: str
) -> None:
    added = await client.add(queue, "a")
    await client.pause(queue)
    await client.drain(queue)

    # "0-0": from the queue's first event, so the test needs no wait for a subscription.
    stream = _events(client, queue, after_event_id="0-0", timeout=10)
    seen = [await asyncio.wait_for(anext(stream), 5) for _ in range(3)]
    await stream.aclose()  # type: ignore[attr-defined]
    assert [e.type for e in seen] == [EventType.ADDED, EventType.PAUSED, EventType.PURGED]
    assert seen[0].job_id == added.job_id
    assert seen[2].count == 1

    resumed = _events(client, queue, after_event_id=seen[0].id, timeout=10)
    again = [await asyncio.wait_for(anext(resumed), 5) for _ in range(2)]
    await resumed.aclose()  # type: ignore[attr-defined]
    assert [e.id for e in again] == [e.id for e in seen[1:]]


async def test_watch_events_marks_trimmed_events_with_a_gap_event(
    make_client: Any, start_broker: Any, queue: str
) -> None:
    running = await start_broker(events_maxlen=10)
    client = make_client(running.address)
    await client.add(queue, "a")
    stream = _events(client, queue, after_event_id="0-0", timeout=10)
    first = await asyncio.wait_for(anext(stream), 5)
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(3):  # ~100 events per call: the queue, keeping about 10, trims the first
        await client.add_bulk(queue, [("bulk", i) for i in range(50)])

    resumed = _events(client, queue, after_event_id=first.id, timeout=10)
    gap, after = [await asyncio.wait_for(anext(resumed), 5) for _ in range(2)]
    await resumed.aclose()  # type: ignore[attr-defined]
    # The loss is said in the stream itself: a GAP at the resume point, then the oldest kept.
    assert gap.type is EventType.GAP
    assert gap.id == first.id
    assert gap.count == 0
    assert after.type is not EventType.GAP


async def test_workers_lists_the_leasing_worker(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    await client.add(queue, "a")
    await worker.lease()

    [seen] = await client.workers(queue)
    assert seen.worker_id == worker.worker_id
    assert seen.active_jobs == 1
    assert queue in seen.queues
    assert seen.last_seen is not None


async def test_schedules_round_trip(client: Api, queue: str) -> None:
    stored = await client.upsert_schedule(
        queue,
        "nightly",
        "report",
        {"kind": "daily"},
        cron="0 3 * * *",
        timezone="Europe/Paris",
        options=JobOptions(attempts=3),
    )
    assert isinstance(stored, Schedule)
    assert (stored.key, stored.queue, stored.name, stored.data) == (
        "nightly",
        queue,
        "report",
        {"kind": "daily"},
    )
    assert (stored.cron, stored.timezone, stored.options.attempts) == (
        "0 3 * * *",
        "Europe/Paris",
        3,
    )
    assert stored.next_run_at is not None

    every = await client.upsert_schedule(queue, "tick", "ping", every=60)
    assert every.every == 60.0
    assert await client.schedule(queue, "nightly") == stored
    assert {s.key for s in await client.schedules(queue)} == {"nightly", "tick"}

    await client.remove_schedule(queue, "nightly")
    assert [s.key for s in await client.schedules(queue)] == ["tick"]
    with pytest.raises(ScheduleNotFound):
        await client.schedule(queue, "nightly")
