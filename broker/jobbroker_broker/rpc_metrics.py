"""A grpc.aio server interceptor timing every call: ``jobbroker_rpc_duration_seconds`` by method
and status code, and ``jobbroker_streams_open`` for the streaming ones."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from .metrics import Metrics

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]


def _code(context: Context, error: BaseException | None) -> str:
    """The status the call ends with: the one set (abort sets it), else what the error means."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return grpc.StatusCode.OK.name
    if isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN.name
    if isinstance(error, BaseException) and not isinstance(error, Exception):
        return grpc.StatusCode.CANCELLED.name  # the client went away (CancelledError)
    return grpc.StatusCode.UNKNOWN.name


def _method(full: str) -> str:
    """``/jobbroker.v1.JobService/Add`` -> ``jobbroker.v1.JobService/Add``."""
    return full[1:] if full.startswith("/") else full


class RpcMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Wrapped once per method, not per call: the servicers' handlers do not change.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def _observe(self, method: str, context: Context, started: float, error: Any) -> None:
        self.metrics.rpc_seconds.labels(method, _code(context, error)).observe(
            time.perf_counter() - started
        )

    def _wrap(self, method: str, behavior: Callable[..., Any], streams: bool) -> Callable[..., Any]:
        """Time ``behavior``: an async generator (responses yielded) or a coroutine function
        (a unary answer, or responses written with ``context.write``)."""
        gauge = self.metrics.streams_open.labels(method) if streams else None

        async def timed(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            if gauge is not None:
                gauge.inc()
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if gauge is not None:
                    gauge.dec()
                self._observe(method, context, started, error)

        async def timed_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            error: BaseException | None = None
            if gauge is not None:
                gauge.inc()
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                if gauge is not None:
                    gauge.dec()
                self._observe(method, context, started, error)

        return timed_stream if inspect.isasyncgenfunction(behavior) else timed

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        known = self._wrapped.get(handler_call_details.method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap_handler(_method(handler_call_details.method), handler)
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, method: str, handler: Handler) -> Handler:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary, False), **serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, handler.stream_unary, True), **serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(method, handler.unary_stream, True), **serializers
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap(method, handler.stream_stream, True), **serializers
            )
        return handler
