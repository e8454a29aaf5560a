"""Smoke benchmark of the worker SDK: no-op jobs through one broker and one ``Worker``.

    python bench/worker_throughput.py [--jobs 20000] [--concurrency 100] [--sync]
                                      [--redis-url URL] [--fake-broker]

Starts the broker as a subprocess (``python -m jobbroker_broker --port 0``), preloads the jobs
with AddBulk through the generated stubs, then runs one ``Worker`` in a second process and
prints how many jobs per second it leased, ran and completed (from its start until every
outcome was acknowledged). ``--sync`` registers a plain function (thread pool) instead of an
``async def`` handler. Compare with ``bench/quick_throughput.py``, the same loop without the
SDK.

``--pickup RATE`` measures latency instead: a producer (this process) adds ``--jobs`` single
jobs at RATE per second while the worker waits for them, and the worker prints the time from
each ``add`` call to its handler starting (the job carries the producer's wall clock; both
processes run on one machine), p50 / p99 / max.

``--fake-broker`` replaces the broker with a stand-in WorkerService that hands out synthetic
jobs and acknowledges every report without any Redis work: what is left is the SDK's own
ceiling (plus gRPC), which tells the SDK's cost from the broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import grpc
import uvloop
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from support import CostMeter, preload, remove_queue, start_broker


def start_fake_or_real(redis_url: str, fake: int = 0) -> tuple[subprocess.Popen[str], str]:
    if fake:
        return start_broker([sys.executable, __file__, "--serve-fake", str(fake)])
    return start_broker(redis_url=redis_url)


async def completed(address: str, queue: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        reply = await jobs.ListJobs(
            job_service_pb2.ListJobsRequest(
                queue=queue, state=job_pb2.JOB_STATE_COMPLETED, page_size=1
            )
        )
        return int(reply.total)


def serve_fake(count: int) -> None:
    """A WorkerService that leases ``count`` synthetic no-op jobs and acknowledges everything."""
    from jobbroker.v1 import worker_service_pb2 as ws
    from jobbroker.v1 import worker_service_pb2_grpc

    class Fake(worker_service_pb2_grpc.WorkerServiceServicer):
        def __init__(self) -> None:
            self.next = 0

        async def Lease(self, request: ws.LeaseRequest, context: object) -> ws.LeaseResponse:
            take = min(request.max_jobs, count - self.next)
            if take <= 0:
                await asyncio.sleep(request.wait_ms / 1000)
                return ws.LeaseResponse()
            first, self.next = self.next, self.next + take
            expires = int(time.time() * 1000) + request.lease_ms
            reply = ws.LeaseResponse()
            for n in range(first, first + take):
                reply.jobs.add(
                    queue=request.queue,
                    job_id=str(n + 1),
                    name="noop",
                    data=job_pb2.Payload(body=b'{"n":1}'),
                    attempt=1,
                    max_attempts=1,
                    token=f"1-{n:08x}",
                    fence=1,
                    lease_expires_at_ms=expires,
                )
            return reply

        async def ReportProgress(self, requests: object, context: object) -> object:
            async for request in requests:  # type: ignore[attr-defined]
                reply = ws.ReportProgressResponse(seq=request.seq)
                for update in request.updates:
                    reply.leases.add(queue=update.queue, job_id=update.job_id)
                for outcome in request.outcomes:
                    kind = getattr(outcome, outcome.WhichOneof("kind"))
                    reply.outcomes.add(
                        queue=kind.queue, job_id=kind.job_id, state=job_pb2.JOB_STATE_COMPLETED
                    )
                yield reply

    async def main() -> None:
        server = grpc.aio.server()
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(Fake(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"jobbroker listening on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


def worker_process(
    address: str, queue: str, count: int, concurrency: int, sync: bool, pickup: bool
) -> None:
    """The worker side: run until ``count`` jobs ran, stop (flushes every outcome), report."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import logging

    from jobbroker import JobContext, Worker

    logging.basicConfig(level=logging.INFO, format="worker: %(message)s")

    async def main() -> None:
        worker = Worker(queue, address=address, concurrency=concurrency)
        done = asyncio.Event()
        ran = 0
        delays: list[float] = []

        def count_one() -> None:
            nonlocal ran
            ran += 1
            if ran >= count:
                done.set()

        if sync:
            loop = asyncio.get_running_loop()

            @worker.handler("noop")
            def noop_sync(ctx: JobContext) -> None:
                loop.call_soon_threadsafe(count_one)

        elif pickup:

            @worker.handler("noop")
            async def timed(ctx: JobContext) -> None:
                delays.append((time.time() - ctx.data["t"]) * 1000)
                count_one()

        else:

            @worker.handler("noop")
            async def noop(ctx: JobContext) -> None:
                count_one()

        started = time.perf_counter()
        await worker.start()
        print("ready", flush=True)
        await done.wait()
        await worker.stop()
        elapsed = time.perf_counter() - started
        report: dict[str, object] = {"ran": ran, "seconds": elapsed, "cpu": time.process_time()}
        if delays:
            delays.sort()
            n = len(delays)
            report["pickup_ms"] = [delays[n // 2], delays[n * 99 // 100], delays[-1]]
        print(json.dumps(report), flush=True)

    asyncio.run(main())


async def add_paced(address: str, queue: str, count: int, rate: float) -> list[float]:
    """Add `count` single jobs at `rate` per second, each carrying the wall clock of its add;
    returns how long each add call took (ms), sorted."""
    from jobbroker import AsyncClient

    took = []
    async with AsyncClient(address) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            sent = time.time()
            await client.add(queue, "noop", {"t": sent})
            took.append((time.time() - sent) * 1000)
    return sorted(took)


def measure_pickup(redis_url: str, count: int, rate: float, concurrency: int) -> None:
    proc, address = start_broker(redis_url=redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        command = [sys.executable, __file__, "--worker", address, queue, "--pickup", str(rate)]
        command += ["--jobs", str(count), "--concurrency", str(concurrency)]
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the worker's first long-poll is waiting
        took = uvloop.run(add_paced(address, queue, count, rate))
        out, _ = worker.communicate(timeout=60)
        p50, p99, worst = json.loads(out.strip().splitlines()[-1])["pickup_ms"]
        print(
            f"pickup latency at {rate:g} jobs/s ({count} jobs): p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, max {worst:.2f} ms (the add call alone: p50 "
            f"{took[len(took) // 2]:.2f} ms, p99 {took[len(took) * 99 // 100]:.2f} ms)"
        )
    finally:
        proc.terminate()
        proc.wait()
        remove_queue(redis_url, queue)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sync", action="store_true", help="a sync handler (thread pool)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--fake-broker", action="store_true", help="a stand-in broker without Redis work"
    )
    parser.add_argument("--pickup", type=float, metavar="RATE", help="add-to-start latency")
    parser.add_argument("--worker", nargs=2, metavar=("ADDRESS", "QUEUE"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        pickup = bool(args.pickup)
        worker_process(*args.worker, args.jobs, args.concurrency, args.sync, pickup)
        return
    if args.pickup:
        measure_pickup(args.redis_url, args.jobs, args.pickup, args.concurrency)
        return
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return
    proc, address = start_fake_or_real(args.redis_url, args.jobs if args.fake_broker else 0)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        if not args.fake_broker:
            add_s = asyncio.run(preload(address, queue, args.jobs))
            print(f"bulk enqueue: {args.jobs / add_s:,.0f} jobs/s")
        meter = CostMeter(args.redis_url, proc.pid)
        command = [sys.executable, __file__, "--worker", address, queue]
        command += ["--jobs", str(args.jobs), "--concurrency", str(args.concurrency)]
        if args.sync:
            command.append("--sync")
        finished = subprocess.run(command, check=True, capture_output=True, text=True)
        costs = meter.per_job(args.jobs)
        out = finished.stdout
        print(*[line for line in finished.stderr.splitlines() if "stopped" in line], sep="\n")
        report = json.loads(out.strip().splitlines()[-1])
        done = args.jobs if args.fake_broker else asyncio.run(completed(address, queue))
        kind = "sync" if args.sync else "async"
        if args.fake_broker:
            kind += ", fake broker"
        print(
            f"worker SDK:   {args.jobs / report['seconds']:,.0f} jobs/s "
            f"(1 Worker, concurrency {args.concurrency}, {kind} no-op handler; "
            f"{done:,} of {args.jobs:,} completed; worker CPU {report['cpu']:.1f} s "
            f"of {report['seconds']:.1f} s)"
        )
        print(
            f"cost per job: worker {report['cpu'] / args.jobs * 1e6:.0f} us CPU (incl. start), "
            + costs
        )
    finally:
        proc.terminate()
        proc.wait()
        if not args.fake_broker:
            remove_queue(args.redis_url, queue)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
