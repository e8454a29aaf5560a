"""What one Redis Cluster shard gives, and what durable adds cost.

    python bench/scale_cluster.py [--jobs 20000] [--adds 2000]

Starts a local Redis Cluster (3 primaries + 3 replicas, no persistence, the test suite's
topology) and a standalone redis-server of the same binary, then, each with a broker
subprocess (`--port 0`):

1. one queue (so one shard): bulk enqueue and processing (the raw-stub worker of
   quick_throughput.py), on the standalone server and on the cluster;
2. Add latency (one Add at a time, `--adds` of them) and AddBulk throughput on the cluster with
   `--durability none` and `--durability replicas` (WAIT 1 on the queue's shard).

Results are recorded in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from quick_throughput import work
from support import broker_command, preload, start_broker

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "scale"))
from topologies import Cluster, Server, free_ports


def throughput(redis_url: str, jobs: int) -> tuple[float, float]:
    proc, address = start_broker(broker_command(redis_url))
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        add_s = asyncio.run(preload(address, queue, jobs))
        work_s = asyncio.run(work(address, queue, jobs, 100))
        return jobs / add_s, jobs / work_s
    finally:
        proc.terminate()
        proc.wait()


async def add_latency(address: str, adds: int) -> tuple[float, float, float]:
    """p50 and p99 of one Add at a time (ms), and AddBulk throughput (jobs/s)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        body = job_pb2.Payload(body=b'{"n":1}')
        times = []
        for _ in range(adds):
            started = time.perf_counter()
            await jobs.Add(job_service_pb2.AddRequest(queue=queue, name="noop", data=body))
            times.append((time.perf_counter() - started) * 1000)
        bulk_s = await preload(address, queue, adds * 5)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], adds * 5 / bulk_s


def durability_cost(redis_url: str, adds: int) -> None:
    for mode in ("none", "replicas"):
        proc, address = start_broker(broker_command(redis_url, "--durability", mode))
        try:
            p50, p99, bulk = asyncio.run(add_latency(address, adds))
        finally:
            proc.terminate()
            proc.wait()
        print(
            f"durability {mode:8}: Add p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
            f"AddBulk {bulk:,.0f} jobs/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--adds", type=int, default=2_000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="jobbroker-bench-"))
    cluster = Cluster(directory / "cluster")
    (port,) = free_ports(1)
    single = Server(directory / "single", port, ["--save", "", "--appendonly", "no"])
    try:
        cluster.start()
        single.start()
        for name, url in (
            ("standalone redis", f"redis://127.0.0.1:{port}/0"),
            ("cluster, one queue = one shard", cluster.url),
        ):
            enqueue, processing = throughput(url, args.jobs)
            print(
                f"{name:32}: bulk enqueue {enqueue:,.0f} jobs/s, "
                f"processing {processing:,.0f} jobs/s"
            )
        durability_cost(cluster.url, args.adds)
    finally:
        cluster.stop()
        single.kill()


if __name__ == "__main__":
    main()
