"""Quick end-to-end throughput check: no-op jobs through one broker process and one worker
process, with the worker completing jobs in batches on its ReportProgress stream.

    python bench/quick_throughput.py [--jobs 20000] [--concurrency 100] [--redis-url URL]

Starts the broker as a subprocess, preloads the jobs with AddBulk, then times how long one
worker takes to lease and complete all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import grpc
from jobbroker.v1 import worker_service_pb2 as ws
from jobbroker.v1 import worker_service_pb2_grpc
from support import preload, remove_queue, start_broker


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    proc, address = start_broker(redis_url=args.redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
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
