"""Quick end-to-end throughput check: no-op jobs through one broker process and one worker
process, with the worker completing jobs in batches on its ReportProgress stream.

    python bench/quick_throughput.py [--jobs 20000] [--concurrency 100] [--redis-url URL]
    python bench/quick_throughput.py --add [--jobs 20000] [--in-flight 100]
    python bench/quick_throughput.py --bare-unary [--jobs 20000] [--in-flight 100]

Starts the broker as a subprocess, preloads the jobs with AddBulk, then times how long one
worker takes to lease and complete all of them.

``--add`` times single ``AsyncClient.add`` calls instead, ``--in-flight`` of them at once (from
this process, with uvloop); the client sends adds made at once together (AddBulk with
``each``). ``--add --stub`` times one ``Add`` RPC per job through the generated stub instead:
what the broker alone makes of many concurrent single Adds.

``--bare-unary`` is the yardstick for it: the same number of unary calls to a server process
whose handler does nothing (health Check), so what is left is grpc.aio's own cost per call
between two Python processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import grpc
import uvloop
from jobbroker.v1 import worker_service_pb2 as ws
from jobbroker.v1 import worker_service_pb2_grpc
from support import preload, process_cpu, remove_queue, start_broker


async def work(address: str, queue: str, count: int, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        done = 0
        free = concurrency
        freed = asyncio.Event()
        pending: list[ws.Outcome] = []
        ready = asyncio.Event()
        finished = asyncio.Event()
        seq = 0

        async def requests():  # type: ignore[no-untyped-def]
            nonlocal seq
            yield ws.ReportProgressRequest(worker_id="bench", queues=[queue], seq=0)
            while not finished.is_set():
                await ready.wait()
                ready.clear()
                batch, pending[:] = list(pending), []
                if batch:
                    seq += 1
                    yield ws.ReportProgressRequest(seq=seq, outcomes=batch)

        stream = workers.ReportProgress(requests())

        async def acks() -> None:
            nonlocal done, free
            async for response in stream:
                free += len(response.outcomes)
                done += len(response.outcomes)
                freed.set()
                if done >= count:
                    finished.set()
                    ready.set()
                    return

        ack_task = asyncio.create_task(acks())
        started = time.perf_counter()
        while not finished.is_set():
            # Lease in batches: wait until half the slots are free (or briefly, for any).
            while free < concurrency // 2:
                freed.clear()
                try:
                    await asyncio.wait_for(freed.wait(), 0.002)
                except TimeoutError:
                    if free:
                        break
            want, free = free, 0
            reply = await workers.Lease(
                ws.LeaseRequest(queue=queue, worker_id="bench", max_jobs=want, wait_ms=200)
            )
            free += want - len(reply.jobs)
            for job in reply.jobs:
                pending.append(
                    ws.Outcome(
                        complete=ws.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token)
                    )
                )
            ready.set()
        elapsed = time.perf_counter() - started
        await ack_task
        stream.cancel()
        return elapsed


async def add_singly(address: str, queue: str, count: int, in_flight: int, stub: bool) -> float:
    """Add `count` jobs one ``add`` call (or one Add RPC) each, `in_flight` at a time; returns
    seconds."""
    from jobbroker import AsyncClient
    from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    request = job_service_pb2.AddRequest(
        queue=queue, name="noop", data=job_pb2.Payload(body=b'{"n":1}')
    )
    async with AsyncClient(address) as client, grpc.aio.insecure_channel(address) as channel:
        add_rpc = job_service_pb2_grpc.JobServiceStub(channel).Add
        await (add_rpc(request) if stub else client.add(queue, "noop", {"n": 1}))  # connect
        left = count - 1

        async def one_by_one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if stub:
                    await add_rpc(request)
                else:
                    await client.add(queue, "noop", {"n": 1})

        started = time.perf_counter()
        await asyncio.gather(*(one_by_one() for _ in range(in_flight)))
        return time.perf_counter() - started


async def bare_unary(address: str, count: int, in_flight: int) -> float:
    """`count` health Check calls, `in_flight` at a time; returns seconds."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        request = health_pb2.HealthCheckRequest()
        await check(request)
        left = count

        async def one_by_one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await check(request)

        started = time.perf_counter()
        await asyncio.gather(*(one_by_one() for _ in range(in_flight)))
        return time.perf_counter() - started


def serve_bare() -> None:
    """A grpc.aio server with only the standard health service (the --bare-unary target)."""
    from grpc_health.v1 import health, health_pb2_grpc

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    uvloop.run(main())


def _cpu_pair(server_pid: int) -> tuple[float, float]:
    return process_cpu(server_pid), time.process_time()


def _cpu_per_call(server_pid: int, before: tuple[float, float], calls: int) -> str:
    server, client = (b - a for a, b in zip(before, _cpu_pair(server_pid), strict=True))
    return (
        f"CPU per call: server {server / calls * 1e6:.0f} us, client {client / calls * 1e6:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--add", action="store_true", help="time single add calls")
    parser.add_argument("--bare-unary", action="store_true", help="time no-op unary calls")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--stub", action="store_true", help="--add: one Add RPC per job")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return
    if args.bare_unary:
        proc, address = start_broker([sys.executable, __file__, "--serve-bare"])
        try:
            cpu = _cpu_pair(proc.pid)
            seconds = uvloop.run(bare_unary(address, args.jobs, args.in_flight))
            print(
                f"bare unary:   {args.jobs / seconds:,.0f} calls/s ({args.in_flight} in flight; "
                f"{_cpu_per_call(proc.pid, cpu, args.jobs)})"
            )
        finally:
            proc.terminate()
            proc.wait()
        return
    proc, address = start_broker(redis_url=args.redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        if args.add:
            cpu = _cpu_pair(proc.pid)
            seconds = uvloop.run(add_singly(address, queue, args.jobs, args.in_flight, args.stub))
            what = "single Add RPC" if args.stub else "single add"
            print(
                f"{what}: {args.jobs / seconds:,.0f} jobs/s ({args.in_flight} in flight; "
                f"{_cpu_per_call(proc.pid, cpu, args.jobs)})"
            )
            return
        add_s = asyncio.run(preload(address, queue, args.jobs))
        print(f"bulk enqueue: {args.jobs / add_s:,.0f} jobs/s")
        work_s = asyncio.run(work(address, queue, args.jobs, args.concurrency))
        rate = args.jobs / work_s
        print(f"processing:   {rate:,.0f} jobs/s (1 worker, concurrency {args.concurrency})")
    finally:
        proc.terminate()
        proc.wait()
        remove_queue(args.redis_url, queue)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
