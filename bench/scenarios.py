"""The five scenarios of the comparison table, run the same way for every peer, each side in
its own process: enqueue one at a time, with 100 in flight, in bulk; processing throughput of
one worker process; add-to-start latency at a paced rate.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cleanup import remove_run_keys
from bench.common import ProcessError, Processes, latency_summary

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
BULLMQ = ROOT / "bench" / "peers" / "bullmq"


@dataclass(frozen=True)
class PeerSpec:
    """How to start one peer's processes."""

    name: str
    command: tuple[str, ...]
    """The command before ``enqueue``/``work``."""
    setup: str
    """The worker's setup, for the table's legend."""


def peer_specs() -> dict[str, PeerSpec]:
    def python_peer(name: str, setup: str) -> PeerSpec:
        python = str(VENVS / name / "bin" / "python")
        return PeerSpec(name, (python, "-m", f"bench.peers.{name}_peer"), setup)

    return {
        "jobbroker": PeerSpec(
            "jobbroker",
            (sys.executable, "-m", "bench.peers.jobbroker_peer"),
            "broker process + Worker SDK process, concurrency 100",
        ),
        "bullmq": PeerSpec(
            "bullmq", ("node", str(BULLMQ / "bench.js")), "Node worker, concurrency 100"
        ),
        "arq": python_peer("arq", "max_jobs 100, poll_delay 10 ms"),
        "dramatiq": python_peer("dramatiq", "1 process, 8 threads"),
        "celery": python_peer("celery", "prefork, concurrency 2"),
        "rq": python_peer("rq", "SimpleWorker"),
    }


PEERS = ("jobbroker", "bullmq", "arq", "dramatiq", "celery", "rq")


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs: the full run and --quick."""

    enqueue_s: float
    process_limit_s: float
    latency_s: float
    rate: float = 200.0
    fast_rate: float = 2_000.0
    fast_s: float = 5.0
    progress_s: float = 5.0
    idle_s: float = 5.0
    subscribers: int = 1_000
    memory_jobs: int = 50_000
    two_broker_jobs: int = 40_000
    transport_s: float = 3.0

    @classmethod
    def full(cls) -> Sizes:
        return cls(enqueue_s=3.0, process_limit_s=15.0, latency_s=10.0)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            enqueue_s=0.4,
            process_limit_s=2.0,
            latency_s=1.0,
            fast_s=1.0,
            progress_s=1.0,
            idle_s=0.5,
            memory_jobs=5_000,
            two_broker_jobs=5_000,
            transport_s=0.7,
        )


@dataclass
class PeerResult:
    name: str
    values: dict[str, float | None] = field(default_factory=dict)
    """Column -> number; None: the library has no such API."""
    errors: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def ordered(names: Sequence[str]) -> list[str]:
    return [name for name in PEERS if name in names]


class PeerRunner:
    """Runs one peer's scenarios against one Redis (and, for jobbroker, one broker)."""

    def __init__(
        self,
        procs: Processes,
        spec: PeerSpec,
        redis_url: str,
        token: str,
        sizes: Sizes,
        address: str = "",
    ) -> None:
        self.procs = procs
        self.spec = spec
        self.redis_url = redis_url
        self.token = token
        self.sizes = sizes
        self.address = address
        self.queue = f"{token}-{spec.name}"
        """The queue of the enqueue and processing scenarios (the latency one adds "-lat")."""
        self.result = PeerResult(spec.name)
        self.filled = 0
        """Jobs the enqueue scenarios added so far, warm-up calls included."""

    def command(self, verb: str, queue: str, *extra: str) -> list[str]:
        command = [*self.spec.command, verb, "--queue", queue, "--redis-url", self.redis_url]
        if self.address:
            command += ["--address", self.address]
        return command + list(extra)

    def run(self, verb: str, queue: str, *extra: str, timeout: float = 120) -> dict[str, Any]:
        return self.procs.run(self.command(verb, queue, *extra), timeout=timeout, cwd=str(ROOT))

    def enqueue(self, queue: str, mode: str) -> dict[str, Any]:
        duration = str(self.sizes.enqueue_s)
        return self.run("enqueue", queue, "--mode", mode, "--duration", duration)

    def steps(self) -> list[Callable[[], None]]:
        """The scenarios in order, each filling ``self.result``. The enqueue scenarios fill the
        peer's queue, which the processing scenario then works off."""
        return [
            lambda: self.step_enqueue("seq"),
            lambda: self.step_enqueue("inflight"),
            lambda: self.step_enqueue("bulk"),
            self.step_processing,
            self.step_latency,
        ]

    def all(self) -> PeerResult:
        for step in self.steps():
            step()
        return self.result

    def step_enqueue(self, mode: str) -> None:
        try:
            answer = self.enqueue(self.queue, mode)
        except (ProcessError, KeyError) as exc:
            self.result.errors[mode] = str(exc)
            return
        if answer.get("unsupported"):
            self.result.values[mode] = None
            return
        self.filled += int(answer["count"]) + int(answer.get("warmup", 0))
        self.result.details["filled"] = self.filled
        self.result.values[mode] = answer["count"] / answer["seconds"]

    def step_processing(self) -> None:
        try:
            work = self.processing(self.queue, self.filled)
            self.result.values["processing"] = work["done"] / work["seconds"]
            self.result.details["processing"] = {"jobs": work["done"], "seconds": work["seconds"]}
        except (ProcessError, KeyError) as exc:
            self.result.errors["processing"] = str(exc)
        # What the worker left (past the time limit) goes now, not at the end of the run.
        remove_run_keys(self.redis_url, self.queue)

    def step_latency(self) -> None:
        try:
            latency = self.latency(f"{self.queue}-lat", self.sizes.rate, self.sizes.latency_s)
            self.result.values["p50"] = latency["add_to_start"]["p50_ms"]
            self.result.values["p99"] = latency["add_to_start"]["p99_ms"]
            self.result.details["latency"] = latency
        except (ProcessError, KeyError) as exc:
            self.result.errors["p50"] = self.result.errors["p99"] = str(exc)
        remove_run_keys(self.redis_url, self.queue)

    def processing(self, queue: str, count: int) -> dict[str, Any]:
        """One worker process on the jobs the enqueue scenarios left: from its start until
        ``count`` are done (or the time limit, then the jobs done by then)."""
        if count <= 0:
            raise ProcessError("nothing was enqueued to process")
        limit = self.sizes.process_limit_s
        args = ["--count", str(count), "--limit", str(limit)]
        return self.run("work", queue, *args, timeout=limit + 60)

    def latency(self, queue: str, rate: float, seconds: float) -> dict[str, Any]:
        """A paced producer (``rate`` jobs/s for ``seconds``) into a running worker: add-to-start
        (sent -> started) and pickup (add acknowledged -> started) per job."""
        count = max(1, int(rate * seconds))
        worker_command = self.command(
            "work", queue, "--count", str(count), "--limit", str(seconds * 3 + 10), "--record"
        )
        worker = self.procs.start(worker_command, cwd=str(ROOT))
        self.procs.wait_ready(worker, worker_command, timeout=60)
        time.sleep(1.0)  # connections up, first polls done: measure the steady state
        paced = self.run(
            "enqueue", queue, "--mode", "paced", "--rate", str(rate), "--count", str(count)
        )
        work = self.procs.finish(worker, worker_command, timeout=seconds * 3 + 60)
        report = latency_report(paced["sent"], work["starts"], count)
        report["rate"] = count / paced["seconds"]
        report["failed_adds"] = paced.get("failed", 0)
        return report


def latency_report(
    sent: list[list[float]], starts: list[list[float]], count: int
) -> dict[str, Any]:
    started = {int(i): t for i, t in starts}
    add_to_start: list[float] = []
    pickup: list[float] = []
    for i, sent_at, acked_at in sent:
        start = started.get(int(i))
        if start is not None:
            add_to_start.append(start - sent_at)
            pickup.append(start - acked_at)
    return {
        "jobs": count,
        "started": len(add_to_start),
        "add_to_start": latency_summary(add_to_start),
        "pickup": latency_summary(pickup),
    }


def missing(names: Sequence[str]) -> list[str]:
    """The selected peers whose setup is not there (bench/run makes it)."""
    absent = []
    for name in names:
        if name == "bullmq":
            if not (BULLMQ / "node_modules" / "bullmq").is_dir():
                absent.append(name)
        elif name != "jobbroker" and not os.access(VENVS / name / "bin" / "python", os.X_OK):
            absent.append(name)
    return absent
