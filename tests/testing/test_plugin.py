"""jobbroker's pytest plugin, as a user's test suite gets it through the pytest11 entry point:
an in-process broker, a client, a queue of the test's own, and run_worker(worker, until="idle")."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from jobbroker import Client, DoNotRetry, JobContext, JobState, Worker


def test_the_plugin_is_registered_for_pytest() -> None:
    points = {point.name: point.value for point in entry_points(group="pytest11")}
    assert points["jobbroker"] == "jobbroker.testing.plugin"
    assert points["jobbroker_broker"] == "jobbroker_broker.testing"


def test_run_worker_serves_until_every_job_ended(
    jobbroker_client: Client, jobbroker_queue: str, run_worker: object
) -> None:
    worker = Worker(jobbroker_queue, concurrency=4)

    @worker.handler("double")
    def double(ctx: JobContext) -> int:
        ctx.log(f"doubling {ctx.data}")
        return int(ctx.data) * 2

    @worker.handler("refuse")
    def refuse(ctx: JobContext) -> None:
        raise DoNotRetry("no")

    added = [jobbroker_client.add(jobbroker_queue, "double", n) for n in range(5)]
    refused = jobbroker_client.add(jobbroker_queue, "refuse", None)
    run_worker(worker, until="idle")  # type: ignore[operator]

    for n, job in enumerate(added):
        status = jobbroker_client.get_status(jobbroker_queue, job.job_id)
        assert (status.state, status.result) == (JobState.COMPLETED, n * 2)
    assert jobbroker_client.get_status(jobbroker_queue, refused.job_id).state == JobState.FAILED


def test_each_test_gets_its_own_queue(jobbroker_queue: str, jobbroker_client: Client) -> None:
    assert jobbroker_queue.startswith("test-")
    assert jobbroker_client.queue(jobbroker_queue).counts.total == 0


def test_run_worker_accepts_only_idle(run_worker: object, jobbroker_queue: str) -> None:
    worker = Worker(jobbroker_queue)
    with pytest.raises(ValueError, match="until must be 'idle'"):
        run_worker(worker, until="forever")  # type: ignore[operator]
