"""Bulk queue operations on a large queue: how long one Redis script call of each takes.

    python bench/bulk_ops.py [--jobs 1000000] [--in-flight 4] [--redis-url URL]

Without --redis-url it starts a private redis-server (no persistence) on a free port. A broker
runs in-process. The queue is filled with AddBulk (1,000 jobs per call, several calls in
flight), then each bulk operation runs over the whole queue:

- CleanQueue (waiting, limit 100,000) and DrainQueue on `--jobs` waiting jobs;
- PromoteDelayedJobs on `--jobs` delayed jobs;
- RetryFailedJobs on `--jobs` failed jobs (added with a 1 ms lifespan, so leasing or the
  maintenance loop fails them as EXPIRED).

The slow log is switched on (`slowlog-log-slower-than 0`) only while a bulk operation runs, so
every command of that operation lands in it; the longest and mean EVALSHA of the operation's own
script are reported, with the number of calls. Redis also logs each command a script runs, so
one operation can log millions of entries: `slowlog-max-len` is raised to SLOWLOG_LEN and the run
fails if the log filled up (some calls would then be missing). Memory per waiting job is
`used_memory` after the fill minus before, divided by the number of jobs (the slow log is off
during fills, so it does not count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from typing import Any

import grpc
import redis
from jobbroker.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_service_pb2,
    queue_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from jobbroker_broker.storage.scripts import load_script

Q = queue_service_pb2
BULK = 1_000
SLOWLOG_LEN = 10_000_000  # every command of one operation, scripts' own commands included


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH; pass --redis-url")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return process, url


class Bench:
    def __init__(self, r: redis.Redis, channel: grpc.aio.Channel, jobs: int, in_flight: int):
        self.r = r
        self.jobs_stub = job_service_pb2_grpc.JobServiceStub(channel)
        self.queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        self.n = jobs
        self.in_flight = in_flight
        self.results: dict[str, Any] = {}

    async def fill(self, queue: str, **options: Any) -> float:
        """Add `n` jobs, BULK per call, `in_flight` calls at once; return the seconds taken."""
        started = time.monotonic()
        starts = iter(range(0, self.n, BULK))
        opts = job_pb2.JobOptions(**options)

        async def sender() -> None:
            for start in starts:
                jobs = [
                    job_service_pb2.BulkJob(
                        name="bulk",
                        data=job_pb2.Payload(body=json.dumps({"i": i}).encode()),
                        options=opts,
                    )
                    for i in range(start, min(self.n, start + BULK))
                ]
                await self.jobs_stub.AddBulk(
                    job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs), timeout=60
                )

        await asyncio.gather(*(sender() for _ in range(self.in_flight)))
        return time.monotonic() - started

    async def counts(self, queue: str) -> Q.JobCounts:
        return (await self.queues.GetQueue(Q.GetQueueRequest(queue=queue))).queue.counts

    def slowest(self, script: str) -> dict[str, Any]:
        """Longest call of `script` in the slow log since the last reset (microseconds)."""
        sha = load_script(script).sha.encode()
        durations = [
            entry["duration"]
            for entry in self.r.slowlog_get(SLOWLOG_LEN)
            if entry["command"].split(b" ")[:2] == [b"EVALSHA", sha]
        ]
        return {
            "calls": len(durations),
            "max_ms": max(durations, default=0) / 1000,
            "mean_ms": round(sum(durations) / len(durations) / 1000, 3) if durations else 0.0,
        }

    async def measure(self, label: str, script: str, call: Any) -> None:
        self.r.slowlog_reset()
        self.r.config_set("slowlog-log-slower-than", 0)
        started = time.monotonic()
        reply = await call
        seconds = time.monotonic() - started
        self.r.config_set("slowlog-log-slower-than", -1)
        logged = self.r.slowlog_len()
        if logged >= SLOWLOG_LEN:
            raise SystemExit(f"{label}: slow log full ({logged} entries); raise SLOWLOG_LEN")
        stats = self.slowest(script)
        stats["slowlog_entries"] = logged
        summary = " ".join(str(reply).split())[:40]
        self.results[label] = {"reply": summary, "seconds": round(seconds, 2), **stats}
        print(f"{label}: {self.results[label]}", flush=True)

    async def run(self) -> None:
        queue = f"bench-bulk-{uuid.uuid4().hex[:8]}"
        # --- waiting jobs: memory, clean, drain
        before = self.r.info("memory")["used_memory"]
        seconds = await self.fill(queue)
        after = self.r.info("memory")["used_memory"]
        assert (await self.counts(queue)).waiting == self.n
        self.results["fill_waiting_s"] = round(seconds, 1)
        self.results["adds_per_s"] = round(self.n / seconds)
        self.results["bytes_per_waiting_job"] = round((after - before) / self.n)
        print(
            f"filled {self.n} waiting in {seconds:.1f}s; {(after - before) / self.n:.0f} bytes/job",
            flush=True,
        )
        await self.measure(
            "CleanQueue(waiting, limit 100000)",
            "clean",
            self.queues.CleanQueue(
                Q.CleanQueueRequest(queue=queue, state=job_pb2.JOB_STATE_WAITING, limit=100_000)
            ),
        )
        self.results["CleanQueue(waiting, limit 100000)"]["reply"] = "100000 ids"
        await self.measure(
            "DrainQueue", "drain", self.queues.DrainQueue(Q.DrainQueueRequest(queue=queue))
        )
        # --- delayed jobs: promote
        await self.fill(queue, delay_ms=3_600_000)
        await self.measure(
            "PromoteDelayedJobs",
            "promote_delayed",
            self.queues.PromoteDelayedJobs(Q.PromoteDelayedJobsRequest(queue=queue)),
        )
        await self.queues.DrainQueue(Q.DrainQueueRequest(queue=queue, include_delayed=True))
        # --- failed jobs: retry. A 1 ms lifespan makes every job fail EXPIRED on its way out.
        await self.fill(queue, lifespan_ms=1)
        while (await self.counts(queue)).failed < self.n:
            await self.workers.Lease(
                worker_service_pb2.LeaseRequest(queue=queue, worker_id="bench", max_jobs=1_000)
            )
        await self.measure(
            "RetryFailedJobs",
            "retry_failed",
            self.queues.RetryFailedJobs(Q.RetryFailedJobsRequest(queue=queue)),
        )
        await self.queues.ObliterateQueue(Q.ObliterateQueueRequest(queue=queue, force=True))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()

    process = None
    workdir = tempfile.mkdtemp(prefix="jb-bulk-")
    url = args.redis_url
    if not url:
        process, url = start_redis(workdir)
    r = redis.Redis.from_url(url)
    old = r.config_get("slowlog-*")
    r.config_set("slowlog-log-slower-than", -1)  # on only while an operation is measured
    r.config_set("slowlog-max-len", SLOWLOG_LEN)
    broker = Broker(replace(Settings(), port=0, redis_url=url))
    port = await broker.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            bench = Bench(r, channel, args.jobs, args.in_flight)
            await bench.run()
        print(f"machine: {os.cpu_count()} cores; redis {r.info('server')['redis_version']}")
        print(json.dumps(bench.results, indent=2))
    finally:
        await broker.stop(1.0)
        for key, value in old.items():
            r.config_set(key, value)
        r.close()
        if process is not None:
            process.terminate()
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
