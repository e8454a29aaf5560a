"""Following jobs: stream_progress (snapshot, events, end) and wait (result or failure)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from jobbroker import Event, EventType, Job, JobCancelled, JobFailed, JobNotFound, JobState

from .support import Api, FakeWorker, collect, stream_opened


def summary(items: list[Any]) -> list[Any]:
    """What a user sees of a stream: snapshots by state, events by type (and percent)."""
    seen: list[Any] = []
    for item in items:
        if isinstance(item, Job):
            seen.append(("job", item.state))
        elif item.type is EventType.PROGRESS:
            assert item.progress is not None
            seen.append(("progress", item.progress.percent))
        else:
            seen.append(item.type)
    return seen


async def test_stream_progress_sees_progress_and_ends_after_the_terminal_event(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "complete", {"prompt": "once"})
    stream = client.stream_progress(queue, added.job_id)
    snapshot = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(snapshot, Job)
    assert (snapshot.id, snapshot.state, snapshot.data) == (
        added.job_id,
        JobState.WAITING,
        {"prompt": "once"},
    )

    leased = await worker.lease()
    for percent, token in ((30, "Once"), (60, " upon"), (90, " a time")):
        await worker.report(leased, percent=percent, value={"text": token})
    await worker.complete(leased, {"text": "Once upon a time"})
    rest = await collect(stream)

    assert summary(rest) == [
        EventType.ACTIVE,
        ("progress", 30),
        ("progress", 60),
        ("progress", 90),
        EventType.COMPLETED,
    ]
    assert all(isinstance(e, Event) and e.job_id == added.job_id for e in rest)
    assert [e.progress.value for e in rest[1:4]] == [
        {"text": "Once"},
        {"text": " upon"},
        {"text": " a time"},
    ]
    assert rest[-1].result == {"text": "Once upon a time"}
    assert rest[-1].final
    assert rest[0].worker_id == worker.worker_id


async def test_stream_progress_of_a_finished_job_is_its_snapshot(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "job")
    await worker.complete(await worker.lease(), [1, 2])

    items = await collect(client.stream_progress(queue, added.job_id))
    assert summary(items) == [("job", JobState.COMPLETED)]
    assert items[0].result == [1, 2]


async def test_stream_progress_resumes_after_a_given_event(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "job")
    stream = client.stream_progress(queue, added.job_id)
    await asyncio.wait_for(anext(stream), 5)
    leased = await worker.lease()
    await worker.report(leased, percent=10)
    await worker.report(leased, percent=20)
    await worker.complete(leased)
    events = await collect(stream)
    assert summary(events) == [
        EventType.ACTIVE,
        ("progress", 10),
        ("progress", 20),
        EventType.COMPLETED,
    ]

    resumed = client.stream_progress(queue, added.job_id, after_event_id=events[1].id)
    assert await collect(resumed) == events[2:]


async def test_stream_progress_from_a_trimmed_event_starts_with_a_snapshot(
    client: Api, queue: str
) -> None:
    # More events than the queue keeps (10,000), so "1-0" really was trimmed away.
    for _ in range(11):
        await client.add_bulk(queue, [("filler", None)] * 1_000)
    added = await client.add(queue, "job")

    stream = client.stream_progress(queue, added.job_id, after_event_id="1-0")
    first = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(first, Job)
    assert first.state is JobState.WAITING
    await client.cancel(queue, added.job_id)
    assert summary(await collect(stream)) == [EventType.CANCELLED]


def waiting_for(client: Api, queue: str, job_id: str) -> asyncio.Future[Any]:
    """A wait() running in the background."""
    return asyncio.ensure_future(client.wait(queue, job_id, timeout=5))


async def followed(client: Api, queue: str, job_id: str) -> asyncio.Future[Any]:
    """A wait() running in the background, once it follows the job: a job that vanishes when
    it ends must not end before, or the wait would get NOT_FOUND instead of the end."""
    opened = await stream_opened(client)
    waiting = waiting_for(client, queue, job_id)
    assert await asyncio.to_thread(opened.wait, 5), "wait() did not start following the job"
    return waiting


async def test_wait_returns_the_result(client: Api, queue: str, worker: FakeWorker) -> None:
    added = await client.add(queue, "sum", [1, 2, 3])
    waiting = waiting_for(client, queue, added.job_id)

    leased = await worker.lease()
    await worker.report(leased, percent=50)
    await worker.complete(leased, {"sum": 6})
    assert await waiting == {"sum": 6}
    assert await client.wait(queue, added.job_id) == {"sum": 6}  # finished: at once


async def test_wait_raises_the_failure_after_the_last_attempt(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "flaky", attempts=2)
    waiting = waiting_for(client, queue, added.job_id)

    assert await worker.fail(await worker.lease(), "first try") == JobState.WAITING.to_proto()
    await worker.fail(await worker.lease(), "second try")
    with pytest.raises(JobFailed) as caught:
        await waiting
    job = caught.value.job
    assert (job.id, job.state, job.attempts_made) == (added.job_id, JobState.FAILED, 2)
    assert job.failure is not None
    assert (job.failure.reason, job.failure.message, job.failure.error_type) == (
        "ERROR",
        "second try",
        "ValueError",
    )


async def test_wait_raises_the_failure_of_a_job_removed_on_fail(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "once", remove_on_fail=True)
    waiting = await followed(client, queue, added.job_id)

    await worker.fail(await worker.lease(), "gone for good")
    with pytest.raises(JobFailed) as caught:
        await waiting
    assert caught.value.job.state is JobState.FAILED
    assert caught.value.job.failure.message == "gone for good"
    with pytest.raises(JobNotFound):
        await client.get_status(queue, added.job_id)


async def test_wait_returns_the_result_of_a_job_removed_on_complete(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    added = await client.add(queue, "once", remove_on_complete=True)
    waiting = await followed(client, queue, added.job_id)

    await worker.complete(await worker.lease(), "kept in the event")
    assert await waiting == "kept in the event"


async def test_wait_raises_job_cancelled(client: Api, queue: str) -> None:
    added = await client.add(queue, "job")
    waiting = await followed(client, queue, added.job_id)

    await client.cancel(queue, added.job_id, "not needed")
    with pytest.raises(JobCancelled) as caught:
        await waiting
    assert caught.value.job.state is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        await client.wait(queue, added.job_id)


async def test_wait_for_a_job_removed_before_it_ran_raises_not_found(
    client: Api, queue: str
) -> None:
    added = await client.add(queue, "job", delay=60)
    waiting = await followed(client, queue, added.job_id)

    await client.remove(queue, added.job_id)
    with pytest.raises(JobNotFound):
        await waiting


async def test_a_stream_left_early_is_closed_and_the_client_goes_on(
    client: Api, queue: str
) -> None:
    added = await client.add(queue, "job")
    stream = client.stream_progress(queue, added.job_id)
    assert isinstance(await asyncio.wait_for(anext(stream), 5), Job)

    await stream.aclose()
    assert await client.cancel(queue, added.job_id) is JobState.CANCELLED
