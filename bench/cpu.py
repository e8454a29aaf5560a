"""CPU accounting for a measurement: how many microseconds of CPU each side spent per job.

- a process the runner started (the broker): user + system time from ``/proc/<pid>/stat``,
  before and after;
- Redis: ``used_cpu_user + used_cpu_sys`` of ``INFO cpu`` (the whole server: commands,
  connections, replies) and, beside it, ``INFO commandstats``: calls and microseconds per
  command. The servers are private to one peer (bench/redis_server.py), so all of it is that
  peer's. In Redis 7 a command a script runs is counted under its own name as well as in the
  EVALSHA's time, so the per-command lines overlap the EVALSHA line: they say where a script's
  time goes, and the EVALSHA line is the total;
- the worker process measures itself (``time.process_time()``, Node's ``process.cpuUsage()``)
  and reports it in its answer (bench/common.py, ``Recorder``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import redis

TOP_COMMANDS = 8
"""Commands listed per measurement, by time spent."""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process used so far; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load1() -> float:
    """The machine's 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


@dataclass
class RedisSample:
    cpu_s: float
    commands: dict[str, tuple[int, int]]
    """command -> (calls, usec)."""


def redis_sample(client: redis.Redis) -> RedisSample:
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    commands = {
        name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for name, value in stats.items()
    }
    return RedisSample(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), commands)


@dataclass
class Meter:
    """CPU of Redis and of some processes between :meth:`start` and :meth:`per_job`."""

    redis_url: str
    pids: dict[str, list[int]] = field(default_factory=dict)
    """A side's name ("broker") -> its processes."""
    _redis: RedisSample | None = None
    _cpu: dict[str, float] = field(default_factory=dict)

    def start(self) -> Meter:
        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            self._redis = redis_sample(client)
        self._cpu = {name: _sum_cpu(pids) for name, pids in self.pids.items()}
        return self

    def per_job(self, jobs: int, seconds: float) -> dict[str, Any]:
        """Microseconds of CPU per job of each side, and each side's share of one core over
        ``seconds``; Redis' commands by time spent."""
        assert self._redis is not None, "start() first"
        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            end = redis_sample(client)
        jobs = max(jobs, 1)
        seconds = max(seconds, 1e-9)
        out: dict[str, Any] = {}
        for name, pids in self.pids.items():
            used = _sum_cpu(pids) - self._cpu[name]
            out[name] = side(used, jobs, seconds)
        out["redis"] = side(end.cpu_s - self._redis.cpu_s, jobs, seconds)
        commands: list[dict[str, Any]] = []
        for name, (calls, usec) in end.commands.items():
            calls_before, usec_before = self._redis.commands.get(name, (0, 0))
            if calls > calls_before:
                commands.append(
                    {
                        "command": name,
                        "calls_per_job": (calls - calls_before) / jobs,
                        "us_per_job": (usec - usec_before) / jobs,
                        "us_per_call": (usec - usec_before) / (calls - calls_before),
                    }
                )
        commands.sort(key=lambda c: -float(c["us_per_job"]))
        out["redis_commands"] = commands[:TOP_COMMANDS]
        return out


def side(cpu_s: float, jobs: int, seconds: float) -> dict[str, float]:
    """One side's CPU: µs per job and percent of one core over the measurement."""
    return {"us_per_job": cpu_s / jobs * 1e6, "core_pct": 100 * cpu_s / seconds}


def _sum_cpu(pids: list[int]) -> float:
    return sum(process_cpu(pid) for pid in pids)
