"""Mutual TLS from the environment: a Client, a Worker and the CLI made without TLS arguments
read JOBBROKER_TLS_CA, JOBBROKER_TLS_CERT and JOBBROKER_TLS_KEY (and JOBBROKER_ADDRESS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from jobbroker import AsyncClient, Client, JobContext, Unavailable, Worker
from jobbroker.cli import app
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from typer.testing import CliRunner

from .certs import Pki, make_pki

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-env"))


@contextlib.asynccontextmanager
async def mtls_broker(redis_url: str, pki: Pki) -> AsyncIterator[str]:
    broker = Broker(
        replace(
            SETTINGS,
            redis_url=redis_url,
            tls_cert_file=str(pki.server.cert_file),
            tls_key_file=str(pki.server.key_file),
            tls_client_ca_file=pki.ca_file,
        )
    )
    port = await broker.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await broker.stop(0.5)


def set_tls_env(monkeypatch: pytest.MonkeyPatch, pki: Pki, address: str) -> None:
    monkeypatch.setenv("JOBBROKER_ADDRESS", address)
    monkeypatch.setenv("JOBBROKER_TLS_CA", pki.ca_file)
    monkeypatch.setenv("JOBBROKER_TLS_CERT", str(pki.client.cert_file))
    monkeypatch.setenv("JOBBROKER_TLS_KEY", str(pki.client.key_file))


async def test_client_and_worker_use_mutual_tls_from_the_environment(
    redis_url: str, queue: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mtls_broker(redis_url, pki) as address:
        set_tls_env(monkeypatch, pki, address)
        worker = Worker(queue, wait=1.0, grace=1.0)

        @worker.handler("double")
        async def double(ctx: JobContext) -> int:
            return int(ctx.data) * 2

        async with AsyncClient(timeout=5.0) as client, worker:
            added = await client.add(queue, "double", 21)
            assert await client.wait(queue, added.job_id, timeout=15.0) == 42

        def sync_status() -> str:
            with Client(timeout=5.0) as sync:
                return sync.get_status(queue, added.job_id).state.value

        assert await asyncio.to_thread(sync_status) == "completed"

        # The variables are what made it TLS: without them the client speaks plaintext.
        for name in ("JOBBROKER_TLS_CA", "JOBBROKER_TLS_CERT", "JOBBROKER_TLS_KEY"):
            monkeypatch.delenv(name)
        async with AsyncClient(address, timeout=3.0, retries=0) as plaintext:
            with pytest.raises(Unavailable):
                await plaintext.get_status(queue, added.job_id)


async def test_the_cli_uses_mutual_tls_from_the_environment_or_its_options(
    redis_url: str, queue: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mtls_broker(redis_url, pki) as address:
        runner = CliRunner()

        def run(*args: str) -> tuple[int, str]:
            result = runner.invoke(app, list(args))
            return result.exit_code, result.stderr

        set_tls_env(monkeypatch, pki, address)
        assert await asyncio.to_thread(run, "add", queue, "job") == (0, "")
        for name in ("JOBBROKER_TLS_CA", "JOBBROKER_TLS_CERT", "JOBBROKER_TLS_KEY"):
            monkeypatch.delenv(name)
        code, _ = await asyncio.to_thread(run, "jobs", queue)
        assert code == 4  # plaintext to a TLS port
        cert, key = str(pki.client.cert_file), str(pki.client.key_file)
        after = ("jobs", queue, "--tls-ca", pki.ca_file, "--tls-cert", cert, "--tls-key", key)
        assert await asyncio.to_thread(run, *after) == (0, "")
