"""Live pages: each open page holds one server-sent event stream, fed by its queue's hub.

When the hub says an event arrived, the page's parts are read again (shared with every other
page that needs the same answer) and sent as HTML fragments that htmx swaps in: the queue
list's rows, a queue's counts and charts, a jobs list's tabs and first page, a job's details,
timeline and new log lines. Updates of one page are at least ``live_interval`` apart; events in
between are folded into the next update. Nothing is polled: a page with no event is not read
again.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from jobbroker import JobBrokerError, JobNotFound
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import sse
from .hubs import Subscriber
from .pages import queue_page
from .views import STATES, Views

if TYPE_CHECKING:
    from .app import Dashboard

RETRY_STEP = 1.0
RETRY_MAX = 5.0
"""A page's update that failed is tried again after RETRY_STEP, 2 * RETRY_STEP ... RETRY_MAX
seconds."""

Render = Callable[[], Awaitable[list[tuple[str, str]]]]
"""Reads and renders a page's live parts: (SSE event name, HTML) pairs."""


def routes(dash: Dashboard) -> list[Route]:
    def fragment(request: Request, template: str, **context: Any) -> str:
        return dash.render(request, template, **context)

    def stream(
        views: Views,
        queues: list[str],
        render: Render,
        job_id: str | None = None,
        history: bool = False,
    ) -> Response:
        subscriber = Subscriber(job_id)
        return sse.EventStream(_updates(dash, views, queues, subscriber, render, history))

    async def queues(request: Request) -> Response:
        v = Views(dash, dash.client(request))
        number, search = queue_page(request)
        followed = [row.info.name for row in (await v.queue_page(number, search)).rows]

        async def render() -> list[tuple[str, str]]:
            page = await v.queue_page(number, search)
            return [("queues", fragment(request, "_queues_rows.html", rows=page.rows))]

        return stream(v, followed, render)

    async def overview(request: Request) -> Response:
        name = request.path_params["queue"]
        v = Views(dash, dash.client(request))
        await v.queue_info(name)  # a bad queue name or token is answered before the stream
        caps = await dash.access.capabilities(v.client, name)

        async def render() -> list[tuple[str, str]]:
            summary = await v.summary(name)
            return [
                ("summary", fragment(request, "_queue_summary.html", caps=caps, **summary)),
                ("charts", fragment(request, "_charts.html", **v.charts(name))),
            ]

        return stream(v, [name], render, history=True)

    async def jobs(request: Request) -> Response:
        name = request.path_params["queue"]
        state = request.query_params.get("state", "waiting")
        state = state if state in STATES else "waiting"
        cursor = request.query_params.get("cursor", "")
        descending = request.query_params.get("desc") in ("1", "True", "true")
        v = Views(dash, dash.client(request))
        await v.queue_info(name)  # a bad queue name or token is answered before the stream

        async def render() -> list[tuple[str, str]]:
            info = await v.queue_info(name)
            parts = [
                (
                    "states",
                    fragment(
                        request,
                        "_job_states.html",
                        queue=name,
                        state=state,
                        states=STATES,
                        info=info,
                    ),
                )
            ]
            if not cursor:
                # Later pages stay as they are: rows shifting under the reader would be worse.
                page = await v.jobs(name, state, "", descending)
                parts.append(
                    (
                        "rows",
                        fragment(request, "_job_rows.html", queue=name, state=state, page=page),
                    )
                )
            return parts

        return stream(v, [name], render)

    async def job(request: Request) -> Response:
        name, job_id = request.path_params["queue"], request.path_params["job_id"]
        v = Views(dash, dash.client(request))
        await v.job(name, job_id)  # an unknown job or a bad token is answered before the stream
        caps = await dash.access.capabilities(v.client, name)
        shown = request.query_params.get("logs", "0")
        offset = int(shown) if shown.isdigit() else 0

        async def render() -> list[tuple[str, str]]:
            nonlocal offset
            try:
                found = await v.job(name, job_id)
            except JobNotFound:
                return [("job", fragment(request, "_gone.html", job_id=job_id))]
            parts = [
                ("job", fragment(request, "_job_detail.html", queue=name, job=found, caps=caps)),
                (
                    "timeline",
                    fragment(
                        request, "_job_timeline.html", job=found, timeline=v.timeline(name, job_id)
                    ),
                ),
            ]
            if found.log_count > offset:
                logs = await v.logs(name, job_id, offset)
                offset += len(logs.lines)
                parts.append(("logs", fragment(request, "_log_lines.html", lines=logs.lines)))
            return parts

        return stream(v, [name], render, job_id, history=True)

    async def schedules(request: Request) -> Response:
        name = request.path_params["queue"]
        v = Views(dash, dash.client(request))
        await v.queue_info(name)  # a bad queue name or token is answered before the stream
        caps = await dash.access.capabilities(v.client, name)

        async def render() -> list[tuple[str, str]]:
            found = await v.schedules(name)
            rows = fragment(request, "_schedule_rows.html", queue=name, schedules=found, caps=caps)
            return [("schedules", rows)]

        return stream(v, [name], render)

    async def workers(request: Request) -> Response:
        name = request.path_params["queue"]
        v = Views(dash, dash.client(request))
        await v.queue_info(name)  # a bad queue name or token is answered before the stream

        async def render() -> list[tuple[str, str]]:
            found = await v.workers(name)
            return [("workers", fragment(request, "_worker_rows.html", workers=found))]

        return stream(v, [name], render)

    return [
        Route("/live/queues", queues, methods=["GET"]),
        Route("/live/queues/{queue}/overview", overview, methods=["GET"]),
        Route("/live/queues/{queue}/jobs", jobs, methods=["GET"]),
        Route("/live/queues/{queue}/schedules", schedules, methods=["GET"]),
        Route("/live/queues/{queue}/workers", workers, methods=["GET"]),
        Route("/live/queues/{queue}/job/{job_id:path}", job, methods=["GET"]),
    ]


async def _updates(
    dash: Dashboard,
    views: Views,
    queues: list[str],
    subscriber: Subscriber,
    render: Render,
    history: bool,
) -> AsyncIterator[str]:
    """The page's stream: subscribed to its queues' hubs while it is open."""
    hubs = [dash.hubs.get(views.client, queue) for queue in queues]
    unsubscribe = [hub.subscribe(subscriber, history) for hub in hubs]
    # One update at once: what changed between the page's rendering and this stream's start
    # would otherwise wait for the next event.
    subscriber.changed.set()
    failures = 0
    try:
        yield sse.message("", event="open", retry_ms=2000)
        while True:
            try:
                await asyncio.wait_for(subscriber.changed.wait(), sse.KEEPALIVE)
            except TimeoutError:
                yield sse.comment()
                continue
            subscriber.changed.clear()
            if subscriber.error is not None:
                # Escaped like any page text: the message may quote a queue or token name.
                text = html.escape(f"Live updates stopped: {subscriber.error.message}")
                yield sse.message(text, event="failed")
                return
            views.version = tuple(hub.seq for hub in hubs)
            try:
                parts = await render()
            except JobBrokerError:
                # An outage, a slow broker or a rate limit leaves the page as it is, and the
                # update is tried again (1 s, 2 s, ... 5 s apart): the change it was for may be
                # the last event for a long time.
                failures += 1
                await asyncio.sleep(min(RETRY_MAX, failures * RETRY_STEP))
                subscriber.changed.set()
                continue
            failures = 0
            for name, part in parts:
                yield sse.message(part, event=name)
    finally:
        for stop in unsubscribe:
            stop()
