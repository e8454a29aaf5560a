"""A worker whose queue runs dry waits for jobs on its stream (StreamLease.wait_ms) instead of
long-polling with Lease calls, and falls back to Lease calls with a broker that cannot wait."""

from __future__ import annotations

import pytest
from jobbroker import JobContext
from jobbroker_broker.server.services.worker_stream import WorkerSession

from .worker_harness import Running, S, decoded, make_worker, serving


async def _trickle(broker: Running, queue: str, count: int) -> None:
    """Jobs one at a time, each added once the last one completed (the queue dry between)."""
    for i in range(count):
        job_id = await broker.add(queue, {"i": i})
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED, within=10)
        assert decoded(job.result) == {"i": i}


async def _lease_calls(broker: Running, queue: str) -> int:
    """A worker of 4 slots (30 s long polls) runs 6 trickled jobs; its Lease calls."""
    worker = make_worker(broker, queue, concurrency=4, wait=30.0)

    @worker.handler()
    async def echo(ctx: JobContext) -> object:
        return ctx.data

    async with serving(worker):
        await _trickle(broker, queue, 6)
        leasing = worker._leasing
        assert leasing is not None
        assert leasing.leased == 6
        return leasing.calls


async def test_a_worker_on_a_dry_queue_waits_on_its_stream(broker: Running, queue: str) -> None:
    assert await _lease_calls(broker, queue) == 0


async def test_a_broker_that_cannot_wait_is_long_polled_with_lease_calls(
    broker: Running, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WorkerSession, "waits", False)
    assert await _lease_calls(broker, queue) >= 5
