"""Brokers with a token file, and clients holding tokens of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from jobbroker import AsyncClient
from jobbroker_broker.server import tokens
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


@dataclass
class Secured:
    """A broker reading ``token_file``; ``token(...)`` adds a token to the file."""

    broker: Broker
    token_file: Path
    clients: list[AsyncClient] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    def token(self, *grants: str, name: str = "test") -> tuple[str, str]:
        """A new token with these grants, and its id; the broker is told at once (SIGHUP's
        path), as a real deployment would be within a second."""
        token, entry = tokens.create(self.token_file, name, list(grants))
        self.broker.reload_tokens()
        return token, entry.id

    def revoke(self, token_id: str) -> None:
        tokens.revoke(self.token_file, token_id)

    def client(self, token: str | None, **options: Any) -> AsyncClient:
        client = AsyncClient(self.address, token=token, retries=0, timeout=5, **options)
        self.clients.append(client)
        return client


async def start_secured(redis_url: str, token_file: Path, **overrides: Any) -> Secured:
    """A broker with auth on; the token file is made (empty) when missing."""
    if not token_file.exists():  # noqa: ASYNC240 - a local file, once per test
        tokens.save(token_file, tokens.TokenBook())
    settings = replace(SETTINGS, redis_url=redis_url, auth_tokens_file=str(token_file), **overrides)
    broker = Broker(settings)
    await broker.start()
    return Secured(broker, token_file)


@pytest.fixture
async def secured(redis_url: str, tmp_path: Path) -> AsyncIterator[Secured]:
    running = await start_secured(redis_url, tmp_path / "tokens.toml")
    yield running
    for client in running.clients:
        await client.close()
    await running.broker.stop(0.5)
