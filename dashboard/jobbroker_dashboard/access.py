"""What the caller's token may do on a queue, asked of the broker without changing anything.

The broker checks a call's permission before it reads the request's fields, so a call whose
job id is empty is answered PERMISSION_DENIED when the token lacks the role, and
INVALID_ARGUMENT (the missing job id) when it has it; nothing is touched either way. Cancel
needs the producer role, Remove the admin role (docs/security.md). The answers are kept for
``ttl`` seconds; the broker still checks every real call, so a stale answer can only show a
button that then answers 403.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from jobbroker import AsyncClient, InvalidArgument, PermissionDenied

from .share import Shared


@dataclass(frozen=True, slots=True)
class Capabilities:
    produce: bool
    """Add and cancel jobs (the producer role)."""
    admin: bool
    """Retry, promote and remove jobs; pause, resume, clean and drain the queue; remove
    schedules (the admin role)."""

    @property
    def read_only(self) -> bool:
        return not (self.produce or self.admin)


async def _allowed(call: Awaitable[Any]) -> bool:
    try:
        await call
    except PermissionDenied:
        return False
    except InvalidArgument:
        return True
    return True


class Access:
    def __init__(self, ttl: float = 30.0) -> None:
        self._shared = Shared(ttl)

    async def capabilities(self, client: AsyncClient, queue: str) -> Capabilities:
        async def probe() -> Capabilities:
            produce = await _allowed(client.cancel(queue, ""))
            admin = await _allowed(client.remove(queue, ""))
            return Capabilities(produce=produce or admin, admin=admin)

        # Keyed by the client itself (one per token), not its id(): an id can be reused once a
        # client is gone, and another token must never inherit these answers.
        return await self._shared.get(("caps", client, queue), probe)

    def forget(self) -> None:
        self._shared.clear()
