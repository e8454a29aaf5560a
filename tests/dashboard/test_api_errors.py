"""Every HTTP status the API maps from the broker's errors, each with the broker's own
``{code, reason, message, metadata}``: 400, 401, 403, 404, 409, 413, 429 and 503."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from client.conftest import SETTINGS, RunningBroker
from jobbroker_broker.server.app import Broker
from jobbroker_dashboard import DashboardSettings, create_app
from ports import free_port

from .conftest import Host, Secured, Served, serve


def _error(reply: httpx.Response, status: int, code: str, reason: str) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"code", "reason", "message", "metadata"}
    assert (body["code"], body["reason"]) == (code, reason)
    assert body["message"]
    return body


def test_a_body_that_is_not_json_is_400(http: httpx.Client, queue: str) -> None:
    reply = http.post(
        f"/api/queues/{queue}/jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    body = _error(reply, 400, "INVALID_ARGUMENT", "INVALID_FIELD")
    assert body["metadata"] == {"field": "body"}


def test_an_unknown_option_is_400_naming_it(http: httpx.Client, queue: str) -> None:
    reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x", "options": {"retries": 3}})
    body = _error(reply, 400, "INVALID_ARGUMENT", "INVALID_FIELD")
    assert body["metadata"] == {"field": "options.retries"}


def test_an_option_out_of_range_is_400_under_bulls_name(http: httpx.Client, queue: str) -> None:
    reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x", "options": {"attempts": 0}})
    assert _error(reply, 400, "INVALID_ARGUMENT", "INVALID_FIELD")["metadata"] == {
        "field": "options.attempts"
    }
    reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x", "options": {"delay": -5}})
    assert _error(reply, 400, "INVALID_ARGUMENT", "INVALID_FIELD")["metadata"] == {
        "field": "options.delay"
    }


def test_a_queue_name_the_broker_refuses_is_400(http: httpx.Client) -> None:
    reply = http.post("/api/queues/bad%20name/jobs", json={"name": "x"})
    assert _error(reply, 400, "INVALID_ARGUMENT", "INVALID_FIELD")["metadata"]["field"] == "queue"


def test_an_unknown_job_is_404(http: httpx.Client, queue: str) -> None:
    _error(http.get(f"/api/queues/{queue}/jobs/404"), 404, "NOT_FOUND", "JOB_NOT_FOUND")
    _error(http.delete(f"/api/queues/{queue}/jobs/404"), 404, "NOT_FOUND", "JOB_NOT_FOUND")


def test_data_over_the_brokers_payload_limit_is_413(http: httpx.Client, queue: str) -> None:
    big = "x" * (1024 * 1024 + 10)
    reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x", "data": big})
    body = _error(reply, 413, "RESOURCE_EXHAUSTED", "LIMIT_EXCEEDED")
    assert body["metadata"]["limit"] == "max_payload_bytes"


@pytest.fixture
def small_body_dashboard(broker: RunningBroker) -> Iterator[Served]:
    settings = DashboardSettings(address=broker.address, max_body_bytes=1000)
    served = serve(create_app(settings))
    yield served
    served.stop()


def test_a_body_over_the_dashboards_own_limit_is_413(
    small_body_dashboard: Served, queue: str
) -> None:
    with httpx.Client(base_url=small_body_dashboard.url) as http:
        reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x", "data": "y" * 2000})
    body = _error(reply, 413, "RESOURCE_EXHAUSTED", "LIMIT_EXCEEDED")
    assert body["metadata"] == {"limit": "max_body_bytes"}


def test_without_a_token_a_secured_broker_answers_401(secured: Secured, queue: str) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        reply = http.get(f"/api/queues/{queue}/jobs/1")
        _error(reply, 401, "UNAUTHENTICATED", "TOKEN_MISSING")
        assert reply.headers["www-authenticate"] == "Bearer"
        malformed = http.get("/api/queues", headers={"authorization": "Basic abc"})
        _error(malformed, 401, "UNAUTHENTICATED", "TOKEN_MALFORMED")
        unknown = http.get("/api/queues", headers={"authorization": "Bearer jbt_00000000_x"})
        assert unknown.status_code == 401


def test_a_token_without_the_role_is_403(secured: Secured, queue: str) -> None:
    reader = secured.token(f"read:{queue}")
    with httpx.Client(
        base_url=secured.dashboard.url, headers={"authorization": f"Bearer {reader}"}
    ) as http:
        assert http.get("/api/queues").status_code == 200
        reply = http.post(f"/api/queues/{queue}/jobs", json={"name": "x"})
        body = _error(reply, 403, "PERMISSION_DENIED", "PERMISSION_DENIED")
        assert body["metadata"]["queue"] == queue


def test_a_producer_token_adds_reads_and_cancels(secured: Secured, queue: str) -> None:
    producer = secured.token(f"producer:{queue}")
    with httpx.Client(
        base_url=secured.dashboard.url, headers={"authorization": f"Bearer {producer}"}
    ) as http:
        added = http.post(f"/api/queues/{queue}/jobs", json={"name": "x"})
        assert added.status_code == 201
        job_id = added.json()["jobId"]
        assert http.get(f"/api/queues/{queue}/jobs/{job_id}").json()["state"] == "waiting"
        assert http.delete(f"/api/queues/{queue}/jobs/{job_id}").json()["state"] == "cancelled"


@pytest.fixture
def rate_limited(host: Host, redis_url: str) -> Iterator[Served]:
    """A broker allowing 1 request a second per caller (burst 1), and a dashboard on it."""
    made = Broker(replace(SETTINGS, redis_url=redis_url, rate_limit=1.0, rate_limit_burst=1))
    host.run(made.start())
    served = serve(
        create_app(
            DashboardSettings(address=f"127.0.0.1:{made.port}", client_options={"retries": 0})
        )
    )
    yield served
    served.stop()
    host.run(made.stop(0.5))


def test_the_brokers_rate_limit_is_429(rate_limited: Served, queue: str) -> None:
    with httpx.Client(base_url=rate_limited.url) as http:
        replies = [http.get(f"/api/queues/{queue}/jobs/1") for _ in range(5)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited, [r.status_code for r in replies]
    body = _error(limited[0], 429, "RESOURCE_EXHAUSTED", "LIMIT_EXCEEDED")
    assert body["metadata"]["limit"] == "rate_limit"


def test_an_unreachable_broker_is_503(queue: str) -> None:
    settings = DashboardSettings(
        address=f"127.0.0.1:{free_port()}", client_options={"retries": 0, "timeout": 2.0}
    )
    served = serve(create_app(settings))
    try:
        with httpx.Client(base_url=served.url, timeout=20) as http:
            reply = http.get("/api/queues")
        assert reply.status_code == 503, reply.text
        assert reply.json()["code"] == "UNAVAILABLE"
    finally:
        served.stop()
