"""Spans for the broker's RPCs (docs/tracing.md), when opentelemetry is installed.

One SERVER span per call of a unary or server-streaming method, named after the method
(``jobbroker.v1.JobService/Add``), with the RPC semantic conventions' attributes and an ERROR
status for the codes that mean a server fault. Its parent is the trace context of the call's
metadata (``traceparent``, read by the global propagator), or else, for Add and AddBulk, the one
the jobs carry (``JobOptions.trace_context``): an AddBulk whose jobs carry different ones links
to them instead. The worker's ReportProgress stream, open for the worker's whole life, gets no
span.

While no tracer provider is set up (the API's proxy), a call costs one check and makes no span.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from jobbroker import tracing as job_tracing
from jobbroker.v1 import job_pb2, job_service_pb2

from .interceptors import WrappingInterceptor, rebuild
from .rpc_metrics import call_status, method_name

if TYPE_CHECKING:
    from opentelemetry.context import Context as TraceContext
    from opentelemetry.trace import Link, Span

    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)

SERVICE_NAME = "jobbroker-broker"
"""The broker's ``service.name`` when OTEL_SERVICE_NAME does not give one."""
MAX_LINKS = 32
"""Links an AddBulk span keeps at most, one per distinct trace context of its jobs."""
# The codes a server span marks as an error (OpenTelemetry's gRPC conventions): the others
# are the caller's to judge.
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The tracing interceptor, when opentelemetry is installed (none otherwise); sets up
    exporting from the OTEL_* variables first (jobbroker.tracing.configure_from_env)."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return []
    job_tracing.configure_from_env(SERVICE_NAME)
    return [RpcTracing()]


def _carried(request: Any) -> Sequence[job_pb2.TraceContext]:
    """The trace contexts the jobs of an Add or AddBulk carry."""
    if isinstance(request, job_service_pb2.AddRequest):
        options = request.options
        return [options.trace_context] if options.HasField("trace_context") else []
    if isinstance(request, job_service_pb2.AddBulkRequest):
        jobs = request.jobs
        return [j.options.trace_context for j in jobs if j.options.HasField("trace_context")]
    return []


def _parent(request: Any, context: Context) -> tuple[TraceContext | None, list[Link]]:
    """The span's parent context (None: a new trace) and links."""
    from opentelemetry import propagate, trace

    metadata = {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }
    parent = propagate.extract(metadata)
    if trace.get_current_span(parent).get_span_context().is_valid:
        return parent, []
    carried = _carried(request)
    if not carried:
        return None, []
    first = carried[0]
    if all(c == first for c in carried):
        return job_tracing.context_of(first), []
    links: list[Link] = []
    seen: set[str] = set()
    for c in carried:
        if c.traceparent in seen or len(links) == MAX_LINKS:
            continue
        seen.add(c.traceparent)
        span_context = trace.get_current_span(job_tracing.context_of(c)).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return None, links


class RpcTracing(WrappingInterceptor):
    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        name = method_name(method)
        return rebuild(handler, lambda kind, behavior: self._wrap(name, kind, behavior))

    def _wrap(self, name: str, kind: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if kind.startswith("stream_"):
            return behavior  # ReportProgress: one stream per worker, for its whole life
        from opentelemetry import trace

        tracer = trace.get_tracer(job_tracing.INSTRUMENTATION)
        # Until a tracer provider is set up, the API's proxy would only make non-recording
        # spans: a call then costs this one check.
        idle = trace.ProxyTracerProvider
        attributes = {"rpc.system.name": "grpc", "rpc.method": name}

        def start(request: Any, context: Context) -> Span:
            parent, links = _parent(request, context)
            span = tracer.start_span(
                name, parent, trace.SpanKind.SERVER, attributes, links=links or None
            )
            queue = getattr(request, "queue", None)
            if isinstance(queue, str) and queue:
                span.set_attribute("messaging.destination.name", queue)
            return span

        def end(span: Span, context: Context, error: BaseException | None) -> None:
            code = call_status(context, error)
            span.set_attribute("rpc.response.status_code", code)
            if code in _SERVER_ERRORS:
                from opentelemetry.trace import Status, StatusCode

                if error is not None and not isinstance(error, grpc.aio.AbortError):
                    span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, code))
            span.end()

        async def traced(request: Any, context: Context) -> Any:
            if isinstance(trace.get_tracer_provider(), idle):
                return await behavior(request, context)
            span = start(request, context)
            error: BaseException | None = None
            try:
                with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                    reply = await behavior(request, context)
                job_id = getattr(reply, "job_id", None)
                if isinstance(job_id, str) and job_id:
                    span.set_attribute("messaging.message.id", job_id)
                return reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                end(span, context, error)

        async def traced_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(trace.get_tracer_provider(), idle):
                async for response in behavior(request, context):
                    yield response
                return
            span = start(request, context)
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                end(span, context, error)

        return traced_stream if inspect.isasyncgenfunction(behavior) else traced
