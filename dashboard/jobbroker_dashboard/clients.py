"""ClientPool: one AsyncClient (one channel) per API token in use, made on first use.

The dashboard calls the broker with the token of the person or program it serves, so the
broker's roles apply to them, not to the dashboard. Without auth every caller shares the client
of the empty token. Tokens are kept in memory only, as keys of this pool.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from jobbroker import AsyncClient

from .settings import DashboardSettings

MAX_CLIENTS = 256
"""Clients kept at most; the least recently used beyond that is closed."""
CLOSE_DELAY = 30.0
"""Seconds an evicted client lives on, so that calls and streams in flight on it can end."""


class ClientPool:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._clients: OrderedDict[str, AsyncClient] = OrderedDict()
        self._closing: dict[asyncio.Task[None], AsyncClient] = {}

    def get(self, token: str) -> AsyncClient:
        """The client calling the broker with ``token`` ("": none)."""
        client = self._clients.get(token)
        if client is not None:
            self._clients.move_to_end(token)
            return client
        # token="" (not None) keeps the client from reading JOBBROKER_TOKEN: a dashboard must
        # never lend its own environment's token to whoever opens a page.
        client = AsyncClient(
            self.settings.address,
            token=token,
            credentials=self.settings.credentials,
            **self.settings.client_options,
        )
        self._clients[token] = client
        while len(self._clients) > MAX_CLIENTS:
            _, evicted = self._clients.popitem(last=False)
            self._close_later(evicted)
        return client

    def forget(self, token: str) -> None:
        """Drop the client of a token the broker refused (unknown or revoked)."""
        client = self._clients.pop(token, None)
        if client is not None:
            self._close_later(client)

    def _close_later(self, client: AsyncClient) -> None:
        async def close() -> None:
            await asyncio.sleep(CLOSE_DELAY)
            await client.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing[task] = client
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    async def close(self) -> None:
        """Close every client, the evicted ones waiting to close included."""
        clients = [*self._clients.values(), *self._closing.values()]
        for task in list(self._closing):
            task.cancel()
        self._clients.clear()
        for client in clients:
            await client.close()
