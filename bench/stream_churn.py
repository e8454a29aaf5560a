"""Does the broker keep memory after streams end? Open ``--streams`` StreamProgress calls at once
on one connection, wait for every snapshot, drop them all (the client cancels), and repeat for
``--rounds`` rounds, printing the broker's memory after each round.

    python -m bench.stream_churn --redis-url redis://127.0.0.1:6379/0           # broker RSS
    python -m bench.stream_churn --redis-url redis://127.0.0.1:6379/0 --heap    # Python heap

The default runs the broker as a subprocess and reads its resident set (``VmRSS`` from
``/proc/<pid>/status``). ``--heap`` runs the broker in this process instead and reads what
Python itself holds (``tracemalloc``, after ``gc.collect()``), client included: memory that
grows round after round there is a leak of Python objects; RSS that stays up while this stays
flat is memory the allocator keeps for reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import itertools
import os
import sys
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from bench.common import emit
from bench.support import broker_command, remove_queue, start_broker

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def churn(address: str, streams: int) -> str:
    """One round: open ``streams`` progress streams at once, read each snapshot, drop them."""
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        queue = f"bench-churn-{uuid.uuid4().hex[:8]}"
        added = await jobs.Add(
            job_service_pb2.AddRequest(queue=queue, name="n", data=job_pb2.Payload(body=b"{}"))
        )
        request = job_service_pb2.StreamProgressRequest(queue=queue, job_id=added.job_id)
        calls = [jobs.StreamProgress(request) for _ in range(streams)]
        firsts = await asyncio.gather(*(call.read() for call in calls))
        if any(item is grpc.aio.EOF or not item.HasField("snapshot") for item in firsts):
            raise RuntimeError("a stream ended without its snapshot")
        for call in calls:
            call.cancel()
        await asyncio.gather(*(_ended(call) for call in calls))
        return queue


async def _ended(call: Any) -> None:
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await call.code()


def open_files(pid: int) -> int:
    """Open file descriptors: the gRPC connection, Redis connections kept in the pool..."""
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settle(open_streams: Callable[[], int] | None) -> None:
    """Let the broker's handlers finish after the cancels arrive."""
    await asyncio.sleep(1.0)
    while open_streams is not None and open_streams() > 0:  # noqa: ASYNC110 - a count to poll
        await asyncio.sleep(0.1)


async def rounds(
    address: str,
    streams: int,
    count: int,
    measure: Callable[[], int],
    redis_url: str,
    pid: int,
    open_streams: Callable[[], int] | None = None,
) -> list[int]:
    sizes = [measure()]
    print(f"before: {sizes[0] / MiB:.1f} MiB, {open_files(pid)} open files", flush=True)
    for i in range(count):
        queue = await churn(address, streams)
        await settle(open_streams)
        sizes.append(measure())
        print(
            f"after round {i + 1}: {sizes[-1] / MiB:.1f} MiB, {open_files(pid)} open files",
            flush=True,
        )
        remove_queue(redis_url, queue)
    return sizes


async def heap(redis_url: str, streams: int, count: int) -> list[int]:
    from jobbroker_broker.server.app import Broker
    from jobbroker_broker.settings import Settings

    broker = Broker(replace(Settings(), port=0, redis_url=redis_url))
    port = await broker.start()

    libc = ctypes.CDLL("libc.so.6") if sys.platform == "linux" else None

    def traced() -> int:
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        rss = rss_bytes(os.getpid())
        if libc is not None:  # glibc: give the free heap back to the system, to see how much
            libc.malloc_trim(0)
            print(
                f"  process RSS {rss / MiB:.1f} MiB, after malloc_trim "
                f"{rss_bytes(os.getpid()) / MiB:.1f} MiB",
                flush=True,
            )
        return held

    try:
        return await rounds(
            f"127.0.0.1:{port}",
            streams,
            count,
            traced,
            redis_url,
            os.getpid(),
            lambda: len(broker.streams),
        )
    finally:
        await broker.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--streams", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--heap", action="store_true", help="the in-process Python heap")
    parser.add_argument(
        "--broker-flag", action="append", default=[], help="a flag for the broker subprocess"
    )
    args = parser.parse_args()
    if args.heap:
        tracemalloc.start()
        sizes = asyncio.run(heap(args.redis_url, args.streams, args.rounds))
        measure = "python heap (tracemalloc), broker and client"
    else:
        proc, address = start_broker(broker_command(args.redis_url, *args.broker_flag))
        try:
            sizes = asyncio.run(
                rounds(
                    address,
                    args.streams,
                    args.rounds,
                    lambda: rss_bytes(proc.pid),
                    args.redis_url,
                    proc.pid,
                )
            )
        finally:
            proc.terminate()
            proc.wait(15)
        measure = "broker RSS"
    growth = [b - a for a, b in itertools.pairwise(sizes[1:])]
    emit(
        {
            "measure": measure,
            "streams_per_round": args.streams,
            "mib": [round(s / MiB, 1) for s in sizes],
            "first_round_mib": round((sizes[1] - sizes[0]) / MiB, 1),
            "later_rounds_mib": [round(g / MiB, 1) for g in growth],
        }
    )


if __name__ == "__main__":
    main()
