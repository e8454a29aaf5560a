"""A worker process dies mid-job: its lease runs out, another worker finishes the job, once.

The broker runs as ``python -m jobbroker_broker --port 0`` and the doomed worker as
``crash_worker.py``; every process a test starts is killed in teardown, whatever happened.
(The fixtures live here, not in a conftest.py: a second module named ``conftest`` would shadow
the integration tests' ``from conftest import ...`` when both directories run together.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import grpc
import pytest
import redis
from google.rpc import error_details_pb2, status_pb2
from jobbroker.v1 import (
    events_pb2,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

HERE = Path(__file__).parent
START_TIMEOUT = 15.0
LISTENING = re.compile(r"jobbroker listening on (\S+):(\d+)")


class Process:
    """A child process whose stdout lines are read by a thread, so reads can time out."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self._stderr = log.open("wb")
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: Queue[str | None] = Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def readline(self, timeout: float) -> str:
        """The next stdout line; fails the test on timeout or exit."""
        try:
            line = self.lines.get(timeout=timeout)
        except Empty:
            pytest.fail(f"no output from {self.args} within {timeout} s; stderr:\n{self.stderr()}")
        if line is None:
            pytest.fail(f"{self.args} exited ({self.popen.poll()}); stderr:\n{self.stderr()}")
        return line

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self, sig: int = signal.SIGKILL, grace: float = 5.0) -> None:
        """Send `sig`; SIGKILL if the process has not exited after `grace` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and release its pipes."""
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM, grace=3.0)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


@dataclass
class Processes:
    """Every process of a test, killed in teardown."""

    directory: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Process:
        process = Process(args, self.directory / f"{name}-{len(self.started)}.log")
        self.started.append(process)
        return process


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    spawned = Processes(tmp_path)
    try:
        yield spawned
    finally:
        for process in reversed(spawned.started):
            process.close()


@dataclass
class BrokerProcess:
    process: Process
    address: str
    channel: grpc.aio.Channel
    jobs: job_service_pb2_grpc.JobServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub


@pytest.fixture
async def broker_process(redis_url: str, processes: Processes) -> AsyncIterator[BrokerProcess]:
    """``python -m jobbroker_broker --port 0`` on the shared Redis, and stubs connected to it."""
    process = processes.start(
        "broker",
        [
            sys.executable,
            "-m",
            "jobbroker_broker",
            "--port",
            "0",
            "--redis-url",
            redis_url,
            "--maintenance-interval",
            "0.05",
            "--shutdown-grace",
            "1",
        ],
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        match = LISTENING.search(process.readline(max(0.1, deadline - time.monotonic())))
        if match:
            break
    address = f"{match.group(1)}:{match.group(2)}"
    assert int(match.group(2)) > 0, "port 0 must be replaced by the real port"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield BrokerProcess(
            process,
            address,
            channel,
            job_service_pb2_grpc.JobServiceStub(channel),
            worker_service_pb2_grpc.WorkerServiceStub(channel),
        )
    finally:
        await channel.close()
        process.close()


# --- the test ----------------------------------------------------------------------------

E = events_pb2
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def error_reason(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    pytest.fail(f"{err.code()} {err.details()!r} carries no ErrorInfo")


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), error_reason(caught.value)


async def collect(stream: Any, into: list[events_pb2.JobEvent]) -> None:
    while (message := await stream.read()) is not grpc.aio.EOF:
        if message.HasField("event"):
            into.append(message.event)


async def test_killed_worker_job_is_leased_again_and_completes_once(
    broker_process: BrokerProcess, processes: Processes, queue: str, r: redis.Redis
) -> None:
    broker = broker_process
    added = await broker.jobs.Add(
        job_service_pb2.AddRequest(
            queue=queue, name="crashy", data=job_pb2.Payload(body=b'{"n": 1}')
        ),
        timeout=5,
    )
    job_id = added.job_id

    stream = broker.jobs.StreamProgress(
        job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id), timeout=30
    )
    snapshot = await stream.read()
    assert snapshot.snapshot.state == job_pb2.JOB_STATE_WAITING
    events: list[events_pb2.JobEvent] = []
    collector = asyncio.ensure_future(collect(stream, events))

    try:
        worker = processes.start(
            "crash-worker", [sys.executable, str(HERE / "crash_worker.py"), broker.address, queue]
        )
        dead = json.loads(await asyncio.to_thread(worker.readline, 15))
        assert (dead["job_id"], dead["attempt"]) == (job_id, 1)
        job = (await broker.jobs.GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id), timeout=5
        )).job  # fmt: skip
        assert (job.state, job.worker_id) == (job_pb2.JOB_STATE_ACTIVE, dead["worker_id"])
        assert job.progress.percent == 10.0

        worker.kill()  # SIGKILL mid-job: no outcome, no renewal, its stream just drops
        assert worker.popen.returncode == -9

        killed_at = time.monotonic()
        reply = await broker.workers.Lease(
            worker_service_pb2.LeaseRequest(
                queue=queue, worker_id="survivor", wait_ms=5_000, lease_ms=10_000
            ),
            timeout=10,
        )
        assert time.monotonic() - killed_at < 5
        [again] = reply.jobs
        assert again.job_id == job_id
        assert again.attempt == 1  # a stall is not a failed attempt
        assert again.fence > dead["fence"]
        assert again.progress.percent == 10.0  # left by the dead worker's attempt

        # The dead worker's lease was superseded: its token changes nothing.
        stale = worker_service_pb2.CompleteRequest(
            queue=queue,
            job_id=job_id,
            token=dead["token"],
            result=job_pb2.Payload(body=b'"from the dead"'),
        )
        assert await refused(broker.workers.Complete(stale, timeout=5)) == (
            FAILED_PRECONDITION,
            "LEASE_SUPERSEDED",
        )

        done = await broker.workers.Complete(
            worker_service_pb2.CompleteRequest(
                queue=queue,
                job_id=job_id,
                token=again.token,
                result=job_pb2.Payload(body=b'{"ok": true}'),
            ),
            timeout=5,
        )
        assert done.state == job_pb2.JOB_STATE_COMPLETED
        await asyncio.wait_for(collector, 5)  # the stream ends after the terminal event
    finally:
        collector.cancel()
        stream.cancel()

    # Too late, whatever the token: nothing changes any more.
    for token in (dead["token"], again.token):
        code, _ = await refused(
            broker.workers.Complete(
                worker_service_pb2.CompleteRequest(queue=queue, job_id=job_id, token=token),
                timeout=5,
            )
        )
        assert code == FAILED_PRECONDITION

    kinds = [e.type for e in events]
    assert kinds.count(E.EVENT_TYPE_COMPLETED) == 1
    assert kinds[-1] == E.EVENT_TYPE_COMPLETED
    [stalled] = [e for e in events if e.type == E.EVENT_TYPE_STALLED]
    assert stalled.state == job_pb2.JOB_STATE_WAITING
    assert stalled.worker_id == dead["worker_id"]
    actives = [e for e in events if e.type == E.EVENT_TYPE_ACTIVE]
    assert [e.worker_id for e in actives] == [dead["worker_id"], "survivor"]
    assert kinds.index(E.EVENT_TYPE_STALLED) < events.index(actives[1])
    [completed] = [e for e in events if e.type == E.EVENT_TYPE_COMPLETED]
    assert (completed.worker_id, completed.result.body) == ("survivor", b'{"ok": true}')

    job = (await broker.jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id), timeout=5
    )).job  # fmt: skip
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert (job.stalled_count, job.attempts_made) == (1, 1)
    assert (job.worker_id, job.result.body) == ("survivor", b'{"ok": true}')

    # The queue's own record: exactly one completion of the job, ever.
    entries = r.xrange(f"jb:{{{queue}}}:events")
    completions = [
        fields for _, fields in entries if fields[b"e"] == b"completed" and fields[b"j"] == b"1"
    ]
    assert job_id == "1"
    assert len(completions) == 1
    assert [f[b"e"] for _, f in entries if f[b"j"] == b"1"].count(b"stalled") == 1
