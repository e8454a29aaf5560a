"""``--address``, ``--token`` and the TLS options work before the command and after it, and what
is not given comes from the environment (JOBBROKER_ADDRESS, JOBBROKER_TOKEN ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobbroker.cli.common import hoist_connection_options
from jobbroker_broker.server import tokens

from .helpers import Cli, ThreadedBroker, free_address


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBBROKER_ADDRESS", "JOBBROKER_TOKEN", "JOBBROKER_TLS", "JOBBROKER_TLS_CA"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def auth_broker(redis_url: str, tmp_path: Path) -> Iterator[tuple[ThreadedBroker, Path]]:
    token_file = tmp_path / "tokens.toml"
    tokens.save(token_file, tokens.TokenBook())
    broker = ThreadedBroker(redis_url, auth_tokens_file=str(token_file))
    broker.start()
    try:
        yield broker, token_file
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "q", "1", "--token", "T"], ["--token", "T", "status", "q", "1"]),
        (["status", "q", "1", "--token=T"], ["--token=T", "status", "q", "1"]),
        (
            ["--tls", "queue", "info", "q", "--tls-ca", "ca.pem", "--json"],
            ["--tls", "--tls-ca", "ca.pem", "queue", "info", "q", "--json"],
        ),
        (["--token", "A", "add", "q", "n", "--tls"], ["--token", "A", "--tls", "add", "q", "n"]),
        (["add", "q", "n", "--", "--token"], ["add", "q", "n", "--", "--token"]),
        (["serve", "--tls-cert-file", "x"], ["serve", "--tls-cert-file", "x"]),
        (["token", "create", "x", "--token", "y"], ["token", "create", "x", "--token", "y"]),
        (["--help"], ["--help"]),
    ],
)
def test_connection_options_after_the_command_move_before_it(
    args: list[str], expected: list[str]
) -> None:
    assert hoist_connection_options(args) == expected


def test_address_before_or_after_the_command(cli: Cli, queue: str) -> None:
    job_id = cli.add(queue)
    before = cli("--address", cli.address, "status", queue, job_id, "--json", address=False)
    assert before.exit_code == 0, before.stderr
    after = cli("status", queue, job_id, "--json", "--address", cli.address, address=False)
    assert after.exit_code == 0, after.stderr
    short = cli("-a", cli.address, "jobs", queue, "--json", address=False)
    assert short.exit_code == 0, short.stderr


def test_the_address_comes_from_the_environment_and_options_win_over_it(
    cli: Cli, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = cli.add(queue)
    monkeypatch.setenv("JOBBROKER_ADDRESS", cli.address)
    assert cli("status", queue, job_id, address=False).exit_code == 0

    dead = free_address()
    monkeypatch.setenv("JOBBROKER_ADDRESS", dead)
    unreachable = cli("status", queue, job_id, address=False)
    assert unreachable.exit_code == 4
    assert dead in unreachable.stderr
    assert cli("--address", cli.address, "status", queue, job_id, address=False).exit_code == 0
    # The command's own --address wins over the one before the command.
    both = cli("--address", dead, "status", queue, job_id, "--address", cli.address, address=False)
    assert both.exit_code == 0, both.stderr


def test_token_before_or_after_the_command_or_from_the_environment(
    auth_broker: tuple[ThreadedBroker, Path], queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, token_file = auth_broker
    token, _ = tokens.create(token_file, "cli", [f"producer:{queue}"])
    assert broker.broker is not None
    broker.broker.reload_tokens()
    cli = Cli(broker.address)

    refused = cli("add", queue, "job")
    assert refused.exit_code == 5
    assert "authorization" in refused.stderr
    assert cli("--token", token, "add", queue, "job").exit_code == 0
    after = cli("add", queue, "job", "--token", token)
    assert after.exit_code == 0, after.stderr
    assert cli("add", queue, "job", f"--token={token}").exit_code == 0

    monkeypatch.setenv("JOBBROKER_TOKEN", token)
    assert cli("add", queue, "job").exit_code == 0
    assert cli("add", queue, "job", "--token", "jbt_wrong_token").exit_code == 5


def test_tls_options_after_the_command_are_read(cli: Cli, queue: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    result = cli("status", queue, "1", "--tls-ca", str(missing))
    assert result.exit_code == 2
    assert "--tls-ca" in result.stderr
    assert "missing-ca.pem" in result.stderr


def test_a_bad_tls_variable_is_a_usage_error(
    cli: Cli, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBBROKER_TLS", "maybe")
    result = cli("status", queue, "1")
    assert result.exit_code == 2
    assert "JOBBROKER_TLS" in result.stderr
