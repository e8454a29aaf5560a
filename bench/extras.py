"""The measurements beyond the table, mostly of jobbroker alone: pickup latency at 2,000 jobs/s,
progress events through the worker stream, idle StreamProgress subscribers, Redis memory per
job, the scale curve (worker processes x brokers), the backlog (processing with a short and a
long waiting list), one Add RPC per job against the bare unary floor, the durability option.
Runs in the project's venv (the runner's process is the subscriber/client side; broker and
workers are their own processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil
import redis
from jobbroker import AsyncClient, Event
from jobbroker_broker.storage.keys import QueueKeys

from bench.common import Processes, latency_summary, now, run_loop
from bench.cpu import Meter, load1, process_cpu
from bench.redis_server import RedisServer, RedisServers
from bench.scenarios import ROOT, PeerRunner, Sizes, peer_specs
from bench.support import broker_command

DURABILITY_FLAGS: tuple[str, ...] = ("--durability", "replicas", "--durability-replicas", "1")
"""The broker's flags for its durability option, measured against the default broker."""

BACKLOG_ROUNDS = 3
"""Interleaved rounds of the backlog measurement: one round of 20,000 jobs lasts about a second,
and single rounds moved the ratio by +-0.08 from run to run."""


def start_broker(
    procs: Processes, redis_url: str, flags: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], str]:
    return procs.start_server(broker_command(redis_url, *flags), cwd=str(ROOT))


class Extras:
    def __init__(
        self,
        procs: Processes,
        redis_url: str,
        token: str,
        sizes: Sizes,
        address: str,
        broker_pid: int = 0,
    ) -> None:
        self.procs = procs
        self.redis_url = redis_url
        self.token = token
        self.sizes = sizes
        self.address = address
        self.broker_pid = broker_pid

    def runner(
        self, address: str | None = None, redis_url: str | None = None, pids: Sequence[int] = ()
    ) -> PeerRunner:
        spec = peer_specs()["jobbroker"]
        return PeerRunner(
            self.procs,
            spec,
            redis_url or self.redis_url,
            self.token,
            self.sizes,
            address or self.address,
            pids or ([self.broker_pid] if self.broker_pid else []),
        )

    # --- pickup ---------------------------------------------------------------------------

    def pickup(
        self, rate: float, seconds: float, runner: PeerRunner | None = None
    ) -> dict[str, Any]:
        """Latency at ``rate`` jobs/s, of jobbroker or of the peer ``runner`` runs."""
        runner = runner or self.runner()
        queue = f"{runner.queue}-pickup-{int(rate)}"
        return runner.latency(queue, rate, seconds)

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
                "processed": work["jobs"],
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

    # --- the scale curve ------------------------------------------------------------------

    def scale(self, workers: int, addresses: list[str], broker_pids: list[int]) -> dict[str, Any]:
        """``workers`` worker processes, worker ``n`` on broker ``n % len(addresses)``, on a
        queue prefilled with ``scale_jobs``: from the first worker's start until the queue's
        completed count reaches them all (Redis polled every 10 ms). Beside it, the rate and
        each side's CPU (µs per job, share of a core) over the window in which every worker
        was running: the brokers, the workers, Redis."""
        queue = f"{self.token}-scale-{workers}w{len(addresses)}b"
        jobs = self.sizes.scale_jobs
        load = load1()
        run_loop(self._fill(queue, jobs, ",".join(addresses)))
        limit = self.sizes.process_limit_s
        procs = []
        completed_key = QueueKeys(queue).key("completed")
        r = redis.Redis.from_url(self.redis_url)
        try:
            starts = []
            for n in range(workers):
                runner = self.runner(addresses[n % len(addresses)])
                command = runner.command(
                    "work", queue, "--count", str(jobs * 2), "--limit", str(limit + 5)
                )
                proc = self.procs.start(command, cwd=str(ROOT))
                procs.append(proc)
                starts.append((proc, command))
            ready = [self.procs.wait_ready(proc, command, 60) for proc, command in starts]
            meter = Meter(
                self.redis_url, {"brokers": broker_pids, "workers": [p.pid for p in procs]}
            )
            meter.start()
            window_start, window_done = now(), int(r.zcard(completed_key))
            deadline = min(ready) + limit
            while True:
                done = int(r.zcard(completed_key))
                if done >= jobs or now() > deadline:
                    break
                time.sleep(0.01)
            ended = now()
            cpu = meter.per_job(done - window_done, ended - window_start)
            return {
                "workers": workers,
                "brokers": len(addresses),
                "jobs": done,
                "seconds": ended - min(ready),
                "per_s": done / (ended - min(ready)),
                "window_per_s": (done - window_done) / max(ended - window_start, 1e-9),
                "cpu": cpu,
                "load": load,
            }
        finally:
            r.close()
            for proc in procs:
                self.procs.stop(proc)
                self.procs.forget(proc)
            run_loop(self._obliterate(queue))

    # --- the backlog -----------------------------------------------------------------------

    def backlog(
        self,
        servers: RedisServers,
        sizes: Sequence[int],
        payload_bytes: int = 0,
        peer: str = "jobbroker",
        rounds: int = BACKLOG_ROUNDS,
    ) -> dict[int, dict[str, Any]]:
        """One worker process working off ``backlog_measure`` jobs from a queue holding each
        of ``sizes`` waiting jobs (``payload_bytes`` of padding each), every size on a fresh
        private Redis (and, for jobbroker, broker) of its own, all of them running at once.

        The sizes are measured in ``rounds`` interleaved rounds (the order reversed every other
        round), so that the machine's drift over the minutes of a run falls on every size alike;
        before each round the jobs the last one took are added again, untimed, so every round
        starts with the queue at its size. Per size: the figures of its
        median round (by ``steady``), with every round's rate beside them. ``peer`` bullmq: the
        same for BullMQ, as the reference for what Redis itself does with a long backlog."""
        points: dict[int, _BacklogPoint] = {}
        try:
            for waiting in sizes:
                point = points[waiting] = _BacklogPoint(servers, waiting, payload_bytes, peer)
                point.start(self)
            order = list(sizes)
            for round_index in range(rounds):
                for waiting in order if round_index % 2 == 0 else order[::-1]:
                    points[waiting].measure(self.sizes.backlog_measure)
            return {waiting: point.summary() for waiting, point in points.items()}
        finally:
            for point in points.values():
                point.close(self.procs)

    # --- one Add RPC per job against the bare unary floor -------------------------------------

    def unary(self) -> dict[str, Any]:
        """The bare grpc.aio unary floor (64 and 100 in flight), then one ``Add`` RPC per job
        from raw stubs with 100 in flight, back to back, each with the CPU per call of the
        server (echo / broker) and the client."""
        out: dict[str, Any] = {"load": load1()}
        queue = f"{self.token}-add-rpc"
        add = ["add", "--address", self.address, "--queue", queue]
        proc, echo = self.procs.start_server([sys.executable, "-m", "bench.transport", "serve"])
        try:
            for in_flight in (64, 100):
                out[str(in_flight)] = self._calls(
                    ["call", "--address", echo], in_flight, {"server": [proc.pid]}
                )
            out["add_rpc"] = self._calls(add, 100, {"server": [self.broker_pid]})
            # The latency of one call at a time, paced: a bare unary call and one Add.
            count = str(max(1, int(self.sizes.rate * self.sizes.transport_s)))
            paced = ["--rate", str(self.sizes.rate), "--count", count]
            for key, args in (
                ("echo_paced", ["call", "--address", echo]),
                ("add_paced", add),
                ("client_add_paced", [*add, "--client"]),
            ):
                command = [sys.executable, "-m", "bench.transport", *args, *paced]
                answer = self.procs.run(command, timeout=120, cwd=str(ROOT))
                out[key] = answer["latency"]
        finally:
            self.procs.stop(proc)
            self.procs.forget(proc)
            run_loop(self._obliterate(queue))
        return out

    def _calls(self, args: list[str], in_flight: int, pids: dict[str, list[int]]) -> dict[str, Any]:
        seconds = self.sizes.transport_s
        command = [sys.executable, "-m", "bench.transport", *args]
        command += ["--in-flight", str(in_flight), "--duration", str(seconds)]
        before = {name: sum(process_cpu(pid) for pid in group) for name, group in pids.items()}
        answer = self.procs.run(command, timeout=seconds + 60, cwd=str(ROOT))
        calls = max(int(answer["count"]), 1)
        result = {
            "per_s": answer["count"] / answer["seconds"],
            "client_us_per_call": answer["cpu_s"] / calls * 1e6,
        }
        for name, group in pids.items():
            used = sum(process_cpu(pid) for pid in group) - before[name]
            result[f"{name}_us_per_call"] = used / calls * 1e6
        return result


async def cpu_percent(process: psutil.Process, seconds: float) -> float:
    """The process's CPU use over ``seconds``, in percent of one core."""
    before = process.cpu_times()
    started = now()
    await asyncio.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return float(100 * used / (now() - started))


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


class _BacklogPoint:
    """One backlog size of :meth:`Extras.backlog`: its private Redis (and broker), its queue,
    and its rounds."""

    def __init__(self, servers: RedisServers, waiting: int, payload_bytes: int, peer: str) -> None:
        self.servers = servers
        self.waiting, self.payload_bytes, self.peer = waiting, payload_bytes, peer
        self.name = f"backlog-{peer}-{waiting}-{payload_bytes}"
        self.server: RedisServer | None = None
        self.broker: subprocess.Popen[str] | None = None
        self.runner: PeerRunner | None = None
        self.fill_per_s = self.memory_mb = 0.0
        """The first fill's rate, and Redis' memory with the queue full."""
        self.left = 0
        """Jobs waiting in the queue now."""
        self.rounds: list[dict[str, Any]] = []

    def start(self, extras: Extras) -> None:
        """Start its Redis (and broker) and fill its queue."""
        self.server = self.servers.start(self.name)
        if self.peer == "jobbroker":
            self.broker, address = start_broker(extras.procs, self.server.url)
            self.runner = extras.runner(address, self.server.url, [self.broker.pid])
        else:
            spec = peer_specs()[self.peer]
            self.runner = PeerRunner(
                extras.procs, spec, self.server.url, extras.token, extras.sizes
            )
        self.fill_per_s = self._fill(self.waiting)
        with contextlib.closing(self.server.client()) as client:
            self.memory_mb = used_memory(client) / 2**20

    def _queue(self, runner: PeerRunner) -> str:
        return f"{runner.queue}-{self.name}"

    def _fill(self, count: int) -> float:
        """Add ``count`` jobs; their rate."""
        assert self.runner is not None
        filled = self.runner.fill(self._queue(self.runner), count, payload_bytes=self.payload_bytes)
        self.left += count
        return float(filled["count"] / filled["seconds"])

    def measure(self, measure: int) -> None:
        assert self.runner is not None
        if self.left < self.waiting:
            self._fill(self.waiting - self.left)  # untimed: every round starts at the full size
        figures = self.runner.processing(self._queue(self.runner), min(self.left, measure))
        figures["waiting"] = self.left
        self.left -= figures["jobs"]
        self.rounds.append(figures)

    def summary(self) -> dict[str, Any]:
        ranked = sorted(self.rounds, key=lambda figures: figures["steady"])
        figures = dict(ranked[len(ranked) // 2])
        figures["peer"] = self.peer
        figures["waiting"] = self.waiting
        figures["waiting_per_round"] = [r["waiting"] for r in self.rounds]
        figures["steady_per_round"] = [r["steady"] for r in self.rounds]
        figures["payload_bytes"] = self.payload_bytes
        figures["fill_per_s"] = self.fill_per_s
        figures["redis_used_memory_mb"] = self.memory_mb
        return figures

    def close(self, procs: Processes) -> None:
        """Stop its broker and Redis, however far :meth:`start` got."""
        if self.broker is not None:
            procs.stop(self.broker)
            procs.forget(self.broker)
        if self.server is not None:
            self.servers.stop(self.name)
