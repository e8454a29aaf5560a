"""Smoke test of the benchmark suite's jobbroker side: a few seconds of each scenario against
the test Redis, checking that the numbers are real (every job accounted for), never how fast.
The peers (BullMQ, arq, ...) are not needed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench import report
from bench.cleanup import new_token, remove_run_keys
from bench.common import Processes, percentile
from bench.extras import Extras, start_broker
from bench.scenarios import PeerRunner, Sizes, peer_specs
from bench.suite import durability, transport

SIZES = Sizes(
    enqueue_s=0.3,
    process_limit_s=30.0,
    latency_s=0.5,
    rate=100.0,
    fast_s=0.5,
    progress_s=0.5,
    idle_s=0.2,
    subscribers=50,
    memory_jobs=300,
    two_broker_jobs=300,
    transport_s=0.3,
)


@pytest.fixture
def run(redis_url: str) -> Iterator[tuple[Processes, str, str]]:
    """A broker process and the run's token; afterwards every process is gone and the run's
    keys deleted (which the test checks)."""
    procs = Processes()
    token = new_token()
    try:
        _, address = start_broker(procs, redis_url)
        yield procs, address, token
    finally:
        procs.kill_all()
        remove_run_keys(redis_url, token)


def test_table_scenarios_account_for_every_job(
    run: tuple[Processes, str, str], redis_url: str
) -> None:
    procs, address, token = run
    runner = PeerRunner(procs, peer_specs()["jobbroker"], redis_url, token, SIZES, address)
    result = runner.all()
    assert result.errors == {}
    for column in ("seq", "inflight", "bulk", "processing"):
        value = result.values[column]
        assert value is not None
        assert value > 0
        assert math.isfinite(value)
    # The worker ran every job the three enqueue scenarios added (each with a warm-up call).
    assert result.details["processing"]["jobs"] == result.details["filled"]
    latency = result.details["latency"]
    assert latency["failed_adds"] == 0
    assert latency["started"] == latency["jobs"] == int(SIZES.rate * SIZES.latency_s)
    assert latency["add_to_start"]["samples"] == latency["jobs"]
    for key in ("add_to_start", "pickup"):
        assert 0 < latency[key]["p50_ms"] <= latency[key]["p99_ms"] <= latency[key]["max_ms"]
    # pickup is measured from the acknowledgement, add->start from before the call
    assert latency["pickup"]["p50_ms"] < latency["add_to_start"]["p50_ms"]

    text = report.table([result], {"jobbroker": "test"})
    assert "| jobbroker" in text


def test_extras_measure_real_events_and_memory(
    run: tuple[Processes, str, str], redis_url: str
) -> None:
    procs, address, token = run
    extras = Extras(procs, redis_url, token, SIZES, address)

    progress = extras.progress(jobs=3)
    assert progress["reports"] > 0
    assert progress["events"] == progress["reports"]  # each report flushed: none collapsed
    assert progress["latency"]["samples"] == progress["events"]

    broker, idle_address = start_broker(procs, redis_url)
    idle = Extras(procs, redis_url, token, SIZES, idle_address).idle_subscribers(broker.pid)
    assert idle["subscribers"] == SIZES.subscribers
    assert idle["rss_after_mb"] > 0

    memory = extras.memory()
    assert memory["processed"] == memory["kept_completed"] == SIZES.memory_jobs
    assert memory["per_waiting_job_keys"] > 0
    assert memory["per_completed_job_keys"] > 0

    scale = extras.scale([address, idle_address])
    assert scale["jobs"] == SIZES.two_broker_jobs

    floor = transport(procs, SIZES)
    assert floor["64"]["per_s"] > 0
    assert floor["100"]["per_s"] > 0

    # Everything the run made carries its token and goes with the cleanup.
    client = redis.Redis.from_url(redis_url)
    try:
        remove_run_keys(redis_url, token)
        assert list(client.scan_iter(match=f"*{token}*", count=10_000)) == []
        assert not any(token in m.decode() for m in client.smembers("jb:queues"))
    finally:
        client.close()


def test_durability_step_leaves_no_redis_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's primary and replica write nothing into the directory the suite runs from
    (its replica's full-sync RDB once landed in the repository as ``dump.rdb``)."""
    monkeypatch.chdir(tmp_path)
    procs = Processes()
    token = new_token()
    try:
        result = durability(procs, argparse.Namespace(), SIZES, token)
    finally:
        procs.kill_all()
    assert result["off"]["seq"] > 0
    assert result["on"]["inflight"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))
