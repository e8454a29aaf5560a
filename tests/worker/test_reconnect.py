"""The worker outlives its broker: it reconnects when a broker answers on the address again."""

from __future__ import annotations

import asyncio

from jobbroker import JobContext

from .worker_harness import BrokerFactory, S, decoded, make_worker, serving


async def test_reconnects_after_a_broker_restart_on_the_same_port(
    broker_factory: BrokerFactory, queue: str
) -> None:
    first = await broker_factory()
    worker = make_worker(first, queue, lease=5.0)
    started = asyncio.Event()
    release = asyncio.Event()

    @worker.handler("echo")
    async def echo(ctx: JobContext) -> str:
        return f"echo {ctx.data['n']}"

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> str:
        started.set()
        ctx.log("before the outage")
        await release.wait()
        ctx.log("during the outage")
        return "survived"

    async with serving(worker):
        before = await first.add(queue, {"n": 1}, name="echo")
        await first.wait_state(queue, before, S.JOB_STATE_COMPLETED)
        survivor = await first.add(queue, name="slow")
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.1)  # the first log line reaches the broker

        await first.channel.close()
        await first.broker.stop(0.2)
        release.set()  # the job ends while no broker answers: its outcome waits
        await asyncio.sleep(0.3)  # the worker's calls fail meanwhile; it keeps retrying
        second = await broker_factory(port=first.port)

        after = await second.add(queue, {"n": 2}, name="echo")
        done = await second.wait_state(queue, after, S.JOB_STATE_COMPLETED, within=10)
        kept = await second.wait_state(queue, survivor, S.JOB_STATE_COMPLETED, within=10)
    assert decoded(done.result) == "echo 2"
    assert done.worker_id == worker.worker_id
    assert decoded(kept.result) == "survived"
    assert (kept.attempts_made, kept.stalled_count) == (1, 0)
    assert await second.logs(queue, survivor) == ["before the outage", "during the outage"]
