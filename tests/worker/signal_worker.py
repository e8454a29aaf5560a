"""A worker process for the signal tests: ``python signal_worker.py ADDRESS QUEUE``.

Serves with ``Worker.run()`` (SIGTERM/SIGINT handling included). Its handler prints
``started <job id>`` and then sleeps ``data["seconds"]`` seconds; the ``gc`` handler returns
the garbage collector's thresholds and whether objects are frozen, as the handler sees them.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from jobbroker import JobContext, Worker


def main(address: str, queue: str) -> None:
    worker = Worker(queue, address=address, grace=10.0, wait=1.0)

    @worker.handler("sleep")
    async def sleep(ctx: JobContext) -> str:
        print(f"started {ctx.id}", flush=True)
        await asyncio.sleep(ctx.data["seconds"])
        return "finished"

    @worker.handler("gc")
    def collector(ctx: JobContext) -> dict[str, object]:
        return {"thresholds": list(gc.get_threshold()), "frozen": gc.get_freeze_count() > 0}

    worker.run()
    print("exited", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
