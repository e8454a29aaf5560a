"""A grpc.aio server interceptor timing every call: ``jobbroker_rpc_duration_seconds`` by method
and status code, and ``jobbroker_streams_open`` for the streaming ones."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from ..metrics import Metrics
from .interceptors import WrappingInterceptor, rebuild

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]


def call_status(context: Context, error: BaseException | None) -> str:
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


def method_name(full: str) -> str:
    """``/jobbroker.v1.JobService/Add`` -> ``jobbroker.v1.JobService/Add``."""
    return full[1:] if full.startswith("/") else full


class RpcMetrics(WrappingInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def _observe(self, method: str, context: Context, started: float, error: Any) -> None:
        self.metrics.rpc_seconds.labels(method, call_status(context, error)).observe(
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

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        name = method_name(method)
        return rebuild(
            handler,
            lambda kind, behavior: self._wrap(name, behavior, kind != "unary_unary"),
        )
