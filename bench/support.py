"""What the benchmarks share: a broker subprocess, preloading jobs, cleaning up a queue."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import grpc
import redis
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc


def broker_command(redis_url: str, *extra: str) -> list[str]:
    """``python -m jobbroker_broker`` on a free port over ``redis_url``, with ``extra`` flags."""
    return [
        sys.executable,
        "-m",
        "jobbroker_broker",
        "--port",
        "0",
        "--redis-url",
        redis_url,
        *extra,
    ]


def start_broker(
    command: list[str] | None = None, redis_url: str = ""
) -> tuple[subprocess.Popen[str], str]:
    """Start a broker process (by default :func:`broker_command`); returns it and the address it
    printed."""
    if command is None:
        command = broker_command(redis_url)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("broker did not start")


async def preload(address: str, queue: str, count: int) -> float:
    """Add `count` no-op jobs with AddBulk (1,000 per call); returns the seconds it took."""
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        body = job_pb2.Payload(body=b'{"n":1}')
        started = time.perf_counter()
        for start in range(0, count, 1000):
            batch = [
                job_service_pb2.BulkJob(name="noop", data=body)
                for _ in range(min(1000, count - start))
            ]
            await jobs.AddBulk(job_service_pb2.AddBulkRequest(queue=queue, jobs=batch))
        return time.perf_counter() - started


def remove_queue(redis_url: str, queue: str) -> None:
    """Delete the benchmark queue's keys and registry entry."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"jb:{{{queue}}}:*", count=10_000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.srem("jb:queues", queue)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc (Linux only)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CostMeter:
    """Load-insensitive costs of a run: CPU seconds of the broker process and of Redis, and
    Redis' own time per script call (INFO commandstats), between creation and per_job()."""

    def __init__(self, redis_url: str, broker_pid: int) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._pid = broker_pid
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, int, int]:
        cpu = self._redis.info("cpu")
        stats = self._redis.info("commandstats").get("cmdstat_evalsha", {})
        redis_cpu = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
        return process_cpu(self._pid), redis_cpu, stats.get("calls", 0), stats.get("usec", 0)

    def per_job(self, jobs: int) -> str:
        end = self._sample()
        broker, redis_cpu, calls, usec = (b - a for a, b in zip(self._start, end, strict=True))
        return (
            f"broker {broker / jobs * 1e6:.0f} us CPU, Redis {redis_cpu / jobs * 1e6:.0f} us CPU "
            f"(EVALSHA {usec / jobs:.1f} us in {calls} calls; whole Redis, other users included)"
        )
