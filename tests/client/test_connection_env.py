"""Where a client connects when not told: ``JOBBROKER_ADDRESS``, ``JOBBROKER_TOKEN`` and the TLS
variables, read by one helper (ConnectionSettings) for the clients, the worker and the CLI;
arguments win over the environment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from jobbroker import AsyncClient, Client, ConnectionSettings, Unauthenticated, Worker
from jobbroker.connection import DEFAULT_ADDRESS
from jobbroker_broker.server import tokens

from .conftest import BrokerFactory, RunningBroker

ENV = (
    "JOBBROKER_ADDRESS",
    "JOBBROKER_TOKEN",
    "JOBBROKER_TLS",
    "JOBBROKER_TLS_CA",
    "JOBBROKER_TLS_CERT",
    "JOBBROKER_TLS_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_each_setting_comes_from_its_argument_else_the_environment_else_the_default() -> None:
    environ = {
        "JOBBROKER_ADDRESS": "env-host:1",
        "JOBBROKER_TOKEN": "env-token",
        "JOBBROKER_TLS_CA": "/env/ca.pem",
    }
    from_env = ConnectionSettings.from_env(environ=environ)
    assert (from_env.address, from_env.token, from_env.tls_ca) == (
        "env-host:1",
        "env-token",
        "/env/ca.pem",
    )
    assert from_env.target == "env-host:1"

    given = ConnectionSettings.from_env(address="arg-host:2", token="", environ=environ)
    assert (given.address, given.token, given.tls_ca) == ("arg-host:2", "", "/env/ca.pem")

    nothing = ConnectionSettings.from_env(environ={})
    assert (nothing.address, nothing.token, nothing.tls, nothing.tls_ca) == (
        None,
        None,
        False,
        None,
    )
    assert nothing.target == DEFAULT_ADDRESS
    assert nothing.channel_credentials() is None


def test_a_bad_environment_value_is_named() -> None:
    with pytest.raises(ValueError, match="JOBBROKER_TLS='maybe'"):
        ConnectionSettings.from_env(environ={"JOBBROKER_TLS": "maybe"})
    with pytest.raises(ValueError, match="JOBBROKER_TLS_CA"):
        ConnectionSettings.from_env(
            environ={"JOBBROKER_TLS_CA": "/no/such/ca.pem"}
        ).channel_credentials()


def test_clients_and_worker_without_an_address_use_jobbroker_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBBROKER_ADDRESS", "10.0.0.1:1,10.0.0.2:2")
    assert AsyncClient().target == "ipv4:10.0.0.1:1,10.0.0.2:2"
    with Client() as client:
        assert client.target == "ipv4:10.0.0.1:1,10.0.0.2:2"
    assert Worker("q").address == "ipv4:10.0.0.1:1,10.0.0.2:2"
    assert AsyncClient("elsewhere:3").target == "elsewhere:3"  # the argument wins
    assert Worker("q", address="elsewhere:3").address == "elsewhere:3"


def test_a_tls_file_from_the_environment_that_cannot_be_read_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBBROKER_TLS_CA", "/no/such/ca.pem")
    with pytest.raises(ValueError, match="JOBBROKER_TLS_CA"):
        AsyncClient("127.0.0.1:1")
    with pytest.raises(ValueError, match="JOBBROKER_TLS_CA"):
        Worker("q")


async def test_a_client_made_without_arguments_reaches_the_broker_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, broker: RunningBroker, queue: str
) -> None:
    monkeypatch.setenv("JOBBROKER_ADDRESS", broker.address)
    async with AsyncClient() as client:
        added = await client.add(queue, "from-env")
        assert (await client.get_status(queue, added.job_id)).name == "from-env"

    def sync() -> str:
        with Client() as client:
            return client.get_status(queue, added.job_id).name

    assert await asyncio.to_thread(sync) == "from-env"


async def test_the_token_comes_from_jobbroker_token_unless_given(
    monkeypatch: pytest.MonkeyPatch, start_broker: BrokerFactory, queue: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens.toml"
    tokens.save(token_file, tokens.TokenBook())
    token, _ = tokens.create(token_file, "env", [f"admin:{queue}"])
    running = await start_broker(auth_tokens_file=str(token_file))
    monkeypatch.setenv("JOBBROKER_ADDRESS", running.address)

    async with AsyncClient(retries=0) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.add(queue, "job")

    monkeypatch.setenv("JOBBROKER_TOKEN", token)
    async with AsyncClient(retries=0) as client:
        assert (await client.add(queue, "job")).job_id
    async with AsyncClient(retries=0, token="jbt_not_a_real_token") as overridden:
        with pytest.raises(Unauthenticated):
            await overridden.add(queue, "job")


def test_metadata_and_channel_options_travel_with_the_settings() -> None:
    settings = ConnectionSettings.from_env(
        metadata=[("x-team", "a")], channel_options=[("grpc.enable_retries", 0)], environ={}
    )
    assert settings.metadata == (("x-team", "a"),)
    assert settings.channel_options == (("grpc.enable_retries", 0),)


async def test_a_worker_takes_new_connection_settings_only_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBBROKER_ADDRESS", "from-env:1")
    worker = Worker("q")
    worker.connect_with(token="t")  # what is not given stays
    assert worker.address == "from-env:1"
    worker.connect_with(address="127.0.0.1:1")
    assert worker.address == "127.0.0.1:1"

    @worker.handler()
    async def handle(ctx: object) -> None:
        return None

    await worker.start()
    try:
        with pytest.raises(RuntimeError, match="started already"):
            worker.connect_with(address="elsewhere:2")
        assert worker.address == "127.0.0.1:1"
    finally:
        await asyncio.wait_for(worker.stop(0), 10)
