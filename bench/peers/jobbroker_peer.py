"""jobbroker as the suite drives it: the producer is the project's ``AsyncClient``, the worker
the project's ``Worker`` SDK (concurrency 100, an ``async def`` no-op handler), each in its own
process, against a broker process the runner started (``--address``). Runs in the project's
venv, on uvloop like ``Worker.run``.

    python -m bench.peers.jobbroker_peer enqueue|work --address HOST:PORT --queue Q ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jobbroker import AsyncClient, JobContext, JobOptions, Worker

from bench.common import Recorder, now, run_loop, say_ready
from bench.peers.protocol import Data, Peer, main

CONCURRENCY = 100
REMOVE = JobOptions(remove_on_complete=True)


class JobBroker(Peer):
    name = "jobbroker"
    is_async = True
    has_bulk = True
    has_remove_on_complete = True

    async def open(self) -> None:
        self.client = AsyncClient(self.args.address, timeout=60.0)

    async def close(self) -> None:
        await self.client.close()

    async def add(self, data: Data) -> None:
        if self.remove_on_complete:
            await self.client.add(self.queue, "noop", data, options=REMOVE)
        else:
            await self.client.add(self.queue, "noop", data)

    async def add_bulk(self, batch: list[Data]) -> None:
        if self.remove_on_complete:
            await self.client.add_bulk(self.queue, [("noop", data, REMOVE) for data in batch])
        else:
            await self.client.add_bulk(self.queue, [("noop", data) for data in batch])

    def work(self, recorder: Recorder) -> float:
        started: float = run_loop(self._work(recorder))
        return started

    async def _work(self, recorder: Recorder) -> float:
        logging.basicConfig(level=logging.WARNING)
        reached = asyncio.Event()
        recorder.on_done = reached.set
        concurrency = self.args.concurrency or CONCURRENCY
        worker = Worker(self.queue, address=self.args.address, concurrency=concurrency, grace=5)

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            recorder.hit(ctx.data)

        started = now()
        await worker.start()
        say_ready()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reached.wait(), self.args.limit)
        # Done means every outcome acknowledged (the jobs stored as completed), as BullMQ's
        # `completed` event: stop() waits for the acknowledgements of every job that ran (and
        # gives back the ones leased ahead), then the jobs done by then count. Waiting instead
        # for the worker to hold no lease never ends while the queue has more jobs: a worker
        # that leases ahead always holds the next batch.
        await worker.stop()
        if recorder.reached.is_set():
            recorder.finish()
        return started


if __name__ == "__main__":
    main(JobBroker)
