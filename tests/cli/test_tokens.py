"""``jobbroker token create | list | revoke`` and ``jobbroker --token``: a token made by the
command works against a broker reading the file, and stops working once revoked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobbroker_broker.server import tokens

from .helpers import Cli, ThreadedBroker


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    tokens.save(path, tokens.TokenBook())
    return path


@pytest.fixture
def auth_broker(redis_url: str, token_file: Path) -> Iterator[ThreadedBroker]:
    broker = ThreadedBroker(redis_url, auth_tokens_file=str(token_file))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_create_prints_the_token_once_and_stores_only_its_hash(token_file: Path, cli: Cli) -> None:
    result = cli(
        "token",
        "create",
        "billing",
        "-g",
        "producer:billing-*",
        "-f",
        str(token_file),
        address=False,
    )
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("jbt_")
    stored = token_file.read_text()
    assert token not in stored
    assert tokens.hash_token(token) in stored
    assert "only time" in result.stderr
    listed = cli("token", "list", "-f", str(token_file), "--json", address=False).json_lines()
    assert [(t["name"], t["grants"]) for t in listed] == [("billing", ["producer:billing-*"])]


def test_a_bad_grant_is_refused_naming_it(token_file: Path, cli: Cli) -> None:
    result = cli("token", "create", "x", "-g", "owner:*", "-f", str(token_file), address=False)
    assert result.exit_code == 2
    assert "owner:*" in result.stderr


def test_the_token_works_through_the_cli_until_revoked(
    auth_broker: ThreadedBroker, token_file: Path, queue: str
) -> None:
    cli = Cli(auth_broker.address)
    created = cli(
        "token", "create", "ops", "-g", f"producer:{queue}", "-f", str(token_file), address=False
    )
    token = created.stdout.strip()
    assert auth_broker.broker is not None
    auth_broker.broker.reload_tokens()  # what SIGHUP does; the file watch would within 1 s
    refused = cli("add", queue, "job")
    assert refused.exit_code != 0
    assert "authorization" in refused.stderr
    added = cli("--token", token, "add", queue, "job")
    assert added.exit_code == 0, added.stderr
    token_id = token.split("_")[1]
    assert cli("token", "revoke", token_id, "-f", str(token_file), address=False).exit_code == 0
    deadline = time.monotonic() + 5  # the file watch notices by itself
    while time.monotonic() < deadline:
        again = cli("--token", token, "add", queue, "job")
        if again.exit_code != 0:
            break
        time.sleep(0.1)
    assert again.exit_code != 0
    assert "revoked" in again.stderr or "unknown" in again.stderr
