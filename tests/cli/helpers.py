"""Helpers of the CLI tests: a broker on a background thread, the CLI runner, a bare worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from typing import Any

import grpc
import pytest
from jobbroker.cli import app
from jobbroker.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from ports import free_port
from typer.testing import CliRunner

TEST_SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)
START_TIMEOUT = 10.0


class ThreadedBroker:
    """A broker serving on a free port from its own event-loop thread."""

    def __init__(self, redis_url: str, **overrides: Any) -> None:
        self.settings = replace(TEST_SETTINGS, redis_url=redis_url, **overrides)
        self.port = 0
        self._ready = threading.Event()
        self.broker: Broker | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="cli-test-broker", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the test broker did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        broker = self.broker = Broker(self.settings)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.port = await broker.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await broker.stop(0.5)


@dataclass
class Result:
    """What a ``jobbroker`` command did."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The stdout as one JSON document."""
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        """The stdout as JSON lines."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class Cli:
    """Runs ``jobbroker`` commands in-process (typer's CliRunner) against the test broker."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, address: bool = True) -> Result:
        argv = list(args)
        if address:
            argv += ["--address", self.address]
        result = self.runner.invoke(app, argv, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, input: str | None = None) -> Result:
        """Run a command that must exit 0."""
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def add(self, queue: str, name: str = "job", *args: str) -> str:
        """Add a job; its id."""
        added = self.ok("add", queue, name, *args, "--json").json()
        job_id: str = added["job_id"]
        return job_id


class StubWorker:
    """A worker made of bare WorkerService calls, for tests that decide each outcome."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = worker_service_pb2_grpc.WorkerServiceStub(self.channel)

    def lease(self, queue: str, wait_ms: int = 2000) -> worker_service_pb2.LeasedJob:
        reply = self.stub.Lease(
            worker_service_pb2.LeaseRequest(
                queue=queue, worker_id="cli-test", max_jobs=1, wait_ms=wait_ms
            ),
            timeout=10,
        )
        assert len(reply.jobs) == 1, "no job to lease"
        return reply.jobs[0]

    def complete(self, job: worker_service_pb2.LeasedJob, result: Any) -> None:
        self.stub.Complete(
            worker_service_pb2.CompleteRequest(
                queue=job.queue,
                job_id=job.job_id,
                token=job.token,
                result=job_pb2.Payload(body=json.dumps(result).encode()),
            ),
            timeout=10,
        )

    def fail(self, job: worker_service_pb2.LeasedJob, message: str) -> None:
        self.stub.Fail(
            worker_service_pb2.FailRequest(
                queue=job.queue, job_id=job.job_id, token=job.token, message=message
            ),
            timeout=10,
        )

    def close(self) -> None:
        self.channel.close()


def jobbroker_command() -> list[str]:
    """The ``jobbroker`` console script of this interpreter's environment."""
    return [sys.executable, "-m", "jobbroker.cli"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBBROKER_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def terminate(process: subprocess.Popen[Any], timeout: float = 20.0) -> int:
    """SIGTERM a child and return its exit code (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"{process.args!r} did not stop within {timeout} s of SIGTERM")
    return process.returncode


def free_address() -> str:
    """A 127.0.0.1 address nothing listens on."""
    return f"127.0.0.1:{free_port()}"
