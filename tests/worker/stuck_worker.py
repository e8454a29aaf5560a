"""A worker process whose handler ignores being stopped: ``python stuck_worker.py ADDRESS QUEUE
MODE``.

``thread``: a plain-function handler that sleeps forever (a thread cannot be interrupted);
``loop``: an async handler that, once cancelled, blocks the event loop for good; ``swallow``:
an async handler that catches every cancellation and goes on waiting. It prints ``started <job
id>`` when the handler starts and ``exited`` once ``run()`` returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from jobbroker import JobContext, Worker


def main(address: str, queue: str, mode: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = Worker(queue, address=address, grace=1.0, wait=1.0, lease=2.0)

    @worker.handler("thread")
    def deaf(ctx: JobContext) -> None:
        print(f"started {ctx.id}", flush=True)
        while True:
            time.sleep(0.1)  # never looks at ctx.cancelled

    @worker.handler("loop")
    async def blocker(ctx: JobContext) -> None:
        print(f"started {ctx.id}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            time.sleep(3600)  # noqa: ASYNC251 - on purpose: blocks the event loop once cancelled

    @worker.handler("swallow")
    async def swallower(ctx: JobContext) -> None:
        print(f"started {ctx.id}", flush=True)
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    worker.run()
    print("exited", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
