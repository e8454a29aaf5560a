"""The dashboard's pages (GET), sign-in and sign-out, and how broker errors show on a page."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from jobbroker import JobBrokerError, JobNotFound, Unauthenticated
from jobbroker.v1 import job_pb2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .httperrors import http_status
from .security import CSRF_FIELD, TOKEN_COOKIE, delete_cookie, set_cookie
from .views import STATES, Views

if TYPE_CHECKING:
    from .app import Dashboard

log = logging.getLogger("jobbroker.dashboard")


def _state(request: Request) -> str:
    state = request.query_params.get("state", "waiting")
    return state if state in STATES else "waiting"


def queue_page(request: Request) -> tuple[int, str]:
    """The queue list's page number and name filter."""
    number = request.query_params.get("page", "1")
    return int(number) if number.isdigit() else 1, request.query_params.get("q", "").strip()


def _options(job: Any) -> dict[str, Any]:
    """The job's options as Bull names them (what the add form and the HTTP API take)."""
    if job.proto is None:
        return {}
    opts = job.proto.options
    shown: dict[str, Any] = {"attempts": opts.attempts or 1}
    for name, value in (
        ("jobId", opts.job_id),
        ("priority", opts.priority),
        ("delay", opts.delay_ms),
        ("timeout", opts.timeout_ms),
        ("lifespan", opts.lifespan_ms),
        ("lifo", opts.lifo),
        ("group", opts.group),
    ):
        if value:
            shown[name] = value
    if opts.HasField("backoff"):
        kind = "fixed" if opts.backoff.type == job_pb2.BACKOFF_TYPE_FIXED else "exponential"
        shown["backoff"] = {"type": kind, "delay": opts.backoff.delay_ms}
    for name, field in (
        ("removeOnComplete", "remove_on_complete"),
        ("removeOnFail", "remove_on_fail"),
    ):
        if opts.HasField(field):
            policy = getattr(opts, field)
            if policy.remove:
                shown[name] = True
            elif policy.keep_age_ms:
                shown[name] = {"count": policy.keep_last, "age": policy.keep_age_ms / 1000}
            else:
                shown[name] = policy.keep_last
    return shown


def routes(dash: Dashboard) -> list[Route | Mount]:
    def views(request: Request) -> Views:
        return Views(dash, dash.client(request))

    def live_url(request: Request, *parts: str, **query: Any) -> str:
        return dash.href(request, "live", *parts, **query)

    async def queues(request: Request) -> Response:
        number, search = queue_page(request)
        page = await views(request).queue_page(number, search)
        return dash.html(
            request,
            "queues.html",
            page=page,
            rows=page.rows,
            search=search,
            live=live_url(request, "queues", page=page.number, q=search),
        )

    async def queue(request: Request) -> Response:
        name = request.path_params["queue"]
        v = views(request)
        summary = await v.summary(name)
        caps = await dash.access.capabilities(v.client, name)
        return dash.html(
            request,
            "queue.html",
            caps=caps,
            **summary,
            **v.charts(name),
            live=live_url(request, "queues", name, "overview"),
        )

    async def jobs(request: Request) -> Response:
        name = request.path_params["queue"]
        state = _state(request)
        v = views(request)
        searched = request.query_params.get("id", "").strip()
        if searched:
            try:
                await v.job(name, searched)
            except JobNotFound:
                pass
            else:
                return RedirectResponse(dash.href(request, "queues", name, "jobs", searched), 303)
        cursor = request.query_params.get("cursor", "")
        descending = request.query_params.get("desc") in ("1", "True", "true")
        page = await v.jobs(name, state, cursor, descending)
        info = await v.queue_info(name)
        caps = await dash.access.capabilities(v.client, name)
        return dash.html(
            request,
            "jobs.html",
            queue=name,
            state=state,
            states=STATES,
            info=info,
            page=page,
            cursor=cursor,
            descending=descending,
            searched=searched,
            not_found=bool(searched),
            caps=caps,
            live=live_url(
                request, "queues", name, "jobs", state=state, cursor=cursor, desc=descending
            ),
        )

    async def job(request: Request) -> Response:
        name, job_id = request.path_params["queue"], request.path_params["job_id"]
        v = views(request)
        found = await v.job(name, job_id)
        logs = await v.tail(name, job_id, found.log_count)
        caps = await dash.access.capabilities(v.client, name)
        return dash.html(
            request,
            "job.html",
            queue=name,
            job=found,
            options=_options(found),
            logs=logs,
            lines=logs.lines,
            timeline=v.timeline(name, job_id),
            caps=caps,
            live=live_url(request, "queues", name, "job", job_id, logs=logs.total or "0"),
        )

    async def schedules(request: Request) -> Response:
        name = request.path_params["queue"]
        v = views(request)
        found = await v.schedules(name)
        caps = await dash.access.capabilities(v.client, name)
        return dash.html(
            request,
            "schedules.html",
            queue=name,
            schedules=found,
            caps=caps,
            live=live_url(request, "queues", name, "schedules"),
        )

    async def workers(request: Request) -> Response:
        name = request.path_params["queue"]
        found = await views(request).workers(name)
        return dash.html(
            request,
            "workers.html",
            queue=name,
            workers=found,
            live=live_url(request, "queues", name, "workers"),
        )

    async def login_form(request: Request) -> Response:
        return dash.html(request, "login.html", error="")

    async def login(request: Request) -> Response:
        form = await request.form()
        if not dash.csrf.valid(request, str(form.get(CSRF_FIELD, ""))):
            return dash.html(request, "login.html", 403, error="The form expired: sign in again.")
        token = str(form.get("token", "")).strip()
        try:
            await dash.clients.get(token).queues()
        except Unauthenticated as exc:
            dash.clients.forget(token)
            return dash.html(request, "login.html", 401, error=f"Refused: {exc.message}")
        response = RedirectResponse(dash.href(request), 303)
        set_cookie(request, response, TOKEN_COOKIE, token, dash.settings.secure_cookies)
        return response

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not dash.csrf.valid(request, str(form.get(CSRF_FIELD, ""))):
            return dash.html(request, "error.html", 403, **_error_page("The form expired."))
        response = RedirectResponse(dash.href(request, "login"), 303)
        delete_cookie(request, response, TOKEN_COOKIE, dash.settings.secure_cookies)
        return response

    return [
        Route("/", queues, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/queues/{queue}", queue, methods=["GET"]),
        Route("/queues/{queue}/jobs", jobs, methods=["GET"]),
        Route("/queues/{queue}/schedules", schedules, methods=["GET"]),
        Route("/queues/{queue}/workers", workers, methods=["GET"]),
        Route("/queues/{queue}/jobs/{job_id:path}", job, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("jobbroker_dashboard", "static")]), name="static"),
    ]


def _error_page(
    message: str, heading: str = "Refused", error: JobBrokerError | None = None
) -> dict[str, Any]:
    return {
        "heading": heading,
        "message": message,
        "code": "" if error is None else error.code.name,
        "reason": "" if error is None else error.reason,
        "back": "",
    }


def exception_handlers(dash: Dashboard) -> dict[Any, Any]:
    async def broker_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JobBrokerError)
        if isinstance(exc, Unauthenticated):
            # The broker wants a token (or refused this one): ask for one.
            token = dash.token(request)
            response = RedirectResponse(dash.href(request, "login"), 303)
            if token:
                dash.clients.forget(token)
                delete_cookie(request, response, TOKEN_COOKIE, dash.settings.secure_cookies)
            return response
        status = http_status(exc)
        heading = {404: "Not found", 503: "Broker unavailable"}.get(status, "Refused")
        return dash.html(request, "error.html", status, **_error_page(exc.message, heading, exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("dashboard page %s failed", request.url.path)
        return dash.html(
            request, "error.html", 500, **_error_page("Something went wrong.", "Error")
        )

    return {JobBrokerError: broker_error, Exception: unexpected}
