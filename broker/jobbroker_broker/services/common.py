"""What every servicer shares: error mapping and the broker's parts."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from ..errors import BrokerError
from ..events import EventHub
from ..maintenance import Maintenance
from ..registry import WorkerRegistry
from ..settings import Settings
from ..store import Store

log = logging.getLogger("jobbroker_broker.rpc")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


@dataclass(slots=True)
class Parts:
    """The parts of a broker a servicer works with."""

    settings: Settings
    store: Store
    hub: EventHub
    maintenance: Maintenance
    registry: WorkerRegistry


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: BrokerError) -> None:
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def unary(
    handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Answer a BrokerError with its status; log anything unexpected as INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await handler(self, request, context)
        except BrokerError as error:
            await abort(context, error)
            raise AssertionError("unreachable") from error

    return wrapper


def server_stream(
    handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """The same for a server-streaming method."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in handler(self, request, context):
                yield item
        except BrokerError as error:
            await abort(context, error)

    return wrapper
