"""One worker process on one queue against the same worker on six: rate, Lease calls and CPU.

    python bench/multi_queue.py [--jobs 30000] [--queues 6] [--rounds 2] [--rate 0]
                                [--concurrency 100] [--redis-url URL]

By default on a private redis-server (no persistence) that the run starts and stops, so that
Redis' CPU is this run's alone.

Issue 19 measured a worker on six queues at 0.71x the throughput of one on one queue, with 6-8
times the Lease calls per job. This runs both side by side, interleaved (1, N, 1, N, ...), each
on a fresh broker process over the same Redis:

- ``--rate 0`` (default): the jobs are preloaded (AddBulk), split evenly over the queues, and
  one ``Worker`` drains them: the rate is the worker's, from its start to its last outcome;
- ``--rate R``: a producer adds single jobs at R per second, spread round robin over the
  queues, while the worker keeps up; the rate is then R, and what differs is the cost.

Each line gives the rate, the broker's unary Lease calls per 100 jobs (its own
``jobbroker_rpc_duration_seconds`` count, scraped from ``--metrics-port``; a worker that keeps
getting full batches asks for the next one on its stream instead, which this does not count)
and the CPU per job of the broker, the worker and Redis. Only the ratio between the two rows of
one round means anything (see bench/RESULTS.md on this machine's swings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

import redis
from cpu import load1, process_cpu, redis_sample
from redis_server import RedisServer, free_port, redis_server_binary
from support import broker_command, preload, remove_queue, start_broker


def lease_calls(metrics_port: int) -> int:
    """Lease calls the broker served so far, from its Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = r'jobbroker_rpc_duration_seconds_count\{[^}]*method="[^"]*Lease"[^}]*\} (\S+)'
    return int(sum(float(m) for m in re.findall(pattern, text)))


def worker_process(address: str, queues: list[str], count: int, concurrency: int) -> None:
    """The worker side: one ``Worker`` on ``queues`` until ``count`` jobs ran; prints JSON."""
    import uvloop
    from jobbroker import JobContext, Worker

    async def main() -> None:
        worker = Worker(queues, address=address, concurrency=concurrency)
        done = asyncio.Event()
        ran = 0

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            nonlocal ran
            ran += 1
            if ran >= count:
                done.set()

        await worker.start()
        print("ready", flush=True)
        started = time.perf_counter()
        cpu = time.process_time()
        await done.wait()
        await worker.stop()
        elapsed = time.perf_counter() - started
        print(json.dumps({"seconds": elapsed, "cpu": time.process_time() - cpu}), flush=True)

    uvloop.run(main())


async def produce(address: str, queues: list[str], count: int, rate: float) -> None:
    """Add ``count`` single jobs at ``rate`` per second, round robin over ``queues``."""
    from jobbroker import AsyncClient

    async with AsyncClient(address) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending: set[asyncio.Task[object]] = set()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            task = asyncio.ensure_future(client.add(queues[n % len(queues)], "noop", {"n": n}))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


def one_run(
    redis_url: str, n_queues: int, jobs: int, rate: float, concurrency: int
) -> tuple[float, str]:
    metrics_port = free_port()
    proc, address = start_broker(broker_command(redis_url, "--metrics-port", str(metrics_port)))
    tag = uuid.uuid4().hex[:8]
    queues = [f"bench-mq-{tag}-{i}" for i in range(n_queues)]
    client = redis.Redis.from_url(redis_url)
    try:
        if not rate:
            for queue in queues:
                asyncio.run(preload(address, queue, jobs // n_queues))
        total = jobs // n_queues * n_queues
        command = [sys.executable, __file__, "--worker", address, ",".join(queues)]
        command += ["--jobs", str(total), "--concurrency", str(concurrency)]
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        leases, broker_cpu = lease_calls(metrics_port), process_cpu(proc.pid)
        redis_before = redis_sample(client).cpu_s
        if rate:
            asyncio.run(produce(address, queues, total, rate))
        out, _ = worker.communicate(timeout=600)
        report = json.loads(out.strip().splitlines()[-1])
        leases = lease_calls(metrics_port) - leases
        broker_cpu = process_cpu(proc.pid) - broker_cpu
        redis_used = redis_sample(client).cpu_s - redis_before
        per_job = 1e6 / total
        return total / report["seconds"], (
            f"{n_queues} queue{'s' if n_queues > 1 else ' '}: {total / report['seconds']:>7,.0f} "
            f"jobs/s, {leases * 100 / total:5.1f} unary Lease calls per 100 jobs, CPU per job: "
            f"broker {broker_cpu * per_job:4.0f} us, worker {report['cpu'] * per_job:4.0f} us, "
            f"Redis {redis_used * per_job:4.0f} us (load {load1():.1f})"
        )
    finally:
        proc.terminate()
        proc.wait()
        for queue in queues:
            remove_queue(redis_url, queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--queues", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0, help="paced producer (0: preload)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--redis-url", help="default: a private redis-server for the run")
    parser.add_argument("--worker", nargs=2, metavar=("ADDRESS", "QUEUES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        address, queues = args.worker
        worker_process(address, queues.split(","), args.jobs, args.concurrency)
        return
    mode = f"a producer at {args.rate:g}/s" if args.rate else "preloaded"
    print(f"{args.jobs:,} no-op jobs, {mode}, one Worker (concurrency {args.concurrency})")
    private = None if args.redis_url else RedisServer("multi-queue", redis_server_binary()).start()
    url = args.redis_url or private.url  # type: ignore[union-attr]
    try:
        for round_ in range(1, args.rounds + 1):
            one_rate, one = one_run(url, 1, args.jobs, args.rate, args.concurrency)
            rate, many = one_run(url, args.queues, args.jobs, args.rate, args.concurrency)
            ratio = f"{args.queues} queues at {rate / one_rate:.2f}x"
            print(f"round {round_}: {ratio}\n  {one}\n  {many}")
    finally:
        if private is not None:
            private.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
