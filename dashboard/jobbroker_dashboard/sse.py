"""Server-sent events: the message format, and a response that stops when the browser leaves.

A page's stream and an API caller's stream both end as soon as the client disconnects (the
ASGI ``http.disconnect``), whether or not anything is being sent at the time, so a closed tab
releases its place on the queue's hub at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("jobbroker.dashboard")

KEEPALIVE = 15.0
"""Seconds of silence after which a comment line is sent, so proxies keep the stream open."""


def message(data: str, event: str = "", event_id: str = "", retry_ms: int = 0) -> str:
    """One SSE message; ``data`` may span lines (each becomes a ``data:`` line)."""
    lines = []
    if retry_ms:
        lines.append(f"retry: {retry_ms}")
    if event_id:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


def comment(text: str = "keepalive") -> str:
    return f": {text}\n\n"


class EventStream(Response):
    """An ASGI response sending ``stream``'s messages as ``text/event-stream``."""

    def __init__(
        self, stream: AsyncIterator[str], headers: Mapping[str, str] | None = None
    ) -> None:
        self.stream = stream
        self.extra_headers = dict(headers or {})
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            # nginx would otherwise hold the messages back in its buffer.
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode(), v.encode()) for k, v in self.extra_headers.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def pump() -> None:
            async for chunk in self.stream:
                await send(
                    {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(disconnected())
        stopped = False
        try:
            await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The server is stopping and cancels the streams still open (uvicorn, after its
            # graceful timeout): end this one as if it had run out, rather than leave a
            # traceback per open page in the log.
            stopped = True
        finally:
            for task in (pumping, watching):
                task.cancel()
            # A stopping server may cancel again while this cleans up: finish the cleanup.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(pumping, watching, return_exceptions=True)
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await aclose()
        if stopped:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not pumping.done() or pumping.cancelled():
            return  # the client left
        error = pumping.exception()
        if error is not None:
            log.error("event stream %s failed", scope.get("path"), exc_info=error)
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
