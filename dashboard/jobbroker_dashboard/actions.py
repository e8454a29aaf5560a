"""The dashboard's write actions (POST forms): on jobs, on queues, on schedules.

Each checks the form's CSRF token, then what the caller's token may do on the queue (a
read-only token gets 403 here, and the broker would refuse it anyway), makes one client call
with the caller's token, and sends the browser back to the page it came from.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from jobbroker import AsyncClient, PermissionDenied
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .bulloptions import add_request
from .httperrors import invalid, too_large
from .security import CSRF_FIELD

if TYPE_CHECKING:
    from .app import Dashboard

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

Action = Callable[[AsyncClient, str, FormData], Awaitable[str]]
"""Does the action; returns the notice to show."""


def duration(text: str, field: str) -> float:
    """``30``, ``500ms``, ``30s``, ``5m``, ``2h``, ``1d`` as seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise invalid(field, f"must be a duration such as 30s, 5m, 1h or 1d (got {text!r})")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


async def _retry(client: AsyncClient, queue: str, form: FormData) -> str:
    job_id = _field(form, "job_id")
    state = await client.retry(queue, job_id)
    return f"Job {job_id} retried: {state}"


async def _promote(client: AsyncClient, queue: str, form: FormData) -> str:
    job_id = _field(form, "job_id")
    state = await client.promote(queue, job_id)
    return f"Job {job_id} promoted: {state}"


async def _remove(client: AsyncClient, queue: str, form: FormData) -> str:
    job_id = _field(form, "job_id")
    await client.remove(queue, job_id)
    return f"Job {job_id} removed"


async def _cancel(client: AsyncClient, queue: str, form: FormData) -> str:
    job_id = _field(form, "job_id")
    state = await client.cancel(queue, job_id, "cancelled from the dashboard")
    if state.value == "active":
        return f"Job {job_id}: cancel requested; its worker is told to stop"
    return f"Job {job_id} cancelled"


async def _pause(client: AsyncClient, queue: str, form: FormData) -> str:
    await client.pause(queue)
    return f"Queue {queue} paused"


async def _resume(client: AsyncClient, queue: str, form: FormData) -> str:
    await client.resume(queue)
    return f"Queue {queue} resumed"


async def _drain(client: AsyncClient, queue: str, form: FormData) -> str:
    removed = await client.drain(queue, include_delayed=_field(form, "delayed") == "1")
    return f"{removed} jobs drained from {queue}"


async def _clean(client: AsyncClient, queue: str, form: FormData) -> str:
    state = _field(form, "state") or "completed"
    grace = duration(_field(form, "grace") or "0", "grace")
    limit_text = _field(form, "limit") or "1000"
    if not limit_text.isdigit():
        raise invalid("limit", f"must be a whole number (got {limit_text!r})")
    removed = await client.clean(queue, state, grace=grace, limit=int(limit_text))
    return f"{len(removed)} {state} jobs cleaned from {queue}"


async def _retry_failed(client: AsyncClient, queue: str, form: FormData) -> str:
    retried = await client.retry_failed(queue)
    return f"{retried} failed jobs retried"


async def _promote_delayed(client: AsyncClient, queue: str, form: FormData) -> str:
    promoted = await client.promote_delayed(queue)
    return f"{promoted} delayed jobs promoted"


async def _add(client: AsyncClient, queue: str, form: FormData) -> str:
    body: dict[str, Any] = {"name": _field(form, "name")}
    for name in ("data", "options"):
        text = _field(form, name).strip()
        if text:
            try:
                body[name] = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise invalid(name, f"is not JSON: {exc}") from None
    name, data, options = add_request(body)
    added = await client.add(queue, name, data, options=options)
    return f"Job {added.job_id} added: {added.state}" + (
        " (already there)" if added.duplicate else ""
    )


async def _remove_schedule(client: AsyncClient, queue: str, form: FormData) -> str:
    key = _field(form, "key")
    await client.remove_schedule(queue, key)
    return f"Schedule {key} removed"


JOB_ACTIONS: dict[str, tuple[str, Action]] = {
    "retry": ("admin", _retry),
    "promote": ("admin", _promote),
    "remove": ("admin", _remove),
    "cancel": ("produce", _cancel),
}
QUEUE_ACTIONS: dict[str, tuple[str, Action]] = {
    "pause": ("admin", _pause),
    "resume": ("admin", _resume),
    "drain": ("admin", _drain),
    "clean": ("admin", _clean),
    "retry-failed": ("admin", _retry_failed),
    "promote-delayed": ("admin", _promote_delayed),
    "add": ("produce", _add),
}
SCHEDULE_ACTIONS: dict[str, tuple[str, Action]] = {"remove": ("admin", _remove_schedule)}


def routes(dash: Dashboard) -> list[Route]:
    def back(request: Request, form: FormData, queue: str, notice: str) -> str:
        """Where to send the browser: the page it came from (a path of this app only)."""
        root = request.scope.get("root_path", "")
        wanted = _field(form, "next")
        # Only a path of this app: not another host ("//h", and "/\\h", which browsers read
        # as "//h"), nor anything with control characters.
        safe = wanted.startswith(root + "/") and not wanted.startswith("//")
        if not safe or "\\" in wanted or any(ord(c) < 32 for c in wanted):
            job_id = _field(form, "job_id")
            parts = ("queues", queue, "jobs", job_id) if job_id else ("queues", queue)
            wanted = dash.href(request, *parts)
        wanted = re.sub(r"([?&])notice=[^&]*&?", r"\1", wanted).rstrip("?&")
        separator = "&" if "?" in wanted else "?"
        return f"{wanted}{separator}notice={quote(notice)}"

    def handler(table: dict[str, tuple[str, Action]]) -> Callable[[Request], Awaitable[Response]]:
        async def act(request: Request) -> Response:
            queue, name = request.path_params["queue"], request.path_params["action"]
            entry = table.get(name)
            if entry is None:
                return Response("no such action", status_code=404)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > dash.settings.max_body_bytes:
                raise too_large(dash.settings.max_body_bytes)
            form = await request.form()
            if not dash.csrf.valid(request, _field(form, CSRF_FIELD)):
                return dash.html(
                    request,
                    "error.html",
                    403,
                    heading="Refused",
                    message="The form's CSRF token is missing or stale: reload the page and "
                    "try again.",
                    code="",
                    reason="",
                    back="",
                )
            role, action = entry
            client = dash.client(request)
            caps = await dash.access.capabilities(client, queue)
            if not getattr(caps, role):
                raise PermissionDenied(
                    f"this token may not {name} on queue {queue!r} (it needs the "
                    f"{'admin' if role == 'admin' else 'producer'} role)",
                    metadata={"queue": queue, "permission": role},
                )
            try:
                notice = await action(client, queue, form)
            finally:
                # What the pages show changed: the next read goes to the broker.
                dash.shared.clear()
            return RedirectResponse(back(request, form, queue, notice), 303)

        return act

    return [
        Route("/queues/{queue}/job-actions/{action}", handler(JOB_ACTIONS), methods=["POST"]),
        Route(
            "/queues/{queue}/schedule-actions/{action}", handler(SCHEDULE_ACTIONS), methods=["POST"]
        ),
        Route("/queues/{queue}/{action}", handler(QUEUE_ACTIONS), methods=["POST"]),
    ]
