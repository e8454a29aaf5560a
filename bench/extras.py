"""The measurements for jobbroker alone: pickup latency at 2,000 jobs/s, progress events through
the worker stream, idle StreamProgress subscribers, Redis memory per job, two brokers, the
durability option. Runs in the project's venv (the runner's process is the subscriber/client
side; broker and workers are their own processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import psutil
import redis
from jobbroker import AsyncClient, Event

from bench.common import Processes, latency_summary, now, run_loop
from bench.scenarios import ROOT, PeerRunner, Sizes, peer_specs

DURABILITY_FLAGS: tuple[str, ...] = ("--durability", "replicas", "--durability-replicas", "1")
"""The broker's flags for its durability option, measured against the default broker."""


def broker_command(redis_url: str, flags: Sequence[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "jobbroker_broker", "--port", "0", "--redis-url", redis_url]
    return command + list(flags)


def start_broker(
    procs: Processes, redis_url: str, flags: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], str]:
    return procs.start_server(broker_command(redis_url, flags), cwd=str(ROOT))


class Extras:
    def __init__(
        self, procs: Processes, redis_url: str, token: str, sizes: Sizes, address: str
    ) -> None:
        self.procs = procs
        self.redis_url = redis_url
        self.token = token
        self.sizes = sizes
        self.address = address
        self.broker_pid = 0

    def runner(self, address: str | None = None) -> PeerRunner:
        spec = peer_specs()["jobbroker"]
        return PeerRunner(
            self.procs, spec, self.redis_url, self.token, self.sizes, address or self.address
        )

    # --- pickup ---------------------------------------------------------------------------

    def pickup(self, rate: float, seconds: float) -> dict[str, Any]:
        queue = f"{self.token}-pickup-{int(rate)}"
        return self.runner().latency(queue, rate, seconds)

    # --- progress -------------------------------------------------------------------------

    def progress(self, jobs: int = 20) -> dict[str, Any]:
        """``jobs`` jobs report progress for ``progress_s`` seconds; this process follows all of
        them with StreamProgress and times each progress event from report to arrival."""
        queue = f"{self.token}-progress"
        return run_loop(self._progress(queue, jobs))

    async def _progress(self, queue: str, jobs: int) -> dict[str, Any]:
        seconds = self.sizes.progress_s
        arrivals: list[float] = []
        delays: list[float] = []
        async with AsyncClient(self.address) as client:
            added = await client.add_bulk(queue, [("progress", None)] * jobs)

            async def follow(job_id: str, subscribed: asyncio.Event) -> None:
                async for item in client.stream_progress(queue, job_id):
                    subscribed.set()
                    if isinstance(item, Event) and item.progress and item.progress.value:
                        arrived = now()
                        arrivals.append(arrived)
                        delays.append(arrived - float(item.progress.value["t"]))

            flags = [asyncio.Event() for _ in added]
            tasks = [
                asyncio.create_task(follow(a.job_id, flag))
                for a, flag in zip(added, flags, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), 30)
            command = [
                sys.executable,
                "-m",
                "bench.peers.jobbroker_progress",
                "--address",
                self.address,
                "--queue",
                queue,
                "--jobs",
                str(jobs),
                "--seconds",
                str(seconds),
            ]
            worker = await asyncio.to_thread(
                self.procs.run, command, timeout=seconds + 90, cwd=str(ROOT)
            )
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await client.obliterate(queue)
        span = (max(arrivals) - min(arrivals)) if len(arrivals) > 1 else float("nan")
        return {
            "jobs": jobs,
            "reports": worker["reports"],
            "events": len(delays),
            "events_per_s": len(delays) / span,
            "latency": latency_summary(delays),
        }

    # --- idle subscribers -----------------------------------------------------------------

    def idle_subscribers(self, broker_pid: int) -> dict[str, Any]:
        queue = f"{self.token}-idle"
        return run_loop(self._idle(queue, psutil.Process(broker_pid)))

    async def _idle(self, queue: str, broker: psutil.Process) -> dict[str, Any]:
        count = self.sizes.subscribers
        idle = self.sizes.idle_s
        clients = [AsyncClient(self.address) for _ in range(10)]
        tasks: list[asyncio.Task[None]] = []
        try:
            added = await clients[0].add_bulk(queue, [("idle", None)] * count)
            await asyncio.sleep(1.0)
            rss_before = broker.memory_info().rss
            cpu_before = await cpu_percent(broker, idle)
            flags = [asyncio.Event() for _ in added]

            async def follow(client: AsyncClient, job_id: str, subscribed: asyncio.Event) -> None:
                async for _ in client.stream_progress(queue, job_id):
                    subscribed.set()

            for n, (job, flag) in enumerate(zip(added, flags, strict=True)):
                client = clients[n % len(clients)]
                tasks.append(asyncio.create_task(follow(client, job.job_id, flag)))
            await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), 60)
            await asyncio.sleep(1.0)
            rss_after = broker.memory_info().rss
            cpu_after = await cpu_percent(broker, idle)
            return {
                "subscribers": count,
                "rss_before_mb": rss_before / 2**20,
                "rss_after_mb": rss_after / 2**20,
                "rss_delta_mb": (rss_after - rss_before) / 2**20,
                "cpu_idle_before_pct": cpu_before,
                "cpu_idle_after_pct": cpu_after,
            }
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await clients[0].obliterate(queue, force=True)
            for client in clients:
                await client.close()

    # --- Redis memory per job ---------------------------------------------------------------

    def memory(self) -> dict[str, Any]:
        queue = f"{self.token}-memory"
        jobs = self.sizes.memory_jobs
        r = redis.Redis.from_url(self.redis_url)
        try:
            before = used_memory(r)
            run_loop(self._fill(queue, jobs))
            waiting = used_memory(r)
            keys_waiting = queue_key_bytes(r, queue)
            work = self.runner().processing(queue, jobs)
            completed = used_memory(r)
            keys_completed = queue_key_bytes(r, queue)
            kept = run_loop(self._completed(queue))
            return {
                "jobs": jobs,
                "processed": work["done"],
                "kept_completed": kept,
                "per_waiting_job": (waiting - before) / jobs,
                "per_waiting_job_keys": keys_waiting / jobs,
                "per_completed_job": (completed - before) / max(kept, 1),
                "per_completed_job_keys": keys_completed / max(kept, 1),
            }
        finally:
            run_loop(self._obliterate(queue))
            r.close()

    async def _fill(self, queue: str, jobs: int, address: str | None = None) -> None:
        async with AsyncClient(address or self.address, timeout=60) as client:
            for start in range(0, jobs, 1000):
                batch = [
                    ("noop", {"i": i, "t": 0.0}) for i in range(start, min(jobs, start + 1000))
                ]
                await client.add_bulk(queue, batch)

    async def _completed(self, queue: str) -> int:
        async with AsyncClient(self.address) as client:
            return (await client.queue(queue)).counts.completed

    async def _obliterate(self, queue: str) -> None:
        async with AsyncClient(self.address, timeout=60) as client:
            with contextlib.suppress(Exception):
                await client.obliterate(queue, force=True)

    # --- brokers ----------------------------------------------------------------------------

    def scale(self, addresses: list[str]) -> dict[str, Any]:
        """Two worker processes, worker ``n`` on broker ``n % len(addresses)``, on a queue
        pre-filled with ``two_broker_jobs``: from the first worker's start until the queue's
        completed count reaches them all (polled every 10 ms)."""
        queue = f"{self.token}-scale{len(addresses)}"
        jobs = self.sizes.two_broker_jobs
        run_loop(self._fill(queue, jobs, ",".join(addresses)))
        limit = self.sizes.process_limit_s
        workers = []
        try:
            starts = []
            for n in range(2):
                runner = self.runner(addresses[n % len(addresses)])
                command = runner.command(
                    "work", queue, "--count", str(jobs * 2), "--limit", str(limit + 5)
                )
                proc = self.procs.start(command, cwd=str(ROOT))
                workers.append(proc)
                starts.append((proc, command))
            ready = [self.procs.wait_ready(proc, command, 60) for proc, command in starts]
            done, ended = run_loop(self._until_completed(queue, jobs, min(ready) + limit))
            seconds = ended - min(ready)
            return {"brokers": len(addresses), "workers": 2, "jobs": done, "seconds": seconds}
        finally:
            for proc in workers:
                self.procs.stop(proc)
                self.procs.forget(proc)
            run_loop(self._obliterate(queue))

    async def _until_completed(self, queue: str, jobs: int, deadline: float) -> tuple[int, float]:
        async with AsyncClient(self.address) as client:
            while True:
                done = (await client.queue(queue)).counts.completed
                if done >= jobs or now() > deadline:
                    return done, now()
                await asyncio.sleep(0.01)


async def cpu_percent(process: psutil.Process, seconds: float) -> float:
    """The process's CPU use over ``seconds``, in percent of one core."""
    before = process.cpu_times()
    started = now()
    await asyncio.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (now() - started)


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def queue_key_bytes(r: redis.Redis, queue: str) -> int:
    """``MEMORY USAGE`` summed over the queue's keys: what its jobs cost, whatever else the
    shared Redis is doing meanwhile."""
    total = 0
    keys = list(r.scan_iter(match=f"jb:{{{queue}}}:*", count=10_000))
    for start in range(0, len(keys), 1000):
        pipe = r.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        total += sum(int(size or 0) for size in pipe.execute())
    return total
