"""The one-command start: the embedded Redis, persistence across restarts of ``jobbroker serve``,
the demo worker, and the refusal of a Redis that may evict keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from jobbroker_broker.storage.embedded import EmbeddedRedis, EmbeddedRedisError
from serve_process import EMBEDDED, LISTENING, Children, alive, clean_env

START_TIMEOUT = 30.0
JOBBROKER = [sys.executable, "-m", "jobbroker.cli"]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path)
    try:
        yield spawned
    finally:
        spawned.close()


def jobbroker(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a ``jobbroker`` command to its end."""
    return subprocess.run(
        [*JOBBROKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_embedded_redis_persists_its_data_and_owns_its_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(first.start())
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.set("kept", "yes")
        with pytest.raises(EmbeddedRedisError, match="in use by another embedded Redis"):
            EmbeddedRedis(data_dir).start()
    finally:
        client.close()
        pid = first.pid
        first.stop()
    assert not alive(pid)
    assert (data_dir / "appendonly.aof").stat().st_size > 0

    with EmbeddedRedis(data_dir) as second:
        again = redis.Redis.from_url(second.url)
        assert again.get("kept") == b"yes"
        again.close()


def test_serve_keeps_jobs_across_a_restart(tmp_path: Path, children: Children) -> None:
    data_dir = tmp_path / "data"
    serve = [*JOBBROKER, "serve", "--port", "0", "--data-dir", str(data_dir)]

    first = children.start("serve", serve, env=clean_env())
    redis_pid = int(first.expect(EMBEDDED, START_TIMEOUT).group(1))
    listening = first.expect(LISTENING, START_TIMEOUT)
    address = f"{listening.group(1)}:{listening.group(2)}"
    added = json_of(
        jobbroker(
            "add",
            "later",
            "report",
            "--data",
            '{"n": 7}',
            "--delay",
            "1h",
            "--address",
            address,
            "--json",
        )
    )
    assert first.terminate() == 0, first.stderr()
    assert not alive(redis_pid), "the embedded redis-server outlived its broker"

    second = children.start("serve", serve, env=clean_env())
    listening = second.expect(LISTENING, START_TIMEOUT)
    address = f"{listening.group(1)}:{listening.group(2)}"
    job = json_of(jobbroker("status", "later", added["job_id"], "--address", address, "--json"))
    assert (job["state"], job["name"], job["data"]) == ("delayed", "report", {"n": 7})
    assert second.terminate() == 0, second.stderr()


def test_serve_with_the_demo_worker(tmp_path: Path, children: Children) -> None:
    serve = children.start(
        "serve",
        [*JOBBROKER, "serve", "--demo", "--port", "0", "--data-dir", str(tmp_path / "data")],
        env=clean_env(),
    )
    listening = serve.expect(LISTENING, START_TIMEOUT)
    address = f"{listening.group(1)}:{listening.group(2)}"
    example = serve.expect(re.compile(r"jobbroker add demo sleep"), START_TIMEOUT)
    assert f"--address {address}" in example.string

    slept = jobbroker(
        "add", "demo", "sleep", "--data", '{"seconds": 0.5}', "--watch", "--address", address
    )
    assert slept.returncode == 0, (slept.stdout, slept.stderr)
    assert "completed" in slept.stdout

    flaky = jobbroker(
        "add",
        "demo",
        "flaky",
        "--data",
        '{"failures": 1}',
        "--attempts",
        "2",
        "--watch",
        "--json",
        "--address",
        address,
    )
    assert flaky.returncode == 0, (flaky.stdout, flaky.stderr)
    events = [json.loads(line) for line in flaky.stdout.splitlines()[1:]]
    types = [e["event"]["type"] for e in events if "event" in e]
    assert types.count("failed") == 1
    assert types[-1] == "completed"

    failed = jobbroker("add", "demo", "fail", "--watch", "--address", address)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)

    job_id = json_of(jobbroker("jobs", "demo", "-s", "completed", "--address", address, "--json"))
    sleep_job = next(j for j in job_id["jobs"] if j["name"] == "sleep")
    logs = json_of(jobbroker("logs", "demo", sleep_job["id"], "--address", address, "--json"))
    assert logs["total"] >= 1
    assert logs["lines"][0].startswith("step 1 of")

    started = time.monotonic()
    assert serve.terminate() == 0, serve.stderr()
    assert time.monotonic() - started < 20


def test_serve_refuses_a_redis_that_may_evict_keys(private_redis: Any, children: Children) -> None:
    client = redis.Redis.from_url(private_redis.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()

    refused = jobbroker("serve", "--redis-url", private_redis.url, "--port", "0")
    assert refused.returncode == 2
    assert "allkeys-lru" in refused.stderr
    assert "--allow-evicting-redis" in refused.stderr

    allowed = children.start(
        "serve",
        [
            *JOBBROKER,
            "serve",
            "--redis-url",
            private_redis.url,
            "--port",
            "0",
            "--allow-evicting-redis",
        ],
        env=clean_env(),
    )
    allowed.expect(LISTENING, START_TIMEOUT)
    assert allowed.terminate() == 0


def test_the_broker_entry_point_embeds_redis_too(tmp_path: Path, children: Children) -> None:
    broker = children.start(
        "broker",
        [sys.executable, "-m", "jobbroker_broker", "--port", "0"],
        cwd=tmp_path,
        env=clean_env(),
    )
    redis_pid = int(broker.expect(EMBEDDED, START_TIMEOUT).group(1))
    listening = broker.expect(LISTENING, START_TIMEOUT)
    address = f"{listening.group(1)}:{listening.group(2)}"
    assert (tmp_path / ".jobbroker" / "data" / "appendonly.aof").exists()
    assert jobbroker("status", "q", "no-such-job", "--address", address).returncode == 3
    assert broker.terminate() == 0
    assert not alive(redis_pid)
