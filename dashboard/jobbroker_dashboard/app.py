"""Dashboard: the state one dashboard process shares (broker clients, hubs, shared answers,
templates), and the ASGI apps built on it.

    create_app(settings)          pages at /admin/queues, the HTTP API at /api, / redirects
    Dashboard(settings).pages()   the pages alone, to mount anywhere
    Dashboard(settings).api()     the HTTP/JSON API alone, to mount anywhere

Everything is made on first use inside the serving event loop, so the apps can be mounted into
another app (whose lifespan does not reach mounted apps); call ``await dashboard.close()``
when that app stops, or let ``create_app``'s own lifespan do it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from jobbroker import AsyncClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from .access import Access
from .clients import ClientPool
from .hubs import Hubs
from .security import TOKEN_COOKIE, Csrf, SecurityHeaders
from .settings import DEFAULT_PREFIX, DashboardSettings
from .share import Shared
from .templating import environment
from .timing import ServerTiming


class Dashboard:
    """One dashboard: its broker clients, hubs and templates, shared by its pages and API."""

    def __init__(self, settings: DashboardSettings | None = None) -> None:
        self.settings = settings or DashboardSettings()
        self.clients = ClientPool(self.settings)
        self.hubs = Hubs(self.settings.chart_minutes, self.settings.live_interval)
        self.shared = Shared(self.settings.share_ttl)
        self.access = Access()
        self.csrf = Csrf(self.settings.secret, self.settings.secure_cookies)
        self.templates = environment()

    # --- the apps ---------------------------------------------------------------------------

    def pages(self) -> Starlette:
        """The dashboard's pages, live streams and static files (mount it anywhere)."""
        from . import actions, live, pages

        routes = [*pages.routes(self), *actions.routes(self), *live.routes(self)]
        return Starlette(
            routes=routes,
            middleware=[Middleware(ServerTiming), Middleware(SecurityHeaders)],
            exception_handlers=pages.exception_handlers(self),
        )

    def api(self) -> Starlette:
        """The HTTP/JSON API (mount it anywhere; ``/api`` in ``create_app``)."""
        from . import api

        return Starlette(
            routes=api.routes(self),
            middleware=[Middleware(ServerTiming), Middleware(SecurityHeaders)],
            exception_handlers=api.exception_handlers(),
        )

    def app(self, prefix: str = DEFAULT_PREFIX, api_prefix: str = "/api") -> Starlette:
        """The pages under ``prefix``, the API under ``api_prefix``, and ``/`` redirecting to
        the pages: what ``jobbroker dashboard`` serves."""
        prefix = "/" + prefix.strip("/")

        async def home(request: Request) -> Response:
            return RedirectResponse(request.scope.get("root_path", "") + prefix + "/", 307)

        routes: list[Route | Mount] = [Route("/", home)]
        if api_prefix:
            routes.append(Mount("/" + api_prefix.strip("/"), app=self.api()))
        routes.append(Mount(prefix, app=self.pages()))

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await self.close()

        return Starlette(routes=routes, lifespan=lifespan)

    async def close(self) -> None:
        """Stop the hubs and close the broker clients."""
        await self.hubs.close()
        await self.clients.close()
        self.shared.clear()

    # --- helpers of the handlers --------------------------------------------------------------

    def token(self, request: Request) -> str:
        """The browser's broker token (its cookie), or ""."""
        return request.cookies.get(TOKEN_COOKIE, "")

    def client(self, request: Request) -> AsyncClient:
        return self.clients.get(self.token(request))

    def href(self, request: Request, *parts: str, **query: Any) -> str:
        """A path of this app (under its mount point), each part percent-encoded (job ids may
        hold '/', '?' or '#'), with the query's non-empty values."""
        root: str = request.scope.get("root_path", "")
        path = root + "/" + "/".join(quote(p, safe="") for p in parts)
        kept = {k: v for k, v in query.items() if v not in (None, "", False)}
        return path + ("?" + urlencode(kept) if kept else "")

    def html(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        response = HTMLResponse(self.render(request, template, **context), status_code=status)
        response.headers["cache-control"] = "no-store"
        self.csrf.set_cookie(request, response)
        return response

    def render(self, request: Request, template: str, **context: Any) -> str:
        base = {
            "request": request,
            "title": self.settings.title,
            "href": lambda *parts, **query: self.href(request, *parts, **query),
            "csrf": self.csrf.token(request),
            "signed_in": bool(self.token(request)),
            "notice": request.query_params.get("notice", ""),
            "live": "",
            "next_url": _here(request),
        }
        base.update(context)
        return str(self.templates.get_template(template).render(base))


def _here(request: Request) -> str:
    """This page's path and query, less its notice: where an action sends the browser back."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "notice"]
    return request.url.path + ("?" + urlencode(query) if query else "")


def create_app(
    settings: DashboardSettings | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    api_prefix: str = "/api",
) -> Starlette:
    """The dashboard's pages under ``prefix`` and its HTTP API under ``api_prefix`` ("" for
    none), as one ASGI app; its lifespan closes the broker clients."""
    return Dashboard(settings).app(prefix, api_prefix)
