"""Smoke test of the benchmark suite: a few seconds of each scenario on private Redis servers
the suite starts, checking that the numbers are real (every job accounted for, every side's
CPU counted, each peer on its own server), never how fast. BullMQ's side runs when Node is
installed (its node_modules are installed as ``bench/run`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bench import report
from bench.cleanup import new_token
from bench.common import Processes, percentile
from bench.extras import Extras, start_broker
from bench.redis_server import RedisServer, RedisServers
from bench.scenarios import BULLMQ, PeerResult, PeerRunner, Sizes, peer_specs
from bench.suite import Run, durability, parse

SIZES = Sizes(
    enqueue_s=0.3,
    process_limit_s=30.0,
    latency_s=0.5,
    process_jobs=400,
    slow_process_jobs=100,
    rate=100.0,
    fast_s=0.5,
    progress_s=0.5,
    idle_s=0.2,
    subscribers=50,
    memory_jobs=300,
    scale_jobs=300,
    transport_s=0.3,
    backlog_jobs=(200, 600),
    backlog_large_payload_jobs=(100,),
    backlog_measure=200,
    payload_bytes=10_240,
)


@dataclass
class Bench:
    procs: Processes
    servers: RedisServers
    server: RedisServer
    address: str
    broker_pid: int
    token: str

    def runner(self, peer: str = "jobbroker", server: RedisServer | None = None) -> PeerRunner:
        spec = peer_specs()[peer]
        if peer == "jobbroker":
            return PeerRunner(
                self.procs,
                spec,
                self.server.url,
                self.token,
                SIZES,
                self.address,
                [self.broker_pid],
            )
        assert server is not None
        return PeerRunner(self.procs, spec, server.url, self.token, SIZES)


@pytest.fixture
def bench() -> Iterator[Bench]:
    """jobbroker's private Redis and a broker on it; afterwards every process is gone and
    every server's scratch directory deleted (which the tests check)."""
    procs = Processes()
    servers = RedisServers()
    try:
        server = servers.start("jobbroker")
        broker, address = start_broker(procs, server.url)
        yield Bench(procs, servers, server, address, broker.pid, new_token())
    finally:
        procs.kill_all()
        directories = [s.directory for s in servers.servers.values()]
        servers.stop_all()
        assert not any(d.exists() for d in directories)


@pytest.fixture(scope="session")
def bullmq_installed() -> None:
    """BullMQ's node_modules, installed as bench/run does (npm ci from the lock file)."""
    if (BULLMQ / "node_modules" / "bullmq").is_dir():
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("BullMQ's side needs Node and npm")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BULLMQ,
        check=True,
        timeout=300,
    )


def test_private_redis_has_no_persistence_and_leaves_nothing() -> None:
    servers = RedisServers()
    server = servers.start("peer")
    client = server.client()
    try:
        assert server.port != 6379
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert Path(client.config_get("dir")["dir"]) == server.directory.resolve()
        client.set("k", "v")
    finally:
        client.close()
        servers.stop_all()
    assert not server.directory.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, socket_connect_timeout=0.5).ping()


def test_each_peer_of_a_run_gets_its_own_private_redis() -> None:
    run = Run(parse(["--only", "jobbroker,bullmq"]), SIZES)
    try:
        run.start()
        urls = {name: run.url(name) for name in ("jobbroker", "bullmq")}
        assert len(set(urls.values())) == 2
        assert not any(":6379/" in url for url in urls.values())
        runners = {r.spec.name: r for r in run.runners()}
        assert runners["jobbroker"].redis_url == urls["jobbroker"]
        assert runners["bullmq"].redis_url == urls["bullmq"]
        assert runners["jobbroker"].broker_pids == [run.broker_pid]
    finally:
        run.stop()
    assert run.servers.servers == {}


def test_table_scenarios_account_for_every_job(bench: Bench) -> None:
    result = bench.runner().all()
    assert result.errors == {}
    for column in ("seq", "inflight", "bulk", "processing", "processing_removed"):
        value = result.values[column]
        assert value is not None
        assert value > 0
        assert math.isfinite(value)
    for key in ("processing", "processing_removed"):
        figures = result.details[key]
        # Every job of the prefilled count, the same count as BullMQ's.
        assert figures["jobs"] == SIZES.process_jobs
        assert 0 < figures["from_start"] < figures["from_ready"]
        assert figures["start_s"] > 0
        assert figures["worker_us_per_job"] > 0
        assert figures["cpu"]["broker"]["us_per_job"] > 0
        assert figures["cpu"]["redis"]["us_per_job"] > 0
        commands = {c["command"] for c in figures["cpu"]["redis_commands"]}
        assert "evalsha" in commands
    assert set(result.details["load"]) >= {"seq", "processing", "processing_removed", "p50"}
    latency = result.details["latency"]
    assert latency["failed_adds"] == 0
    assert latency["started"] == latency["jobs"] == int(SIZES.rate * SIZES.latency_s)
    assert latency["add_to_start"]["samples"] == latency["jobs"]
    for key in ("add_to_start", "pickup"):
        assert latency[key]["p50_ms"] <= latency[key]["p99_ms"] <= latency[key]["max_ms"]
    # (pickup may be below 0: the worker can start a job before the producer read its reply)
    assert latency["add_to_start"]["p50_ms"] > 0
    # pickup is measured from the acknowledgement, add->start from before the call
    assert latency["pickup"]["p50_ms"] < latency["add_to_start"]["p50_ms"]

    text = report.table([result], {"jobbroker": "test"})
    assert "| jobbroker" in text
    assert "jobbroker, removed" in report.processing_table([result])


def completed_jobs(server: RedisServer, pattern: str) -> int:
    client = server.client()
    try:
        return sum(int(client.zcard(key)) for key in client.scan_iter(match=pattern))
    finally:
        client.close()


@pytest.mark.parametrize("remove", [False, True])
def test_processing_variants_keep_or_remove_completed_jobs(bench: Bench, remove: bool) -> None:
    runner = bench.runner()
    queue = f"{bench.token}-variant"
    assert runner.fill(queue, 150, remove_on_complete=remove)["count"] == 150
    assert runner.processing(queue, 150)["jobs"] == 150
    kept = completed_jobs(bench.server, f"jb:{{{queue}}}:completed")
    assert kept == (0 if remove else 150)


@pytest.mark.usefixtures("bullmq_installed")
@pytest.mark.parametrize("remove", [False, True])
def test_bullmq_processing_is_timed_like_jobbroker(bench: Bench, remove: bool) -> None:
    server = bench.servers.start("bullmq")
    runner = bench.runner("bullmq", server)
    assert runner.process_count() == bench.runner().process_count() == SIZES.process_jobs
    queue = f"{bench.token}-bull"
    runner.fill(queue, 150, remove_on_complete=remove)
    figures = runner.processing(queue, 150)
    assert figures["jobs"] == 150
    assert 0 < figures["from_start"] < figures["from_ready"]
    assert figures["worker_us_per_job"] > 0
    assert figures["cpu"]["redis"]["us_per_job"] > 0
    assert "broker" not in figures["cpu"]
    assert completed_jobs(server, f"bull:{queue}:completed") == (0 if remove else 150)


@pytest.mark.usefixtures("bullmq_installed")
def test_bullmq_backlog_is_the_reference_for_redis_alone(bench: Bench) -> None:
    extras = Extras(bench.procs, bench.server.url, bench.token, SIZES, bench.address)
    backlog = extras.backlog(bench.servers, [600], peer="bullmq", rounds=1)[600]
    assert backlog["peer"] == "bullmq"
    assert SIZES.backlog_measure <= backlog["jobs"] <= 600
    assert "broker" not in backlog["cpu"]
    assert set(bench.servers.servers) == {"jobbroker"}  # its own server is gone


def test_extras_measure_real_events_and_memory(bench: Bench) -> None:
    extras = Extras(bench.procs, bench.server.url, bench.token, SIZES, bench.address, 0)
    extras.broker_pid = bench.broker_pid

    progress = extras.progress(jobs=3)
    assert progress["reports"] > 0
    assert progress["events"] == progress["reports"]  # each report flushed: none collapsed
    assert progress["latency"]["samples"] == progress["events"]

    broker, idle_address = start_broker(bench.procs, bench.server.url)
    idle = Extras(bench.procs, bench.server.url, bench.token, SIZES, idle_address).idle_subscribers(
        broker.pid
    )
    assert idle["subscribers"] == SIZES.subscribers
    assert idle["rss_after_mb"] > 0

    memory = extras.memory()
    assert memory["processed"] == memory["kept_completed"] == SIZES.memory_jobs
    assert memory["per_waiting_job_keys"] > 0
    assert memory["per_completed_job_keys"] > 0

    point = extras.scale(2, [bench.address, idle_address], [bench.broker_pid, broker.pid])
    assert point["jobs"] == SIZES.scale_jobs
    assert (point["workers"], point["brokers"]) == (2, 2)
    # A few hundred jobs may all be done before the last worker is up: the CPU window can be
    # empty here, never negative.
    for side in ("brokers", "workers", "redis"):
        assert point["cpu"][side]["core_pct"] >= 0

    unary = extras.unary()
    for key in ("64", "100", "add_rpc"):
        assert unary[key]["per_s"] > 0
        assert unary[key]["server_us_per_call"] > 0
        assert unary[key]["client_us_per_call"] > 0
    for key in ("echo_paced", "add_paced", "client_add_paced"):
        assert unary[key]["samples"] == int(SIZES.rate * SIZES.transport_s)
        assert 0 < unary[key]["p50_ms"] <= unary[key]["p99_ms"]

    backlog = extras.backlog(bench.servers, [150, 600], payload_bytes=1_000, rounds=2)
    short, long = backlog[150], backlog[600]
    assert (short["waiting"], long["waiting"]) == (150, 600)
    # Every round starts at the queue's size: the short one was emptied by its first round, the
    # long one lost at least the jobs asked for (a worker may run a few more before it stops).
    assert short["waiting_per_round"] == [150, 150]
    assert long["waiting_per_round"] == [600, 600]
    assert short["jobs"] == 150
    assert SIZES.backlog_measure <= long["jobs"] <= 600
    for point in (short, long):
        assert len(point["steady_per_round"]) == 2
        assert point["steady"] in point["steady_per_round"]
        assert point["redis_used_memory_mb"] > 0
    assert long["redis_used_memory_mb"] > short["redis_used_memory_mb"]
    assert set(bench.servers.servers) == {"jobbroker"}  # their own servers are gone


def test_durability_step_leaves_no_redis_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's primary and replica write nothing into the directory the suite runs from
    (its replica's full-sync RDB once landed in the repository as ``dump.rdb``)."""
    monkeypatch.chdir(tmp_path)
    run = Run(argparse.Namespace(peers=["jobbroker"], redis_server=""), SIZES)
    try:
        result = durability(run)
    finally:
        run.stop()
    assert result["off"]["seq"] > 0
    assert result["on"]["inflight"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def processing(rate_start: float, rate_ready: float) -> dict[str, float]:
    return {"from_start": rate_start, "from_ready": rate_ready}


def test_targets_compare_figures_of_the_same_run() -> None:
    jobbroker = PeerResult("jobbroker", details={"processing": processing(900.0, 1_200.0)})
    bullmq = PeerResult("bullmq", details={"processing": processing(1_000.0, 1_100.0)})
    extras = {
        "unary": {"100": {"per_s": 1_000.0}, "add_rpc": {"per_s": 850.0}},
        "backlog_20000_0": {"waiting": 20_000, "payload_bytes": 0, "steady": 1_000.0},
        "backlog_1000000_0": {"waiting": 1_000_000, "payload_bytes": 0, "steady": 850.0},
    }
    verdicts = {t.name: t.ok for t in report.targets([jobbroker, bullmq], extras)}
    assert verdicts["processing, kept, from process start >= BullMQ"] is False
    assert verdicts["processing, kept, from ready >= BullMQ"] is True
    assert verdicts["processing, removed on complete, from ready >= BullMQ"] is None
    assert verdicts["one Add RPC per job (raw stubs), 100 in flight >= 0.8x bare unary"] is True
    backlog = "processing with the longest backlog >= 0.9x the shortest (small payloads)"
    assert verdicts[backlog] is False


def test_a_saved_run_prints_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = {
        "jobs": 1_000,
        "from_start": 900.0,
        "from_ready": 1_000.0,
        "steady": 1_100.0,
        "start_s": 0.2,
        "worker_us_per_job": 20.0,
        "load": 1.0,
        "cpu": {
            "broker": {"us_per_job": 30.0, "core_pct": 3.0},
            "redis": {"us_per_job": 50.0, "core_pct": 5.0},
            "redis_commands": [
                {
                    "command": "evalsha",
                    "calls_per_job": 0.02,
                    "us_per_job": 40.0,
                    "us_per_call": 2e3,
                }
            ],
        },
    }
    result = PeerResult("jobbroker", values={"processing": 900.0}, details={"processing": figures})
    document = {
        "machine": {"nproc": 2, "cpu": "x", "ram_gib": 1.0, "kernel": "k", "load_at_start": "1"},
        "versions": {"python": "3"},
        "command": "./bench/run",
        "results": [result.__dict__],
        "extras": {},
    }
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(document))
    assert report.main([str(saved)]) == 0
    printed = capsys.readouterr().out
    assert "| jobbroker, kept" in printed
    # 100 µs per job at 1,000 jobs/s: a tenth of a core
    assert "| 0.10 " in printed


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))
