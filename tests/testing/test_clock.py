"""The ``jobbroker_clock`` fixture: time moves forward on the real in-process broker (its
scripts and loops), so delays, backoffs, schedules, leases and lifespans come due without
sleeping. Each test checks the state before the advance too, so it fails if the broker did not
honour the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from jobbroker import Backoff, Client, JobContext, JobState, RateLimit, Worker
from jobbroker.testing import TestClock
from jobbroker.v1 import worker_service_pb2 as ws
from jobbroker.v1 import worker_service_pb2_grpc as ws_grpc

HOUR = 3600.0
MINUTE = 60.0


def echo_worker(queue: str) -> Worker:
    worker = Worker(queue)

    @worker.handler("echo")
    def echo(ctx: JobContext) -> object:
        return ctx.data

    return worker


def test_a_job_delayed_an_hour_runs_after_the_clock_moves_an_hour(
    jobbroker_client: Client,
    jobbroker_queue: str,
    jobbroker_clock: TestClock,
    run_worker: object,
) -> None:
    added = jobbroker_client.add(jobbroker_queue, "echo", {"n": 1}, delay=HOUR)
    assert added.state == JobState.DELAYED

    jobbroker_clock.advance(HOUR - MINUTE)
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.DELAYED

    jobbroker_clock.advance(timedelta(minutes=1))
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.WAITING
    run_worker(echo_worker(jobbroker_queue), until="idle")  # type: ignore[operator]

    job = jobbroker_client.get_status(jobbroker_queue, added.job_id)
    assert (job.state, job.result) == (JobState.COMPLETED, {"n": 1})
    assert job.created_at is not None
    assert job.started_at is not None
    assert job.started_at - job.created_at >= timedelta(hours=1)


def test_exponential_backoff_of_minutes_retries_as_the_clock_moves(
    jobbroker_client: Client,
    jobbroker_queue: str,
    jobbroker_clock: TestClock,
    run_worker: object,
) -> None:
    attempts: list[int] = []

    def flaky_worker() -> Worker:  # a Worker serves once: one per run_worker
        worker = Worker(jobbroker_queue)

        @worker.handler("flaky")
        def flaky(ctx: JobContext) -> str:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise RuntimeError(f"attempt {ctx.attempt} fails")
            return "third time lucky"

        return worker

    added = jobbroker_client.add(
        jobbroker_queue, "flaky", None, attempts=3, backoff=Backoff("exponential", MINUTE)
    )
    run_worker(flaky_worker(), until="idle")  # type: ignore[operator]
    assert attempts == [1]
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.DELAYED

    jobbroker_clock.advance(MINUTE)  # the first retry waits one minute
    run_worker(flaky_worker(), until="idle")  # type: ignore[operator]
    assert attempts == [1, 2]

    jobbroker_clock.advance(MINUTE)  # the second waits two
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.DELAYED
    jobbroker_clock.advance(MINUTE)
    run_worker(flaky_worker(), until="idle")  # type: ignore[operator]

    assert attempts == [1, 2, 3]
    job = jobbroker_client.get_status(jobbroker_queue, added.job_id)
    assert (job.state, job.result) == (JobState.COMPLETED, "third time lucky")


def test_a_daily_cron_schedule_fires_when_the_clock_reaches_nine(
    jobbroker_client: Client, jobbroker_queue: str, jobbroker_clock: TestClock
) -> None:
    now = jobbroker_clock.now()
    nine = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= now:
        nine += timedelta(days=1)
    schedule = jobbroker_client.upsert_schedule(
        jobbroker_queue, "morning", "report", {"kind": "daily"}, cron="0 9 * * *"
    )
    assert schedule.next_run_at == nine
    assert jobbroker_client.queue(jobbroker_queue).counts.waiting == 0

    jobbroker_clock.advance_to(nine - timedelta(seconds=1))
    assert jobbroker_client.queue(jobbroker_queue).counts.waiting == 0

    jobbroker_clock.advance_to(nine)
    (job,) = jobbroker_client.list(jobbroker_queue, JobState.WAITING).jobs
    assert (job.name, job.data) == ("report", {"kind": "daily"})
    assert jobbroker_client.schedule(jobbroker_queue, "morning").next_run_at == nine + timedelta(
        days=1
    )

    jobbroker_clock.advance(timedelta(days=1))
    assert jobbroker_client.queue(jobbroker_queue).counts.waiting == 2


def test_a_lease_the_worker_stopped_renewing_runs_out_as_the_clock_moves(
    jobbroker_client: Client,
    jobbroker_address: str,
    jobbroker_queue: str,
    jobbroker_clock: TestClock,
    run_worker: object,
) -> None:
    added = jobbroker_client.add(jobbroker_queue, "echo", "again", attempts=2)
    with grpc.insecure_channel(jobbroker_address) as channel:
        # A worker that takes the job for a minute, then dies: nothing renews the lease.
        leased = ws_grpc.WorkerServiceStub(channel).Lease(
            ws.LeaseRequest(queue=jobbroker_queue, worker_id="gone", max_jobs=1, lease_ms=60_000)
        )
    assert [job.job_id for job in leased.jobs] == [added.job_id]

    jobbroker_clock.advance(MINUTE - 1)
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.ACTIVE

    jobbroker_clock.advance(1)
    job = jobbroker_client.get_status(jobbroker_queue, added.job_id)
    assert (job.state, job.stalled_count) == (JobState.WAITING, 1)

    run_worker(echo_worker(jobbroker_queue), until="idle")  # type: ignore[operator]
    job = jobbroker_client.get_status(jobbroker_queue, added.job_id)
    assert (job.state, job.result) == (JobState.COMPLETED, "again")


def test_a_job_not_started_within_its_lifespan_expires_as_the_clock_moves(
    jobbroker_client: Client, jobbroker_queue: str, jobbroker_clock: TestClock
) -> None:
    added = jobbroker_client.add(jobbroker_queue, "echo", None, lifespan=10 * MINUTE)
    jobbroker_clock.advance(5 * MINUTE)
    assert jobbroker_client.get_status(jobbroker_queue, added.job_id).state == JobState.WAITING

    jobbroker_clock.advance(5 * MINUTE)
    job = jobbroker_client.get_status(jobbroker_queue, added.job_id)
    assert job.state == JobState.FAILED
    assert job.failure is not None
    assert job.failure.reason == "EXPIRED"


def run_raw(address: str, queue: str, max_jobs: int) -> list[str]:
    """Lease up to `max_jobs` jobs and complete them, as a worker of the raw API would; their
    ids."""
    with grpc.insecure_channel(address) as channel:
        stub = ws_grpc.WorkerServiceStub(channel)
        reply = stub.Lease(ws.LeaseRequest(queue=queue, worker_id="raw", max_jobs=max_jobs))
        for job in reply.jobs:
            stub.Complete(ws.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token))
    return [job.job_id for job in reply.jobs]


@pytest.mark.parametrize("limit", ["queue", "group"])
def test_rate_limit_windows_end_as_the_clock_moves(
    jobbroker_client: Client,
    jobbroker_address: str,
    jobbroker_queue: str,
    jobbroker_clock: TestClock,
    limit: str,
) -> None:
    two_an_hour = RateLimit(2, HOUR)
    if limit == "queue":
        jobbroker_client.update_settings(jobbroker_queue, rate_limit=two_an_hour)
    else:
        jobbroker_client.update_settings(jobbroker_queue, group_rate_limit=two_an_hour)
    group = {"group": "tenant-1"} if limit == "group" else {}
    first = jobbroker_client.add(jobbroker_queue, "echo", 1, **group)  # type: ignore[arg-type]
    assert run_raw(jobbroker_address, jobbroker_queue, 5) == [first.job_id]  # 1 of 2 used

    jobbroker_clock.advance(HOUR)  # a new window: two more may start
    more = [jobbroker_client.add(jobbroker_queue, "echo", n, **group) for n in (2, 3)]  # type: ignore[arg-type]
    assert run_raw(jobbroker_address, jobbroker_queue, 5) == [job.job_id for job in more]


def test_the_clock_moves_only_its_own_queues(
    jobbroker_client: Client, jobbroker_queue: str, jobbroker_clock: TestClock
) -> None:
    other = jobbroker_queue + "-other"
    watched = jobbroker_queue + "-watched"
    untouched = jobbroker_client.add(other, "echo", None, delay=HOUR)
    jobbroker_clock.advance(HOUR)
    assert jobbroker_client.get_status(other, untouched.job_id).state == JobState.DELAYED

    jobbroker_clock.watch(watched)  # catches up with the hour this clock moved already
    late = jobbroker_client.add(watched, "echo", None, delay=HOUR)
    jobbroker_clock.advance(HOUR)
    assert jobbroker_client.get_status(watched, late.job_id).state == JobState.WAITING
    assert jobbroker_client.get_status(other, untouched.job_id).state == JobState.DELAYED


def test_now_is_the_broker_time_of_the_queue(jobbroker_clock: TestClock) -> None:
    before = jobbroker_clock.now()
    assert abs(before - datetime.now(UTC)) < timedelta(minutes=1)
    after = jobbroker_clock.advance(timedelta(days=3))
    assert after - before >= timedelta(days=3)
    assert jobbroker_clock.advanced == timedelta(days=3)


def test_time_never_moves_back(jobbroker_clock: TestClock) -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        jobbroker_clock.advance(-1)
    with pytest.raises(ValueError, match="in the past"):
        jobbroker_clock.advance_to(jobbroker_clock.now() - timedelta(hours=1))


def test_the_clock_refuses_a_broker_it_cannot_move(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBBROKER_TEST_ADDRESS", "127.0.0.1:1")
    with pytest.raises(pytest.fail.Exception, match="in-process broker only"):
        request.getfixturevalue("jobbroker_clock")
