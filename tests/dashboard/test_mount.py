"""The dashboard mounted into another ASGI app, as bull-board mounts into Express: its links,
forms, static files, live streams and API work under the paths it is given."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from client.conftest import RunningBroker
from jobbroker import Client
from jobbroker_dashboard import DashboardSettings
from jobbroker_dashboard.app import Dashboard
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from .conftest import Served, serve


@pytest.fixture
def host_app(broker: RunningBroker) -> Iterator[Served]:
    dashboard = Dashboard(DashboardSettings(address=broker.address))

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the user's own app")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.close()  # a mounted app's own lifespan is not run: the host closes it

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", home),
            Mount("/ops/jobs", app=dashboard.pages()),
            Mount("/v1", app=dashboard.api()),
        ],
    )
    served = serve(app)
    yield served
    served.stop()


def test_pages_and_api_work_where_they_are_mounted(
    host_app: Served, client: Client, queue: str
) -> None:
    with httpx.Client(base_url=host_app.url, timeout=20) as http:
        assert http.get("/").text == "the user's own app"
        added = http.post(f"/v1/queues/{queue}/jobs", json={"name": "mounted"})
        assert added.status_code == 201
        job_id = added.json()["jobId"]
        page = http.get(f"/ops/jobs/queues/{queue}/jobs")
        assert page.status_code == 200
        links = re.findall(r'(?:href|src|action|sse-connect)="([^"]+)"', page.text)
        assert links
        assert all(link.startswith("/ops/jobs/") for link in links if link != "data:,"), links
        assert f'href="/ops/jobs/queues/{queue}/jobs/{job_id}"' in page.text
        assert http.get("/ops/jobs/static/htmx.min.js").status_code == 200
        assert http.get("/v1/openapi.json").json()["servers"] == [{"url": "/v1"}]
        job = http.get(f"/ops/jobs/queues/{queue}/jobs/{job_id}")
        assert "mounted" in job.text
