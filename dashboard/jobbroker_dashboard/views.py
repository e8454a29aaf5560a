"""What each page shows, read from the broker: used for a whole page and for its live parts.

Every read goes through :class:`~jobbroker_dashboard.share.Shared`, keyed by the client (one per
token) and the call, so the pages open on one queue share each answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from jobbroker import AsyncClient, JobState, QueueInfo, Schedule, WorkerInfo
from jobbroker.client import Logs, Page

from .charts import MinuteCounts, failure_chart, throughput_chart

if TYPE_CHECKING:
    from .app import Dashboard

T = TypeVar("T")

STATES = [state.value for state in JobState]
PAGE_SIZE = 50
"""Jobs per page of the jobs list."""
MAX_LOG_LINES = 1_000
"""Log lines a job's page shows at most (the newest); GetLogs' own page limit."""


@dataclass(frozen=True, slots=True)
class QueueRow:
    info: QueueInfo
    workers: int


@dataclass(frozen=True, slots=True)
class QueuePage:
    rows: list[QueueRow]
    number: int
    pages: int
    total: int


class Views:
    """The reads of one page. A live page sets :attr:`version` before each update: the event
    counts of its queues' hubs. Pages updating after the same events share each answer; an
    answer read before a newer event is never reused for it."""

    def __init__(self, dash: Dashboard, client: AsyncClient) -> None:
        self.dash = dash
        self.client = client
        self.version: tuple[int, ...] | None = None
        """None (a page being loaded): every read goes to the broker."""

    def _get(self, key: tuple[Any, ...], make: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        if self.version is None:
            return make()
        return self.dash.shared.get((self.client, self.version, *key), make)

    async def queue_infos(self) -> list[QueueInfo]:
        return await self._get(("queues",), self.client.queues)

    async def queue_info(self, queue: str) -> QueueInfo:
        return await self._get(("queue", queue), lambda: self.client.queue(queue))

    async def workers(self, queue: str) -> list[WorkerInfo]:
        return await self._get(("workers", queue), lambda: self.client.workers(queue))

    async def queue_page(self, number: int, search: str) -> QueuePage:
        """One page of the queues (by name) whose name holds ``search``, with their workers."""
        size = self.dash.settings.queues_per_page
        infos = sorted(
            (info for info in await self.queue_infos() if search in info.name),
            key=lambda info: info.name,
        )
        pages = max(1, -(-len(infos) // size))
        number = min(max(1, number), pages)
        shown = infos[(number - 1) * size : number * size]
        workers = await asyncio.gather(*(self.workers(info.name) for info in shown))
        rows = [QueueRow(info, len(w)) for info, w in zip(shown, workers, strict=True)]
        return QueuePage(rows, number, pages, len(infos))

    async def summary(self, queue: str) -> dict[str, Any]:
        info, workers = await asyncio.gather(self.queue_info(queue), self.workers(queue))
        return {"queue": queue, "info": info, "workers": len(workers)}

    def charts(self, queue: str) -> dict[str, Any]:
        hub = self.dash.hubs.peek(self.client, queue)
        now = int(time.time() * 1000)
        rows = (
            hub.stats.window(now)
            if hub is not None
            else MinuteCounts(self.dash.settings.chart_minutes).window(now)
        )
        return {"charts": [throughput_chart(rows), failure_chart(rows)]}

    async def jobs(self, queue: str, state: str, cursor: str, descending: bool) -> Page:
        return await self._get(
            ("jobs", queue, state, cursor, descending),
            lambda: self.client.list(
                queue, state, page_size=PAGE_SIZE, page_token=cursor, descending=descending
            ),
        )

    async def job(self, queue: str, job_id: str) -> Any:
        return await self._get(
            ("job", queue, job_id), lambda: self.client.get_status(queue, job_id)
        )

    async def logs(self, queue: str, job_id: str, offset: int) -> Logs:
        return await self._get(
            ("logs", queue, job_id, offset),
            lambda: self.client.logs(queue, job_id, offset=offset, limit=MAX_LOG_LINES),
        )

    async def tail(self, queue: str, job_id: str, total: int) -> Logs:
        """The newest lines (at most :data:`MAX_LOG_LINES`) of a job that has ``total``."""
        return await self.logs(queue, job_id, max(0, total - MAX_LOG_LINES))

    async def schedules(self, queue: str) -> list[Schedule]:
        return await self._get(("schedules", queue), lambda: self.client.schedules(queue))

    def timeline(self, queue: str, job_id: str) -> list[Any]:
        hub = self.dash.hubs.peek(self.client, queue)
        return hub.timeline(job_id) if hub is not None else []
