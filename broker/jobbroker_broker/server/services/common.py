"""What every servicer shares: error mapping and the broker's parts."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc

from ...errors import BrokerError, abort
from ...loops.events import EventHub
from ...loops.maintenance import Maintenance
from ...loops.registry import WorkerRegistry
from ...settings import Settings
from ...storage.store import Store
from .. import access
from ..job_schemas import JobSchemas
from ..streams import OpenStreams

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
    streams: OpenStreams
    schemas: JobSchemas = field(init=False)
    """Job data schemas checked at Add (issue 13); shared so SetJobSchema applies at once."""

    def __post_init__(self) -> None:
        self.schemas = JobSchemas(self.store)


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


class _HasParts(Protocol):
    parts: Parts


S = TypeVar("S", bound=_HasParts)


def server_stream(
    handler: Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """The same for a streaming method; the stream is also counted against its caller's limit,
    and ends with the status it is given when ended from outside (revoked token, shutdown)."""

    @functools.wraps(handler)
    async def wrapper(
        self: S, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        streams = self.parts.streams
        caller = access.caller()
        try:
            stream = streams.open(caller.token_id if caller is not None else context.peer())
        except BrokerError as error:
            await abort(context, error)
            return
        items = aiter(handler(self, request, context))
        try:
            while stream.ending is None:
                stream.waiting = True
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    break
                finally:
                    stream.waiting = False
                yield item
        except asyncio.CancelledError:
            if stream.ending is None:
                raise
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
        except BrokerError as error:
            if stream.ending is None:
                await abort(context, error)
        finally:
            streams.close(stream)
            await items.aclose()  # type: ignore[attr-defined]
        if stream.ending is not None:
            await abort(context, stream.ending)

    return wrapper
