"""A real broker (in-process grpc.aio server) over a Redis of the test's own, and the spans the
process's OpenTelemetry SDK records (an InMemorySpanExporter behind the global provider).

The global tracer provider can be set once per process: the first test here sets it and every
later one reads the same exporter, cleared before each test. Each test then picks its spans by
its own queue name or trace id, so tests that share a process do not see each other's spans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TEST_SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)
_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The exporter every finished span of this process goes to, empty at the start."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(_PROVIDER)
    if trace.get_tracer_provider() is not _PROVIDER:
        pytest.fail("another global tracer provider was set in this process")
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
async def broker_address(private_redis: Any) -> AsyncIterator[str]:
    """A broker of the test's own; its address."""
    broker = Broker(replace(TEST_SETTINGS, redis_url=str(private_redis.url)))
    port = await broker.start()
    yield f"127.0.0.1:{port}"
    await broker.stop(0.5)
