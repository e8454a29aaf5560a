"""The Prometheus endpoint: an HTTP server on a thread of its own, and the loop that reads the
job counts from Redis for it.

The HTTP thread only formats what :class:`~.metrics.Metrics` holds; the counts it reports come
from a snapshot the refresh loop replaces every ``metrics_interval`` seconds, on the event loop.
A scrape therefore costs Redis nothing, and a refresh costs one pipeline per ``CHUNK`` queues,
for at most ``metrics_max_queues`` queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from ..loops import Loop
from ..metrics import Metrics
from ..settings import Settings
from ..storage.queue_store import COUNTED_STATES, QueueStore
from ..storage.store import Store

log = logging.getLogger(__name__)

CHUNK = 200
"""Queues counted per pipeline."""


class JobCountsLoop(Loop):
    """Reads every known queue's job counts into the metrics' snapshot, now and then."""

    name = "metrics"

    def __init__(self, metrics: Metrics, store: Store) -> None:
        super().__init__()
        self.metrics = metrics
        self.store = store
        self.queues = QueueStore(store)
        self.interval = store.settings.metrics_interval
        self.max_queues = store.settings.metrics_max_queues
        self._warned = False

    async def refresh(self) -> None:
        names = sorted(await self.store.known_queues())
        if len(names) > self.max_queues and not self._warned:
            self._warned = True
            log.warning(
                "jobbroker_jobs reports the first %d of %d queues (by name); raise "
                "--metrics-max-queues to see them all",
                self.max_queues,
                len(names),
            )
        names = names[: self.max_queues]
        snapshot = {}
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            for queue, counts in zip(chunk, await self.queues.counts(chunk), strict=True):
                snapshot[queue] = dict(zip(COUNTED_STATES, counts, strict=True))
        self.metrics.job_counts.snapshot = snapshot

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.refresh()
            except Exception as exc:  # Redis down: the last counts stay; errors are counted
                log.debug("job counts not refreshed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()


class MetricsEndpoint:
    """``GET /metrics`` on ``metrics_host:metrics_port``; nothing at all when the port is 0."""

    def __init__(self, metrics: Metrics, store: Store, settings: Settings) -> None:
        self.metrics = metrics
        self.settings = settings
        self.counts = JobCountsLoop(metrics, store)
        self.port = 0
        self._httpd: WSGIServer | None = None

    def start(self) -> None:
        """Listen and start refreshing; OSError when the address cannot be bound."""
        if not self.settings.metrics_port:
            return
        self._httpd, _ = start_http_server(
            self.settings.metrics_port, self.settings.metrics_host, self.metrics.registry
        )
        self.port = self._httpd.server_port
        self.counts.start()
        log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host, self.port)

    async def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        await self.counts.close()
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
