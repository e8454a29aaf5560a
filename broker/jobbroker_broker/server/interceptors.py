"""What the broker's server interceptors share: each wraps a method's handler once (cached by
method, since the servicers' handlers do not change) and rebuilds it around new behaviours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

Wrap = Callable[[str, Callable[..., Any]], Callable[..., Any]]
"""Given a handler kind (``unary_unary``...) and its behaviour, the behaviour to serve."""

_MAKERS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def rebuild(
    handler: Handler, wrap: Wrap, deserializer: Callable[[bytes], Any] | None = None
) -> Handler:
    """``handler`` with its behaviour replaced by ``wrap(kind, behaviour)`` (and its request
    deserializer by ``deserializer``, when given)."""
    for kind, make in _MAKERS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            built: Handler = make(
                wrap(kind, behavior),
                deserializer or handler.request_deserializer,
                handler.response_serializer,
            )
            return built
    return handler


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Serves each method through ``wrap_handler(method, handler)``, computed once."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self.wrap_handler(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
