"""The door every call passes: message size and form, token, permission and request rate.

A gRPC server interceptor wraps each method's handler once (the wrapped handlers are cached by
method). Per call it refuses, in this order:

- a request message over ``max_message_bytes``: RESOURCE_EXHAUSTED (checked on the serialized
  bytes, before they are parsed);
- a request message that does not parse as its type: INVALID_ARGUMENT (gRPC parses a request
  with the handler's deserializer before the handler runs, and a deserializer that raised made
  the call UNKNOWN with an ERROR traceback in the log, from anyone, authenticated or not; the
  gate's deserializer hands a refusal to the handler instead);
- a missing, malformed, unknown or revoked token: UNAUTHENTICATED (when a token file is set);
- a method or queue the token's grants do not cover: PERMISSION_DENIED (each message of the
  worker stream is checked too);
- a caller over ``rate_limit`` requests per second: RESOURCE_EXHAUSTED.

The messages of a bidirectional stream arrive after it opens: its token is checked first, then
each message's size, form and queues as it is read. Health checks need no token, so load
balancers can probe a broker without one; only their request bodies are checked.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from ..errors import (
    BrokerError,
    InvalidArgument,
    LimitExceeded,
    ShuttingDown,
    TokenMalformed,
    TokenMissing,
    TokenUnknown,
    abort,
)
from ..loops import wait_set
from ..settings import Settings
from . import access
from .access import Identity
from .interceptors import WrappingInterceptor, rebuild
from .tokens import TOKEN_RE, TokenBook

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_BEARER = "bearer "
_MAX_BUCKETS = 100_000
UNREADABLE_LOG_INTERVAL = 60.0
"""Seconds between two log lines about unparsable requests (each line counts those since the
last), so nobody can flood the log by sending garbage."""


@dataclass(slots=True)
class Refused:
    """Stands for a request message refused before it was handed to a handler (too large, or
    unparsable), with the error the call gets."""

    error: BrokerError


class UnparsableRequests:
    """Counts unparsable requests and logs them as one warning line per interval at most."""

    def __init__(self, interval: float = UNREADABLE_LOG_INTERVAL) -> None:
        self.interval = interval
        self.unlogged = 0
        self._next_line = 0.0

    def seen(self, method: str, problem: str) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now < self._next_line:
            return
        self._next_line = now + self.interval
        count, self.unlogged = self.unlogged, 0
        log.warning(
            "refused %d request(s) that are not valid protobuf messages (latest: %s: %s); "
            "next such line in %.0f s at the earliest",
            count,
            method,
            problem,
            self.interval,
        )


def unparsable_request(method: str, problem: str) -> InvalidArgument:
    error = InvalidArgument(
        "request", f"the bytes sent are not a valid request message of {method} ({problem})"
    )
    error.metadata["method"] = method
    return error


class RateLimiter:
    """A token bucket per caller."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, int(rate)))
        self._buckets: dict[str, tuple[float, float]] = {}

    def admit(self, caller: str) -> None:
        now = asyncio.get_running_loop().time()
        tokens, last = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            raise LimitExceeded(
                "rate_limit",
                f"more than {self.rate:g} requests per second from this caller; slow down",
            )
        if len(self._buckets) > _MAX_BUCKETS:
            self._buckets.clear()  # forgetting idle callers only ever lets more through
        self._buckets[caller] = (tokens - 1.0, now)


def bearer_token(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            if not text.lower().startswith(_BEARER):
                raise TokenMalformed("malformed authorization metadata: expected 'Bearer <token>'")
            return text[len(_BEARER) :].strip()
    raise TokenMissing("missing authorization metadata: send 'authorization: Bearer <token>'")


class Gate(WrappingInterceptor):
    def __init__(self, settings: Settings, book: TokenBook | None) -> None:
        super().__init__()
        self.settings = settings
        self.book = book
        """The tokens in force; None: authentication is off. Replaced on reload."""
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_limit_burst)
        self.closing = False
        """Set on shutdown: new calls are refused with UNAVAILABLE / SHUTTING_DOWN (before
        they do anything, so clients may send them again elsewhere)."""
        self.in_flight = 0
        self._drained = asyncio.Event()
        self.unparsable = UnparsableRequests()

    def close(self) -> None:
        self.closing = True
        if self.in_flight == 0:
            self._drained.set()

    async def drained(self, within: float) -> bool:
        """Wait until no unary call is in flight (after ``close``), at most ``within``
        seconds; False if some still are."""
        return await wait_set(self._drained, within)

    # --- per call --------------------------------------------------------------------------

    def identify(self, context: Context) -> Identity | None:
        if self.book is None:
            return None
        token = bearer_token(context)
        entry = self.book.find(token)
        if entry is None:
            if not TOKEN_RE.fullmatch(token):
                raise TokenMalformed("malformed token: expected jbt_<id>_<secret>")
            raise TokenUnknown("unknown or revoked token")
        return Identity(entry.id, entry.name, entry.grants)

    def admit(self, method: str, request: Any, context: Context) -> None:
        """Let the call in, or raise the error it gets; sets the call's identity."""
        if isinstance(request, Refused):
            raise request.error
        identity = self.identify(context)
        access.set_caller(identity)
        permission = access.METHODS.get(method)
        if identity is not None and permission is not None and request is not None:
            access.authorize(identity, permission, request)
        if self.settings.rate_limit > 0:
            self.limiter.admit(identity.token_id if identity is not None else context.peer())

    def too_large(self, size: int) -> LimitExceeded:
        return LimitExceeded(
            "max_message_bytes",
            f"the request message has {size} bytes, over {self.settings.max_message_bytes}",
        )

    async def checked(self, method: str, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """A client stream's messages, each checked like a unary request."""
        permission = access.METHODS.get(method)
        async for request in requests:
            if isinstance(request, Refused):
                raise request.error
            identity = access.caller()
            if identity is not None and permission is not None:
                access.authorize(identity, permission, request)
            yield request

    # --- wrapping handlers -----------------------------------------------------------------

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        wrappers = (
            {"unary_unary": self._open_unary, "unary_stream": self._open_server_stream}
            if method in access.OPEN_METHODS
            else {
                "unary_unary": self._unary,
                "unary_stream": self._server_stream,
                "stream_stream": self._bidi_stream,
            }
        )
        # No client-streaming method exists; were one added, it would need its own wrapper.
        return rebuild(
            handler,
            lambda kind, behavior: wrappers[kind](method, behavior),
            self._deserializer(method, handler),
        )

    def _deserializer(self, method: str, handler: Handler) -> Callable[[bytes], Any]:
        """Parse a request message; what cannot be handed to the handler becomes a Refused,
        which the call's wrapper answers (a deserializer that raises gets UNKNOWN and an
        ERROR traceback from grpc.aio)."""
        parse = handler.request_deserializer
        limit = self.settings.max_message_bytes
        name = method.lstrip("/")

        def deserialize(data: bytes) -> Any:
            if len(data) > limit:
                return Refused(self.too_large(len(data)))
            if parse is None:
                return data
            try:
                return parse(data)
            except DecodeError as exc:
                self.unparsable.seen(name, str(exc))
                return Refused(unparsable_request(name, str(exc)))

        return deserialize

    def _open_unary(self, method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: Context) -> Any:
            if isinstance(request, Refused):
                await abort(context, request.error)
            return await behavior(request, context)

        return unary

    def _open_server_stream(self, method: str, behavior: Any) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            return self._open_unary(method, behavior)  # Health.Watch writes with context.write

        async def server_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Refused):
                await abort(context, request.error)
            async for item in behavior(request, context):
                yield item

        return server_stream

    def _unary(self, method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: Context) -> Any:
            try:
                if self.closing:
                    raise ShuttingDown("the broker is shutting down; reconnect")
                self.admit(method, request, context)
            except BrokerError as error:
                await abort(context, error)
            self.in_flight += 1
            try:
                return await behavior(request, context)
            finally:
                self.in_flight -= 1
                if self.closing and self.in_flight == 0:
                    self._drained.set()

        return unary

    def _server_stream(self, method: str, behavior: Any) -> Any:
        async def server_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                self.admit(method, request, context)
            except BrokerError as error:
                await abort(context, error)
            async for item in behavior(request, context):
                yield item

        return server_stream

    def _bidi_stream(self, method: str, behavior: Any) -> Any:
        async def bidi_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            try:
                self.admit(method, None, context)
            except BrokerError as error:
                await abort(context, error)
            try:
                async for item in behavior(self.checked(method, requests), context):
                    yield item
            except BrokerError as error:
                # The broker's own streams answer their errors themselves; server reflection
                # does not, and would let a refused message out as UNKNOWN and a traceback.
                await abort(context, error)

        return bidi_stream
