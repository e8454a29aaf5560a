"""Every client call against a real broker, on both clients: Python values in and out, typed
options, states, pages and logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from jobbroker import Added, Backoff, Job, JobOptions, JobState, Keep, Raw
from jobbroker.client import Logs
from jobbroker.v1 import job_pb2

from .conftest import BrokerFactory, BrokerHost, ClientFactory
from .support import Api, FakeWorker


@pytest.mark.parametrize(
    "data",
    [
        {"text": "héllo ✓", "n": [1, 2.5, None, True, False], "nested": {"a": {"b": []}}},
        ["a", 1],
        "just a string",
        42,
        None,
    ],
    ids=["object", "array", "string", "number", "none"],
)
async def test_add_then_get_status_round_trips_json(client: Api, queue: str, data: object) -> None:
    added = await client.add(queue, "resize", data)

    assert added == Added(added.job_id, JobState.WAITING, duplicate=False)
    job = await client.get_status(queue, added.job_id)
    assert isinstance(job, Job)
    assert (job.id, job.queue, job.name, job.state) == (
        added.job_id,
        queue,
        "resize",
        JobState.WAITING,
    )
    assert job.data == data
    assert job.created_at is not None
    assert (job.attempts_made, job.max_attempts) == (0, 1)


async def test_raw_payloads_are_carried_as_bytes(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    data = Raw(b"\x00\xffnot json", "application/octet-stream")
    added = await client.add(queue, "thumbnail", data)

    assert (await client.get_status(queue, added.job_id)).data == data
    leased = await worker.lease()
    assert (leased.data.content_type, leased.data.body) == (data.content_type, data.body)
    await worker.complete(leased, Raw(b"\x89PNG...", "image/png"))
    assert await client.wait(queue, added.job_id, timeout=5) == Raw(b"\x89PNG...", "image/png")


async def test_typed_options_reach_the_broker(client: Api, queue: str) -> None:
    added = await client.add(
        queue,
        "report",
        {"month": 3},
        options=JobOptions(priority=5, attempts=3, lifo=True),
        job_id="report-march",
        delay=timedelta(minutes=1),
        backoff=Backoff("exponential", 5, jitter=0.5, max_delay=60),
        attempt_timeout=30,
        lifespan=3600,
        remove_on_complete=True,
        remove_on_fail=Keep(last=10, age=timedelta(days=1)),
    )

    assert added == Added("report-march", JobState.DELAYED)
    job = await client.get_status(queue, "report-march")
    assert job.state is JobState.DELAYED
    assert job.max_attempts == 3
    assert job.proto is not None
    options = job.proto.options
    assert (options.job_id, options.priority, options.attempts, options.lifo) == (
        "report-march",
        5,
        3,
        True,
    )
    assert (options.timeout_ms, options.lifespan_ms) == (30_000, 3_600_000)
    assert job.created_at is not None
    assert job.run_at - job.created_at == timedelta(minutes=1)
    assert options.backoff == job_pb2.Backoff(
        type=job_pb2.BACKOFF_TYPE_EXPONENTIAL, delay_ms=5000, jitter=0.5, max_delay_ms=60_000
    )
    assert options.remove_on_complete == job_pb2.RetentionPolicy(remove=True)
    assert options.remove_on_fail == job_pb2.RetentionPolicy(keep_last=10, keep_age_ms=86_400_000)


async def test_keyword_options_override_the_options_object(client: Api, queue: str) -> None:
    base = JobOptions(priority=7, attempts=2, remove_on_complete=5)
    added = await client.add(queue, "a", {}, options=base, priority=1)

    job = await client.get_status(queue, added.job_id)
    assert job.proto is not None
    assert (job.proto.options.priority, job.proto.options.attempts) == (1, 2)
    assert job.proto.options.remove_on_complete == job_pb2.RetentionPolicy(keep_last=5)


async def test_add_with_the_same_job_id_is_a_duplicate(client: Api, queue: str) -> None:
    first = await client.add(queue, "email", {"to": "a@example.com"}, job_id="welcome-a")
    again = await client.add(queue, "email", {"to": "a@example.com"}, job_id="welcome-a")

    assert first == Added("welcome-a", JobState.WAITING, duplicate=False)
    assert again == Added("welcome-a", JobState.WAITING, duplicate=True)


async def test_add_bulk_adds_every_form_of_job_in_order(client: Api, queue: str) -> None:
    results = await client.add_bulk(
        queue,
        [
            ("a", {"i": 1}),
            ("b", [2], JobOptions(priority=3)),
            ("c", None, None),
            ("d", "later", JobOptions(delay=60)),
        ],
    )

    assert [r.state for r in results] == [JobState.WAITING] * 3 + [JobState.DELAYED]
    assert not any(r.duplicate for r in results)
    jobs = [await client.get_status(queue, r.job_id) for r in results]
    assert [(j.name, j.data) for j in jobs] == [
        ("a", {"i": 1}),
        ("b", [2]),
        ("c", None),
        ("d", "later"),
    ]
    assert jobs[1].proto is not None
    assert jobs[1].proto.options.priority == 3


async def test_add_bulk_of_nothing_adds_nothing(client: Api, queue: str) -> None:
    assert await client.add_bulk(queue, []) == []


async def test_cancel_a_waiting_job_and_an_active_one(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    active = await client.add(queue, "a")
    waiting = await client.add(queue, "b")
    leased = await worker.lease()
    assert leased.job_id == active.job_id

    assert await client.cancel(queue, waiting.job_id) is JobState.CANCELLED
    assert await client.cancel(queue, active.job_id, "changed my mind") is JobState.ACTIVE
    job = await client.get_status(queue, active.job_id)
    assert (job.state, job.cancel_requested, job.cancel_reason) == (
        JobState.ACTIVE,
        True,
        "changed my mind",
    )
    await worker.complete(leased)
    assert (await client.get_status(queue, active.job_id)).state is JobState.CANCELLED


async def test_list_pages_through_a_state_and_iter_jobs_walks_them_all(
    client: Api, queue: str
) -> None:
    added = await client.add_bulk(queue, [("job", {"i": i}) for i in range(5)])
    ids = [a.job_id for a in added]

    first = await client.list(queue, JobState.WAITING, page_size=2)
    assert ([j.id for j in first.jobs], first.total) == (ids[:2], 5)
    assert first.next_page_token
    second = await client.list(queue, "waiting", page_size=2, page_token=first.next_page_token)
    third = await client.list(queue, "WAITING", page_size=2, page_token=second.next_page_token)
    assert [j.id for j in second.jobs + third.jobs] == ids[2:]
    assert third.next_page_token == ""

    assert [j.id async for j in client.iter_jobs(queue, JobState.WAITING, page_size=2)] == ids
    newest_first = client.iter_jobs(queue, "waiting", page_size=3, descending=True)
    assert [j.id async for j in newest_first] == ids[::-1]
    assert (await client.list(queue, JobState.FAILED)).jobs == []


async def test_list_refuses_an_unknown_state_name(client: Api, queue: str) -> None:
    with pytest.raises(ValueError, match="state"):
        await client.list(queue, "finished")


async def test_promote_retry_and_remove(client: Api, queue: str, worker: FakeWorker) -> None:
    delayed = await client.add(queue, "later", delay=60)
    assert await client.promote(queue, delayed.job_id) is JobState.WAITING
    assert (await client.get_status(queue, delayed.job_id)).state is JobState.WAITING

    leased = await worker.lease()
    await worker.fail(leased, "no luck", no_retry=True)
    assert (await client.get_status(queue, delayed.job_id)).state is JobState.FAILED
    assert await client.retry(queue, delayed.job_id) is JobState.WAITING
    assert (await client.get_status(queue, delayed.job_id)).state is JobState.WAITING

    assert await client.remove(queue, delayed.job_id) is JobState.WAITING
    assert (await client.list(queue, JobState.WAITING)).total == 0


async def test_logs_returns_ranges_of_lines(client: Api, queue: str, worker: FakeWorker) -> None:
    added = await client.add(queue, "job")
    leased = await worker.lease()
    await worker.report(leased, logs=["starting", "half way", "done"])

    assert await client.logs(queue, added.job_id) == Logs(["starting", "half way", "done"], 3)
    assert await client.logs(queue, added.job_id, 1, 1) == Logs(["half way"], 3)
    assert await client.logs(queue, added.job_id, offset=5) == Logs([], 3)
    assert (await client.get_status(queue, added.job_id)).log_count == 3


async def test_several_addresses_spread_calls_and_survive_one_broker(
    make_client: ClientFactory,
    start_broker: BrokerFactory,
    broker_host: BrokerHost,
    queue: str,
) -> None:
    first = await start_broker()
    second = await start_broker()
    client = make_client([first.address, second.address], retries=5, retry_backoff=0.05)
    assert client.target == f"ipv4:{first.address},{second.address}"

    added = [await client.add(queue, "job", {"i": i}) for i in range(4)]
    await broker_host.stop(first)
    for i, a in enumerate(added):
        assert (await client.get_status(queue, a.job_id)).data == {"i": i}


async def test_concurrent_adds_each_get_their_own_answer(client: Api, queue: str) -> None:
    """Adds made at once may travel together (one AddBulk with ``each``); each still gets its
    own result or error, as if it had been sent alone."""
    import asyncio

    from jobbroker.errors import InvalidArgument, JobIdConflict

    await client.add(queue, "email", {"n": 0}, job_id="taken")
    calls = [client.add(queue, "email", {"n": n}) for n in range(1, 40)]
    calls.append(client.add(queue, "email", {"n": "other"}, job_id="taken"))
    calls.append(client.add(queue, "email", Raw(b"{", "application/json")))
    calls.append(client.add(queue, "email", {"n": 0}, job_id="taken"))
    results = await asyncio.gather(*calls, return_exceptions=True)

    added = results[:39]
    assert all(isinstance(r, Added) and r.state == JobState.WAITING for r in added)
    assert len({r.job_id for r in added if isinstance(r, Added)}) == 39
    assert isinstance(results[39], JobIdConflict)
    assert isinstance(results[40], InvalidArgument)
    assert results[41] == Added("taken", JobState.WAITING, duplicate=True)
    page = await client.list(queue, JobState.WAITING, page_size=100)
    assert page.total == 40


async def test_a_slow_add_does_not_hold_the_producers_other_adds(
    start_broker: BrokerFactory, queue: str, unconfirming_redis: Any
) -> None:
    """Several add calls per queue are in flight at once: while one waits (here a durable add
    that no replica confirms), the next add is sent and stored, not queued behind it."""
    import asyncio

    from jobbroker import AsyncClient
    from jobbroker_broker.storage.keys import QueueKeys

    async def stored(count: int) -> None:
        async with asyncio.timeout(10):  # far less than the 30 s the first add waits
            while r.zcard(QueueKeys(queue).key("waiting")) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    # The Redis' replica is paused: each add is stored at once, then waits 30 s for it.
    r = redis.Redis.from_url(unconfirming_redis.url)
    running = await start_broker(
        url=unconfirming_redis.url,
        durability="replicas",
        durability_timeout=30.0,
        redis_timeout=60.0,
    )
    client = AsyncClient(running.address, timeout=60, retries=0)
    try:
        first = asyncio.ensure_future(client.add(queue, "slow", {"n": 0}))
        await stored(1)
        second = asyncio.ensure_future(client.add(queue, "next", {"n": 1}))
        await stored(2)
        assert not first.done()
        for call in (first, second):
            call.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
    finally:
        await client.close()
