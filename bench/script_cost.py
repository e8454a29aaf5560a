"""Redis' own time per job in each hot-path script (add, lease, complete), from
``INFO commandstats`` deltas: a load-insensitive measure, unlike jobs/s on a shared machine.

    python bench/script_cost.py [--jobs 20000] [--batch 100] [--redis-url URL] [--test-clock]

Drives the broker's ``Store`` directly (no gRPC): adds the jobs in batches of ``--batch``,
leases them ``--batch`` at a time, completes each batch in one call, and prints the EVALSHA
microseconds per job of each step: the median over the batches, so that a batch slowed down
by another process taking the CPU (a shared machine) does not skew it. Use a Redis of your
own (``--redis-url``) on a shared machine: other clients' calls count too. ``--test-clock``
runs the scripts as a test broker loads them (Settings.test_clock: one more GET per call).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid

import redis
from jobbroker.v1 import job_pb2
from jobbroker_broker.server.validation import new_job
from jobbroker_broker.settings import Settings
from jobbroker_broker.storage.contracts.leases import CompleteItem
from jobbroker_broker.storage.store import Store
from redis.asyncio import Redis
from support import remove_queue


def _evalsha_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0))


async def run(url: str, jobs: int, batch: int, test_clock: bool = False) -> dict[str, float]:
    settings = Settings(redis_url=url, test_clock=test_clock)
    client = Redis.from_url(url)
    store = Store(client, settings)
    sync = redis.Redis.from_url(url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    job = new_job("noop", job_pb2.Payload(body=b'{"n":1}'), job_pb2.JobOptions(), "", settings)
    costs: dict[str, list[float]] = {"add": [], "lease": [], "complete": []}
    try:
        for start in range(0, jobs, batch):
            size = min(batch, jobs - start)
            before = _evalsha_usec(sync)
            await store.add(queue, [job] * size)
            costs["add"].append((_evalsha_usec(sync) - before) / size)
        done = 0
        while done < jobs:
            before = _evalsha_usec(sync)
            leased, _ = await store.lease(queue, "bench", batch, 30_000)
            costs["lease"].append((_evalsha_usec(sync) - before) / len(leased))
            items = [CompleteItem(j.job_id, j.token, b"", "") for j in leased]
            before = _evalsha_usec(sync)
            results = await store.complete(queue, items)
            costs["complete"].append((_evalsha_usec(sync) - before) / len(leased))
            assert all(r.error is None for r in results)
            done += len(leased)
    finally:
        await client.aclose()
        remove_queue(url, queue)
    return {name: statistics.median(per_job) for name, per_job in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--test-clock", action="store_true")
    args = parser.parse_args()
    costs = asyncio.run(run(args.redis_url, args.jobs, args.batch, args.test_clock))
    print(
        "Redis time per job (EVALSHA usec): "
        + ", ".join(f"{name} {usec:.1f}" for name, usec in costs.items())
        + f"; lease + complete {costs['lease'] + costs['complete']:.1f}"
    )


if __name__ == "__main__":
    main()
