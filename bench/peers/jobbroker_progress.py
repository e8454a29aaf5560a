"""A Worker SDK process whose jobs report progress as fast as the stream takes it: each job
reports ``{"k": n, "t": <now>}`` and waits for the broker to have it (``ctx.flush()``), so no
report collapses into the next, for ``--seconds``; then it completes. The runner streams the
jobs' progress (``StreamProgress``) in another process and times each event.

    python -m bench.peers.jobbroker_progress --address A --queue Q --jobs 20 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from jobbroker import JobContext, Worker

from bench.common import emit, now, run_loop, say_ready


async def serve(address: str, queue: str, jobs: int, seconds: float) -> dict[str, int]:
    logging.basicConfig(level=logging.WARNING)
    worker = Worker(queue, address=address, concurrency=jobs, grace=5)
    finished = asyncio.Event()
    reports = 0
    ended = 0

    @worker.handler("progress")
    async def progress(ctx: JobContext) -> None:
        nonlocal reports, ended
        deadline = now() + seconds
        k = 0
        while now() < deadline:
            k += 1
            ctx.progress(value={"k": k, "t": now()})
            await ctx.flush()
        reports += k
        ended += 1
        if ended == jobs:
            finished.set()

    await worker.start()
    say_ready()
    await asyncio.wait_for(finished.wait(), seconds + 60)
    await worker.stop()
    return {"reports": reports, "jobs": ended}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    emit(run_loop(serve(args.address, args.queue, args.jobs, args.seconds)))


if __name__ == "__main__":
    main()
