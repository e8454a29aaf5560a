"""OpenTelemetry tracing of jobs (docs/tracing.md), when opentelemetry is installed: the
``otel`` extra.

- A producer's ``add`` carries the W3C trace context of its active span in the job
  (``JobOptions.trace_context``), so the job's trace survives the queue, the broker and retries.
- The Worker SDK runs each attempt in a ``process <queue>`` span (kind CONSUMER), a child of
  that context, with the messaging semantic conventions' attributes.
- :func:`configure_from_env` gives a process without a tracer provider one that exports
  through OTLP when the standard ``OTEL_*`` variables ask for it.

Nothing here imports opentelemetry unless the process has loaded it already (a span can only be
active in a process that has): without it every function is a dictionary lookup that answers
"not tracing".
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .v1 import job_pb2

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from .v1 import worker_service_pb2

log = logging.getLogger(__name__)

INSTRUMENTATION = "jobbroker"
"""The name of the tracer the client, the Worker SDK and the broker make their spans with."""
MESSAGING_SYSTEM = "jobbroker"
"""The ``messaging.system`` attribute of the worker's spans."""
_API = "opentelemetry.trace"


@functools.cache
def _w3c() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def loaded() -> bool:
    """Whether this process has loaded the OpenTelemetry API (only then can a span be active)."""
    return _API in sys.modules


def current_trace_context() -> job_pb2.TraceContext | None:
    """The W3C trace context of the active span, for a job's options; None when no span is
    active (or opentelemetry is not loaded).

    The W3C propagator is used whatever ``OTEL_PROPAGATORS`` names: the job field is W3C's
    format, which every OpenTelemetry SDK reads."""
    if _API not in sys.modules:
        return None
    from opentelemetry import trace

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _w3c().inject(carrier)
    traceparent = carrier.get("traceparent")
    if not traceparent:
        return None
    return job_pb2.TraceContext(traceparent=traceparent, tracestate=carrier.get("tracestate", ""))


def context_of(carried: job_pb2.TraceContext) -> Context | None:
    """The OpenTelemetry context a job's trace context stands for (None: a new trace)."""
    if not carried.traceparent:
        return None
    carrier = {"traceparent": carried.traceparent}
    if carried.tracestate:
        carrier["tracestate"] = carried.tracestate
    return _w3c().extract(carrier)


@contextlib.contextmanager
def process_span(job: worker_service_pb2.LeasedJob, worker_id: str) -> Iterator[Span]:
    """The span one attempt of a job runs in, current while it runs: ``process <queue>``, kind
    CONSUMER, a child of the context the job was added with (a root span without one)."""
    from opentelemetry import trace

    tracer = trace.get_tracer(INSTRUMENTATION)
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.job_id,
        "messaging.client.id": worker_id,
        "jobbroker.job.name": job.name,
        "jobbroker.job.attempt": job.attempt,
        "jobbroker.job.max_attempts": job.max_attempts,
    }
    with tracer.start_as_current_span(
        f"process {job.queue}",
        context=context_of(job.trace_context),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def end_process(
    span: Span, outcome: str, error_type: str = "", message: str = "", stack: str = ""
) -> None:
    """Record an attempt's outcome on its span: ``jobbroker.job.outcome`` (complete, fail,
    release, or lost: nothing reported), and for a failure an ERROR status, ``error.type``
    and the exception event the worker reports to the broker."""
    span.set_attribute("jobbroker.job.outcome", outcome)
    if outcome != "fail":
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.add_event(
        "exception",
        {"exception.type": error_type, "exception.message": message, "exception.stacktrace": stack},
    )
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}" if message else error_type))


def _otlp_exporter() -> SpanExporter | None:
    """The OTLP exporter ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`` names: gRPC (the default,
    what the ``otel`` extra installs) or ``http/protobuf`` (opentelemetry-exporter-otlp-proto-http,
    installed separately)."""
    env = os.environ
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    http = protocol.strip().lower().startswith("http")
    name = "http" if http else "grpc"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{name}.trace_exporter")
    except ImportError as exc:
        log.warning(
            "OTEL_TRACES_EXPORTER=otlp ignored: %s (pip install 'jobbroker[otel]' for OTLP "
            "over gRPC)",
            exc,
        )
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter


def configure_from_env(service_name: str) -> TracerProvider | None:
    """Install a global SDK tracer provider that exports spans when the environment asks for
    it: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``) or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (then ``otlp``).
    Does nothing (None) when neither is set, when ``OTEL_SDK_DISABLED`` is true, when the
    process has a tracer provider already, or when opentelemetry-sdk (or, for ``otlp``, the
    OTLP gRPC exporter) is not installed: that case is logged. The service name is
    ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``' ``service.name``), else
    ``service_name``."""
    env = os.environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not exporter_name and not endpoint:
        return None
    if exporter_name in ("none", "") and not endpoint:
        return None
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter_name = exporter_name or "otlp"
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "OTEL_* tracing settings ignored: opentelemetry-sdk is not installed "
            "(pip install 'jobbroker[otel]')"
        )
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the application set one up: its spans and ours go there
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        found = _otlp_exporter()
        if found is None:
            return None
        exporter = found
    else:
        log.warning(
            "OTEL_TRACES_EXPORTER=%s ignored: jobbroker knows otlp, console and none",
            exporter_name,
        )
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans through %s", exporter_name)
    return provider
