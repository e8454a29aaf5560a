"""arq as the suite drives it: ``ArqRedis.enqueue_job`` (no bulk API) and one ``Worker`` with
``max_jobs=100, poll_delay=10 ms`` (its defaults otherwise), in bench/.venvs/arq.

    python -m bench.peers.arq_peer enqueue|work --queue Q --redis-url URL ...
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from arq import Worker, create_pool, func
from arq.connections import ArqRedis, RedisSettings

from bench.common import Recorder, now, say_ready
from bench.peers.protocol import Data, Peer, main


class Arq(Peer):
    name = "arq"
    is_async = True

    async def open(self) -> None:
        settings = RedisSettings.from_dsn(self.redis_url)
        self.pool: ArqRedis = await create_pool(settings, default_queue_name=self.queue)

    async def close(self) -> None:
        await self.pool.aclose()

    async def add(self, data: Data) -> None:
        # Job ids carry the queue's name so that the run's cleanup finds their keys.
        await self.pool.enqueue_job("noop", data, _job_id=f"{self.queue}-{uuid.uuid4().hex}")

    def work(self, recorder: Recorder) -> float:
        started: float = asyncio.run(self._work(recorder))
        return started

    async def _work(self, recorder: Recorder) -> float:
        reached = asyncio.Event()
        recorder.on_done = reached.set

        async def noop(ctx: dict[str, Any], data: Data) -> None:
            recorder.hit(data)

        async def on_startup(ctx: dict[str, Any]) -> None:
            say_ready()

        started = now()
        worker = Worker(
            functions=[func(noop, name="noop")],
            queue_name=self.queue,
            redis_settings=RedisSettings.from_dsn(self.redis_url),
            max_jobs=self.args.concurrency or 100,
            poll_delay=0.01,
            handle_signals=False,
            health_check_key=f"{self.queue}:health-check",
            on_startup=on_startup,
        )
        main_task = asyncio.create_task(worker.async_run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reached.wait(), self.args.limit)
        main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main_task
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()  # cancels the jobs started after the count was reached
        return started


if __name__ == "__main__":
    main(Arq)
