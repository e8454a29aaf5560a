"""Broker processes on fixed ports, stopped with SIGTERM and started again, as a deploy does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ports import free_port


class BrokerProcess:
    """``python -m jobbroker_broker`` on a port that stays the same across restarts."""

    def __init__(self, redis_url: str, log_dir: Path, *settings: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.log_dir = log_dir
        self.settings = list(settings)
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"broker-{self.port}-{self.starts}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBBROKER_")}
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobbroker_broker",
                "--redis-url",
                self.redis_url,
                "--port",
                str(self.port),
                *self.settings,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_serving()

    def wait_serving(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            assert self.popen.poll() is None, self.log_text()
            try:
                with grpc.insecure_channel(self.address) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=0.5
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"broker on {self.address} not serving:\n{self.log_text()}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, and wait for the process to exit; returns its exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")
            for p in sorted(self.log_dir.glob(f"broker-{self.port}-*"))
        )
