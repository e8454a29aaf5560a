"""The scenarios of the comparison table, run the same way for every peer, each side in its own
process, each peer on its own private Redis: enqueue one at a time, with 100 in flight, in
bulk; processing throughput of one worker process on the same prefilled count of jobs, with
completed jobs kept and again removed on complete, with each side's CPU per job; add-to-start
latency at a paced rate.
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
from bench.common import ProcessError, Processes, latency_summary, now, processing_fields
from bench.cpu import Meter, load1

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
COMPARED = ("jobbroker", "bullmq")
"""The pair the targets compare: processed with the same prefilled count, in both
removeOnComplete variants."""
VARIANTS = (("processing", False), ("processing_removed", True))
"""The processing scenario's columns: completed jobs kept (every library's default), and
removed on complete."""


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs: the full run and --quick."""

    enqueue_s: float
    process_limit_s: float
    latency_s: float
    process_jobs: int = 50_000
    """Jobs prefilled for the processing scenario of jobbroker and BullMQ (the same count)."""
    slow_process_jobs: int = 15_000
    """Jobs prefilled for the Python peers, which run under 2,000 jobs/s and stop at the time
    limit anyway (filling 50,000 one add at a time would take Celery a minute)."""
    rate: float = 200.0
    fast_rate: float = 2_000.0
    fast_s: float = 5.0
    progress_s: float = 5.0
    idle_s: float = 5.0
    subscribers: int = 1_000
    memory_jobs: int = 50_000
    scale_jobs: int = 40_000
    """Jobs prefilled for each point of the scale curve (worker processes x brokers)."""
    transport_s: float = 3.0
    backlog_jobs: tuple[int, ...] = (20_000, 1_000_000)
    """Waiting jobs in the backlog measurement: the rate over the first ``backlog_measure``
    jobs processed must not fall as the backlog grows."""
    backlog_large_payload_jobs: tuple[int, ...] = (20_000, 100_000)
    """The same with ``payload_bytes`` payloads (1,000,000 of them would be 10 GB of Redis)."""
    backlog_measure: int = 20_000
    payload_bytes: int = 10_240

    @classmethod
    def full(cls) -> Sizes:
        return cls(enqueue_s=3.0, process_limit_s=15.0, latency_s=10.0)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            enqueue_s=0.4,
            process_limit_s=5.0,
            latency_s=1.0,
            process_jobs=5_000,
            slow_process_jobs=1_000,
            fast_s=1.0,
            progress_s=1.0,
            idle_s=0.5,
            memory_jobs=5_000,
            scale_jobs=5_000,
            transport_s=0.7,
            backlog_jobs=(2_000, 20_000),
            backlog_large_payload_jobs=(2_000, 5_000),
            backlog_measure=2_000,
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
    """Runs one peer's scenarios against its private Redis (and, for jobbroker, one broker)."""

    def __init__(
        self,
        procs: Processes,
        spec: PeerSpec,
        redis_url: str,
        token: str,
        sizes: Sizes,
        address: str = "",
        broker_pids: Sequence[int] = (),
    ) -> None:
        self.procs = procs
        self.spec = spec
        self.redis_url = redis_url
        self.token = token
        self.sizes = sizes
        self.address = address
        self.broker_pids = list(broker_pids)
        """The broker processes whose CPU a processing measurement counts (jobbroker)."""
        self.queue = f"{token}-{spec.name}"
        """The queues of this peer's scenarios start with this name."""
        self.result = PeerResult(spec.name)

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

    def fill(
        self, queue: str, count: int, remove_on_complete: bool = False, payload_bytes: int = 0
    ) -> dict[str, Any]:
        """Add exactly ``count`` jobs (in bulk where the library can)."""
        extra = ["--mode", "fill", "--count", str(count)]
        if remove_on_complete:
            extra.append("--remove-on-complete")
        if payload_bytes:
            extra += ["--payload-bytes", str(payload_bytes)]
        return self.run("enqueue", queue, *extra, timeout=max(120, count / 500))

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The scenarios in order (title, action), each filling ``self.result``."""
        return [
            ("enqueue 1 by 1", lambda: self.step_enqueue("seq")),
            ("enqueue 100 in flight", lambda: self.step_enqueue("inflight")),
            ("bulk enqueue", lambda: self.step_enqueue("bulk")),
            ("processing, completed kept", lambda: self.step_processing(*VARIANTS[0])),
            ("processing, removed on complete", lambda: self.step_processing(*VARIANTS[1])),
            ("latency", self.step_latency),
        ]

    def all(self) -> PeerResult:
        for _, step in self.steps():
            step()
        return self.result

    def note_load(self, key: str) -> None:
        """The machine's load average as the measurement of ``key`` starts."""
        self.result.details.setdefault("load", {})[key] = load1()

    def step_enqueue(self, mode: str) -> None:
        queue = f"{self.queue}-{mode}"
        self.note_load(mode)
        try:
            answer = self.enqueue(queue, mode)
        except (ProcessError, KeyError) as exc:
            self.result.errors[mode] = str(exc)
            return
        finally:
            # The jobs added here are not processed: the processing scenario fills its own.
            remove_run_keys(self.redis_url, queue)
        if answer.get("unsupported"):
            self.result.values[mode] = None
            return
        self.result.values[mode] = answer["count"] / answer["seconds"]

    def process_count(self) -> int:
        if self.spec.name in COMPARED:
            return self.sizes.process_jobs
        return self.sizes.slow_process_jobs

    def step_processing(self, key: str, remove_on_complete: bool) -> None:
        """Fill the same count of jobs for the peer, then time one worker process on them."""
        queue = f"{self.queue}-{'removed' if remove_on_complete else 'kept'}"
        try:
            count = self.process_count()
            filled = self.fill(queue, count, remove_on_complete)
            if filled.get("unsupported"):
                return  # not measured: the column shows "-"
            self.note_load(key)
            figures = self.processing(queue, count)
            self.result.values[key] = figures["from_start"]
            self.result.details[key] = figures
        except (ProcessError, KeyError) as exc:
            self.result.errors[key] = str(exc)
        finally:
            remove_run_keys(self.redis_url, queue)

    def processing(self, queue: str, count: int) -> dict[str, Any]:
        """One worker process on a queue holding ``count`` jobs: the figures of
        :func:`bench.common.processing_fields`, and the CPU per job of Redis and the broker
        (``broker_pids``) from the worker's spawn to its exit. A worker that had not done them
        all by the time limit gives the jobs done by then."""
        limit = self.sizes.process_limit_s
        command = self.command("work", queue, "--count", str(count), "--limit", str(limit))
        meter = Meter(self.redis_url, {"broker": self.broker_pids} if self.broker_pids else {})
        meter.start()
        spawned = now()
        answer = self.procs.finish(
            self.procs.start(command, cwd=str(ROOT)), command, timeout=limit + 60
        )
        exited = now()
        figures = processing_fields(answer, spawned)
        figures["cpu"] = meter.per_job(figures["jobs"], exited - spawned)
        figures["load"] = load1()
        return figures

    def step_latency(self) -> None:
        self.note_load("p50")
        try:
            latency = self.latency(f"{self.queue}-lat", self.sizes.rate, self.sizes.latency_s)
            self.result.values["p50"] = latency["add_to_start"]["p50_ms"]
            self.result.values["p99"] = latency["add_to_start"]["p99_ms"]
            self.result.details["latency"] = latency
        except (ProcessError, KeyError) as exc:
            self.result.errors["p50"] = self.result.errors["p99"] = str(exc)
        remove_run_keys(self.redis_url, f"{self.queue}-lat")

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
        load = load1()
        paced = self.run(
            "enqueue", queue, "--mode", "paced", "--rate", str(rate), "--count", str(count)
        )
        work = self.procs.finish(worker, worker_command, timeout=seconds * 3 + 60)
        report = latency_report(paced["sent"], work["starts"], count)
        report["rate"] = count / paced["seconds"]
        report["failed_adds"] = paced.get("failed", 0)
        report["load"] = load
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
