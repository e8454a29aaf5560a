"""What a worker is doing, as numbers: :class:`WorkerStats`, and the same as Prometheus metrics
(``jobbroker work --metrics-port``, or :func:`serve_metrics` in your own process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker's numbers at one moment (:meth:`jobbroker.Worker.stats`)."""

    concurrency: int
    """Handlers that may run at once."""
    busy: int
    """Handlers running for a job the worker holds."""
    abandoned: int
    """Handlers still running although their job was taken from them (the attempt timed out,
    the lease was lost, or the job was given back at shutdown) because they ignore
    ``ctx.cancelled``: threads cannot be stopped. Each keeps its slot until it returns, so
    the worker runs ``concurrency - abandoned`` jobs at most meanwhile."""
    leases: int
    """Leases the worker holds (running, or their outcome on its way to the broker)."""
    leased: int
    """Jobs leased since the worker started."""
    outcomes: int
    """Outcomes (complete, fail, release) sent since the worker started."""


class WorkerCollector(Collector):
    """Prometheus metrics read from a worker's :class:`WorkerStats` at each scrape."""

    def __init__(self, stats: Callable[[], WorkerStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily(
            "jobbroker_worker_concurrency",
            "Handlers the worker may run at once.",
            value=stats.concurrency,
        )
        handlers = GaugeMetricFamily(
            "jobbroker_worker_handlers",
            "Handlers running: busy (for a job the worker holds) or abandoned (the job timed "
            "out, lost its lease or was given back, but the handler, a thread, did not stop; "
            "it holds a slot until it returns).",
            labels=["state"],
        )
        handlers.add_metric(["busy"], stats.busy)
        handlers.add_metric(["abandoned"], stats.abandoned)
        yield handlers
        yield GaugeMetricFamily(
            "jobbroker_worker_leases", "Leases the worker holds.", value=stats.leases
        )
        yield CounterMetricFamily(
            "jobbroker_worker_jobs_leased", "Jobs leased since start.", value=stats.leased
        )
        yield CounterMetricFamily(
            "jobbroker_worker_outcomes_sent",
            "Outcomes (complete, fail, release) sent since start.",
            value=stats.outcomes,
        )


def serve_metrics(
    stats: Callable[[], WorkerStats], port: int, host: str = "127.0.0.1"
) -> WSGIServer:
    """Serve the metrics over HTTP (``/metrics``) from a thread; ``shutdown()`` stops it."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WorkerCollector(stats))
    server, _ = start_http_server(port, host, registry=registry)
    return server
