"""The HTTP/JSON API: the guide's endpoints for callers without gRPC.

    POST   /queues/{queue}/jobs               {name, data, options} -> 201 {jobId, state}
    GET    /queues/{queue}/jobs/{id}          the guide's status shape, and more
    DELETE /queues/{queue}/jobs/{id}          cancel the job
    GET    /queues/{queue}/jobs/{id}/events   the job's progress as server-sent events
    GET    /queues                            the queues with their counts
    GET    /openapi.json                      the OpenAPI document of the above

Each handler is one call of the Python client made with the caller's Bearer token; errors are
the broker's own, mapped to HTTP by :mod:`~jobbroker_dashboard.httperrors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from jobbroker import AsyncClient, Event, Job, JobBrokerError, Unauthenticated
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import jsonview, sse
from .bulloptions import add_request
from .httperrors import error_body, http_status, invalid, too_large
from .openapi import document

if TYPE_CHECKING:
    from .app import Dashboard

log = logging.getLogger("jobbroker.dashboard")

BEARER = "bearer "


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: JobBrokerError) -> JSONResponse:
    status = http_status(error)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(error), status_code=status, headers=headers)


def bearer(request: Request) -> str:
    """The caller's token from ``Authorization: Bearer <token>`` ("" without the header)."""
    header = request.headers.get("authorization")
    if header is None:
        return ""
    if not header.lower().startswith(BEARER) or not header[len(BEARER) :].strip():
        raise Unauthenticated(
            "malformed Authorization header: expected 'Bearer <token>'",
            reason="TOKEN_MALFORMED",
        )
    return header[len(BEARER) :].strip()


async def read_json(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid("body", f"is not JSON: {exc}") from None


def routes(dash: Dashboard) -> list[Route]:
    def client(request: Request) -> AsyncClient:
        return dash.clients.get(bearer(request))

    async def list_queues(request: Request) -> Response:
        queues = await client(request).queues()
        return JSONResponse({"queues": [jsonview.queue(q) for q in queues]})

    async def add_job(request: Request) -> Response:
        queue = request.path_params["queue"]
        calling = client(request)
        name, data, options = add_request(await read_json(request, dash.settings.max_body_bytes))
        added = await calling.add(queue, name, data, options=options)
        body = {"jobId": added.job_id, "state": str(added.state), "duplicate": added.duplicate}
        return JSONResponse(body, status_code=200 if added.duplicate else 201)

    async def get_job(request: Request) -> Response:
        job = await client(request).get_status(
            request.path_params["queue"], request.path_params["job_id"]
        )
        return JSONResponse(jsonview.job(job))

    async def cancel_job(request: Request) -> Response:
        queue, job_id = request.path_params["queue"], request.path_params["job_id"]
        state = await client(request).cancel(queue, job_id)
        return JSONResponse({"jobId": job_id, "state": str(state)})

    async def job_events(request: Request) -> Response:
        queue, job_id = request.path_params["queue"], request.path_params["job_id"]
        calling = client(request)
        after = request.headers.get("last-event-id", "").strip()
        # Ask once before answering 200, so that an unknown job, a refused token or an
        # unreachable broker get their HTTP status rather than an event inside a 200 stream.
        await calling.get_status(queue, job_id)
        return sse.EventStream(_job_stream(calling, queue, job_id, after))

    async def openapi(request: Request) -> Response:
        return JSONResponse(document(request.scope.get("root_path", "")))

    return [
        Route("/queues", list_queues, methods=["GET"]),
        Route("/queues/{queue}/jobs", add_job, methods=["POST"]),
        # Before the job's own route: a job id may hold '/', so that route's id would take
        # the '/events' too.
        Route("/queues/{queue}/jobs/{job_id:path}/events", job_events, methods=["GET"]),
        Route("/queues/{queue}/jobs/{job_id:path}", get_job, methods=["GET"]),
        Route("/queues/{queue}/jobs/{job_id:path}", cancel_job, methods=["DELETE"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


async def _job_stream(
    client: AsyncClient, queue: str, job_id: str, after: str
) -> AsyncIterator[str]:
    """The job's snapshot (``snapshot``), then each event named by its type with its id (what
    ``Last-Event-ID`` resumes after), then ``end`` once the job finished."""
    yield sse.message("{}", event="open", retry_ms=1000)
    stream = client.stream_progress(queue, job_id, after_event_id=after)
    async with contextlib.aclosing(stream):
        try:
            async for item in _with_keepalive(stream):
                if item is None:
                    yield sse.comment()
                elif isinstance(item, Job):
                    yield sse.message(_dumps(jsonview.job(item)), event="snapshot")
                else:
                    yield _event_message(item)
                    if item.final:
                        break
        except JobBrokerError as exc:
            yield sse.message(_dumps(error_body(exc)), event="error")
            return
    yield sse.message("{}", event="end")


def _event_message(event: Event) -> str:
    return sse.message(_dumps(jsonview.event(event)), event=str(event.type), event_id=event.id)


async def _with_keepalive(stream: AsyncIterator[Job | Event]) -> AsyncIterator[Job | Event | None]:
    """The stream's items, and None after each :data:`sse.KEEPALIVE` seconds of silence."""
    pending: asyncio.Future[Job | Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({pending}, timeout=sse.KEEPALIVE)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _dumps(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value).decode()


def exception_handlers() -> dict[Any, Any]:
    async def broker_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JobBrokerError)
        return error_response(exc)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("HTTP API %s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"code": "INTERNAL", "reason": "", "message": "internal error", "metadata": {}},
            status_code=500,
        )

    return {JobBrokerError: broker_error, Exception: unexpected}
