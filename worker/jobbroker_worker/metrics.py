"""``jobbroker-worker``'s Prometheus metrics: tokens used per model and the outcome of every
API request and email, beside the Worker SDK's own (``--metrics-port``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from jobbroker import WorkerStats
from jobbroker.worker.metrics import WorkerCollector
from prometheus_client import CollectorRegistry, Counter, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


class ServiceMetrics:
    """The counters; one set per process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tokens = Counter(
            "jobbroker_ai_tokens",
            "Tokens used, per model and kind (prompt or completion), as the API reported.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.requests = Counter(
            "jobbroker_ai_requests",
            "API requests per endpoint (chat, embeddings) and outcome: ok, rate_limited, "
            "server_error, connection_error, timeout, bad_request, unauthorized, not_found, "
            "content_filter, cancelled.",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.emails = Counter(
            "jobbroker_email_messages",
            "Email jobs per outcome: sent, already_sent, deferred (SMTP 4xx, retried), "
            "rejected (SMTP 5xx), failed.",
            ["outcome"],
            registry=self.registry,
        )

    def serve(
        self, workers: Sequence[Callable[[], WorkerStats]], port: int, host: str
    ) -> WSGIServer:
        """Serve these and the workers' metrics (added up) on ``host:port`` (``/metrics``)."""
        self.registry.register(WorkerCollector(lambda: combined([read() for read in workers])))
        server, _ = start_http_server(port, host, registry=self.registry)
        return server


def combined(stats: Sequence[WorkerStats]) -> WorkerStats:
    """Several workers' numbers added up (the service runs one Worker per queue)."""
    return WorkerStats(*(sum(getattr(s, f.name) for s in stats) for f in fields(WorkerStats)))
