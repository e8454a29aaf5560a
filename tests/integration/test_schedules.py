"""Repeatable jobs: upsert/list/get/remove, validation, and exactly-once firing across replicas."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import redis
from conftest import TEST_SETTINGS, Running
from helpers import (
    S,
    error_info,
    eventually,
    expect_error,
    payload,
    private_broker,
    redis_now_ms,
)
from jobbroker.v1 import job_pb2, job_service_pb2, queue_service_pb2, queue_service_pb2_grpc
from jobbroker_broker.storage.connection import redis_client
from jobbroker_broker.storage.keys import SCHEDULED_QUEUES_KEY
from jobbroker_broker.storage.schedule_store import ScheduleStore
from jobbroker_broker.storage.store import Store

pb = queue_service_pb2


@pytest.fixture(autouse=True)
def unregister(queue: str, r: redis.Redis) -> Iterator[None]:
    """Take the test's queue out of the scheduled-queues registry afterwards."""
    yield
    r.srem(SCHEDULED_QUEUES_KEY, queue)


def stub(running: Running) -> queue_service_pb2_grpc.QueueServiceStub:
    return queue_service_pb2_grpc.QueueServiceStub(running.channel)


def schedule(queue: str, key: str = "nightly", **fields: Any) -> pb.Schedule:
    fields.setdefault("name", "report")
    fields.setdefault("data", payload({"kind": "nightly"}))
    return pb.Schedule(queue=queue, key=key, **fields)


async def upsert(running: Running, queue: str, **fields: Any) -> pb.Schedule:
    reply = await stub(running).UpsertSchedule(
        pb.UpsertScheduleRequest(schedule=schedule(queue, **fields))
    )
    return reply.schedule


async def get(running: Running, queue: str, key: str = "nightly") -> pb.Schedule:
    return (await stub(running).GetSchedule(pb.GetScheduleRequest(queue=queue, key=key))).schedule


async def jobs_of(running: Running, queue: str) -> list[job_pb2.Job]:
    reply = await running.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(queue=queue, state=S.JOB_STATE_WAITING, page_size=1000)
    )
    return list(reply.jobs)


async def test_upsert_get_list_remove(broker: Running, queue: str, r: redis.Redis) -> None:
    before = redis_now_ms(r)
    stored = await upsert(broker, queue, cron="0 3 * * *", timezone="America/New_York", limit=5)
    assert (stored.key, stored.queue, stored.cron, stored.timezone) == (
        "nightly",
        queue,
        "0 3 * * *",
        "America/New_York",
    )
    assert stored.runs == 0
    assert before < stored.next_run_at_ms <= before + 86_400_000 + 3_600_000
    assert await get(broker, queue) == stored

    hourly = await upsert(broker, queue, key="hourly", cron="0 * * * *", name="tick")
    assert hourly.timezone == "UTC"
    assert hourly.next_run_at_ms % 3_600_000 == 0
    listed = await stub(broker).ListSchedules(pb.ListSchedulesRequest(queue=queue))
    assert [s.key for s in listed.schedules] == ["hourly", "nightly"]  # by next run

    await stub(broker).RemoveSchedule(pb.RemoveScheduleRequest(queue=queue, key="nightly"))
    await expect_error(get(broker, queue), grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")
    await expect_error(
        stub(broker).RemoveSchedule(pb.RemoveScheduleRequest(queue=queue, key="nightly")),
        grpc.StatusCode.NOT_FOUND,
        "SCHEDULE_NOT_FOUND",
    )
    listed = await stub(broker).ListSchedules(pb.ListSchedulesRequest(queue=queue))
    assert [s.key for s in listed.schedules] == ["hourly"]


async def test_upserting_the_same_schedule_again_changes_nothing(
    broker: Running, queue: str
) -> None:
    first = await upsert(broker, queue, every_ms=3_600_000, start_at_ms=2**41)
    assert first.next_run_at_ms == 2**41
    assert await upsert(broker, queue, every_ms=3_600_000, start_at_ms=2**41) == first
    changed = await upsert(broker, queue, every_ms=7_200_000, start_at_ms=2**41 + 5)
    assert changed.next_run_at_ms == 2**41 + 5


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"cron": "not a cron"}, "schedule.cron"),
        ({"cron": "* * * *"}, "schedule.cron"),
        ({"cron": "0 0 30 2 *"}, "schedule.cron"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"}, "schedule.timezone"),
        ({"cron": "0 3 * * *", "timezone": "../../etc/passwd"}, "schedule.timezone"),
        ({}, "schedule.cron"),
        ({"cron": "0 3 * * *", "every_ms": 5_000}, "schedule.every_ms"),
        ({"every_ms": 999}, "schedule.every_ms"),
        ({"every_ms": 5_000, "key": ""}, "schedule.key"),
        ({"every_ms": 5_000, "key": "has space"}, "schedule.key"),
        ({"every_ms": 5_000, "queue": ""}, "schedule.queue"),
        ({"every_ms": 5_000, "name": ""}, "schedule.name"),
        (
            {"every_ms": 5_000, "options": job_pb2.JobOptions(job_id="fixed")},
            "schedule.options.job_id",
        ),
        (
            {"every_ms": 5_000, "options": job_pb2.JobOptions(delay_ms=5)},
            "schedule.options.delay_ms",
        ),
        (
            {"every_ms": 5_000, "options": job_pb2.JobOptions(priority=2_000_000)},
            "schedule.options.priority",
        ),
        ({"every_ms": 5_000, "data": job_pb2.Payload(body=b"{")}, "schedule.data.body"),
        ({"every_ms": 5_000, "start_at_ms": 10, "end_at_ms": 5}, "schedule.end_at_ms"),
    ],
)
async def test_invalid_schedules_are_rejected(
    broker: Running, queue: str, fields: dict[str, Any], field: str
) -> None:
    fields = {"queue": queue, **fields}
    request = pb.UpsertScheduleRequest(schedule=schedule(fields.pop("queue"), **fields))
    error = await expect_error(
        stub(broker).UpsertSchedule(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    assert error_info(error).metadata["field"] == field
    await expect_error(get(broker, queue), grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")


async def test_a_cron_schedule_fires_once_per_occurrence_with_two_replicas(
    broker: Running, queue: str, redis_url: str
) -> None:
    async with private_broker(redis_url) as second:
        stored = await upsert(
            broker,
            queue,
            cron="* * * * * *",  # every second
            timezone="America/New_York",
            limit=3,
            options=job_pb2.JobOptions(priority=3),
        )
        assert stored.next_run_at_ms % 1000 == 0
        ended = await eventually(
            lambda: get(second, queue), lambda s: s.next_run_at_ms == 0, within=6.0
        )
        assert ended.runs == 3
        await asyncio.sleep(0.3)  # a stray fourth job would show up now
        jobs = await jobs_of(broker, queue)
    assert len(jobs) == 3
    occurrences = [int(job.id.rsplit(":", 1)[1]) for job in jobs]
    assert [job.id for job in jobs] == [f"sched:nightly:{ms}" for ms in occurrences]
    assert occurrences[0] == stored.next_run_at_ms
    assert [b - a for a, b in itertools.pairwise(occurrences)] == [1000, 1000]
    for job in jobs:
        assert (job.name, json.loads(job.data.body)) == ("report", {"kind": "nightly"})
        assert job.options.priority == 3


async def test_every_ms_runs_at_once_then_every_period_until_end(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    now = redis_now_ms(r)
    stored = await upsert(broker, queue, every_ms=1_000, end_at_ms=now + 1_500)
    assert now <= stored.next_run_at_ms <= now + 1_000
    ended = await eventually(
        lambda: get(broker, queue), lambda s: s.next_run_at_ms == 0, within=5.0
    )
    assert ended.runs == 2
    jobs = await jobs_of(broker, queue)
    assert [job.id for job in jobs] == [
        f"sched:nightly:{stored.next_run_at_ms}",
        f"sched:nightly:{stored.next_run_at_ms + 1_000}",
    ]


async def test_a_future_start_delays_the_first_run(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    start = redis_now_ms(r) + 600_000
    stored = await upsert(broker, queue, cron="*/10 * * * * *", start_at_ms=start)
    assert start <= stored.next_run_at_ms < start + 10_000
    assert stored.next_run_at_ms % 10_000 == 0
    stored = await upsert(broker, queue, key="every", every_ms=60_000, start_at_ms=start)
    assert stored.next_run_at_ms == start


@pytest.fixture
async def racing_stores(redis_url: str) -> AsyncIterator[list[ScheduleStore]]:
    """Schedule stores of their own clients, like replicas' (no loop of their own)."""
    settings = replace(TEST_SETTINGS, redis_url=redis_url)
    clients = [redis_client(settings) for _ in range(6)]
    yield [ScheduleStore(Store(client, settings)) for client in clients]
    for client in clients:
        await client.aclose()


async def test_racing_fires_add_an_occurrence_once(
    racing_stores: list[ScheduleStore], queue: str, r: redis.Redis, broker: Running
) -> None:
    request = pb.UpsertScheduleRequest(schedule=schedule(queue, every_ms=3_600_000))
    stored = (await stub(broker).UpsertSchedule(request)).schedule
    now = redis_now_ms(r)
    assert stored.next_run_at_ms <= now
    # The broker's own loop may join the race too; still one job.
    await asyncio.gather(
        *(store.fire(queue, ["nightly"], now) for store in racing_stores for _ in range(3))
    )
    after = await get(broker, queue)
    assert after.runs == 1
    assert after.next_run_at_ms == stored.next_run_at_ms + 3_600_000
    assert [job.id for job in await jobs_of(broker, queue)] == [
        f"sched:nightly:{stored.next_run_at_ms}"
    ]
