"""The HTTP/JSON API against a real broker: the guide's endpoints, Bull's option names, the
status shape, cancel, the queue list, server-sent events with Last-Event-ID, and the OpenAPI
document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from jobbroker import Client, JobState
from jobbroker_dashboard.api import routes
from jobbroker_dashboard.app import Dashboard

from .conftest import Gates, wait_until


def test_add_returns_the_job_id_and_state_and_honours_bull_options(
    http: httpx.Client, client: Client, queue: str
) -> None:
    reply = http.post(
        f"/api/queues/{queue}/jobs",
        json={
            "name": "render",
            "data": {"doc": 7},
            "options": {
                "attempts": 3,
                "backoff": {"type": "exponential", "delay": 5000},
                "priority": 4,
                "timeout": 60000,
                "removeOnComplete": 100,
                "removeOnFail": {"age": 3600, "count": 10},
                "lifo": True,
            },
        },
    )
    assert reply.status_code == 201, reply.text
    added = reply.json()
    assert added == {"jobId": added["jobId"], "state": "waiting", "duplicate": False}
    job = client.get_status(queue, added["jobId"])
    assert (job.name, job.data, job.max_attempts) == ("render", {"doc": 7}, 3)
    assert job.proto is not None
    options = job.proto.options
    assert options.priority == 4
    assert options.lifo
    assert options.timeout_ms == 60000
    assert options.backoff.delay_ms == 5000
    assert options.remove_on_complete.keep_last == 100
    assert options.remove_on_fail.keep_last == 10
    assert options.remove_on_fail.keep_age_ms == 3_600_000


def test_delay_in_milliseconds_makes_a_delayed_job(http: httpx.Client, queue: str) -> None:
    reply = http.post(
        f"/api/queues/{queue}/jobs", json={"name": "later", "options": {"delay": 60000}}
    )
    assert reply.status_code == 201
    assert reply.json()["state"] == "delayed"


def test_a_custom_job_id_is_idempotent_and_a_conflict_is_409(
    http: httpx.Client, queue: str
) -> None:
    body = {"name": "once", "data": [1], "options": {"jobId": "order-7"}}
    first = http.post(f"/api/queues/{queue}/jobs", json=body)
    again = http.post(f"/api/queues/{queue}/jobs", json=body)
    assert first.status_code == 201
    assert first.json()["jobId"] == "order-7"
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    other = http.post(f"/api/queues/{queue}/jobs", json={**body, "data": [2]})
    assert other.status_code == 409
    assert other.json()["code"] == "ALREADY_EXISTS"
    assert other.json()["reason"] == "JOB_ID_CONFLICT"


def test_status_has_the_guides_shape(
    http: httpx.Client, worker: Any, queue: str, client: Client
) -> None:
    added = http.post(f"/api/queues/{queue}/jobs", json={"name": "echo", "data": {"a": 1}}).json()
    client.wait(queue, added["jobId"], timeout=20)
    status = http.get(f"/api/queues/{queue}/jobs/{added['jobId']}")
    assert status.status_code == 200
    body = status.json()
    assert {"id", "state", "progress", "result", "failedReason", "attempts"} <= set(body)
    assert body["id"] == added["jobId"]
    assert body["state"] == "completed"
    assert body["result"] == {"a": 1}
    assert body["failedReason"] is None
    assert body["attempts"] == 1
    assert body["data"] == {"a": 1}


def test_a_failed_jobs_status_carries_its_failed_reason(
    http: httpx.Client, worker: Any, queue: str, client: Client
) -> None:
    added = http.post(
        f"/api/queues/{queue}/jobs", json={"name": "fail", "data": {"message": "no paper"}}
    ).json()
    wait_until(lambda: client.get_status(queue, added["jobId"]).state is JobState.FAILED)
    body = http.get(f"/api/queues/{queue}/jobs/{added['jobId']}").json()
    assert body["state"] == "failed"
    assert body["failedReason"] == "no paper"
    assert body["failure"]["message"] == "no paper"


def test_delete_cancels_the_job_and_a_second_delete_is_409(http: httpx.Client, queue: str) -> None:
    job_id = http.post(f"/api/queues/{queue}/jobs", json={"name": "x"}).json()["jobId"]
    reply = http.delete(f"/api/queues/{queue}/jobs/{job_id}")
    assert reply.status_code == 200
    assert reply.json() == {"jobId": job_id, "state": "cancelled"}
    assert http.get(f"/api/queues/{queue}/jobs/{job_id}").json()["state"] == "cancelled"
    again = http.delete(f"/api/queues/{queue}/jobs/{job_id}")
    assert again.status_code == 409
    assert again.json()["reason"] == "JOB_FINISHED"


def test_queues_lists_each_queue_with_its_counts(http: httpx.Client, queue: str) -> None:
    for _ in range(3):
        http.post(f"/api/queues/{queue}/jobs", json={"name": "x"})
    reply = http.get("/api/queues")
    assert reply.status_code == 200
    mine = [q for q in reply.json()["queues"] if q["name"] == queue]
    assert mine
    assert mine[0]["counts"]["waiting"] == 3
    assert mine[0]["paused"] is False


def test_a_job_id_with_a_slash_is_reachable(http: httpx.Client, queue: str) -> None:
    body = {"name": "x", "options": {"jobId": "invoices/2026/7"}}
    assert http.post(f"/api/queues/{queue}/jobs", json=body).status_code == 201
    status = http.get(f"/api/queues/{queue}/jobs/invoices%2F2026%2F7")
    assert status.status_code == 200
    assert status.json()["id"] == "invoices/2026/7"


def _events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse server-sent events (one dict per message)."""
    message: dict[str, str] = {}
    for line in lines:
        if not line:
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            message[name] = message[name] + "\n" + value if name in message else value


def test_events_stream_the_jobs_progress_and_resume_after_last_event_id(
    http: httpx.Client, worker: Any, gates: Gates, queue: str, client: Client
) -> None:
    gate = f"sse-{queue}"
    data = {"steps": ["a", "b", "c"], "gate": gate}
    job_id = http.post(f"/api/queues/{queue}/jobs", json={"name": "steps", "data": data}).json()[
        "jobId"
    ]
    url = f"/api/queues/{queue}/jobs/{job_id}/events"
    seen: list[dict[str, str]] = []
    with http.stream("GET", url) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = _events(reply.iter_lines())
        assert next(events)["event"] == "open"
        snapshot = next(events)
        assert snapshot["event"] == "snapshot"
        assert json.loads(snapshot["data"])["id"] == job_id
        gates.open(f"{gate}-0")
        for message in events:
            seen.append(message)
            if message["event"] == "progress":
                break
    first = json.loads(seen[-1]["data"])
    assert first["progressValue"] == "a"
    assert first["progress"] == 33
    last_id = seen[-1]["id"]

    # Two more steps happen while nobody listens; a resume gets exactly what came after. (One
    # at a time: the worker sends only the latest of progress reports made in a burst.)
    gates.open(f"{gate}-1")
    wait_until(lambda: client.get_status(queue, job_id).progress.value == "ab")
    gates.open(f"{gate}-2")
    resumed: list[dict[str, str]] = []
    with http.stream("GET", url, headers={"Last-Event-ID": last_id}) as reply:
        assert reply.status_code == 200
        for message in _events(reply.iter_lines()):
            resumed.append(message)
            if message["event"] == "end":
                break
    names = [m["event"] for m in resumed]
    assert "snapshot" not in names
    assert names[0] == "open"
    assert names[-1] == "end"
    progress = [json.loads(m["data"])["progressValue"] for m in resumed if m["event"] == "progress"]
    assert progress == ["ab", "abc"]
    completed = [json.loads(m["data"]) for m in resumed if m["event"] == "completed"]
    assert completed[0]["result"] == {"text": "abc"}
    assert completed[0]["final"] is True
    assert all(m["id"] > last_id for m in resumed if "id" in m)


def test_events_of_an_unknown_job_are_404(http: httpx.Client, queue: str) -> None:
    reply = http.get(f"/api/queues/{queue}/jobs/nope/events")
    assert reply.status_code == 404
    assert reply.json()["reason"] == "JOB_NOT_FOUND"


def test_the_openapi_document_matches_the_routes(http: httpx.Client) -> None:
    reply = http.get("/api/openapi.json")
    assert reply.status_code == 200
    document = reply.json()
    assert document["servers"] == [{"url": "/api"}]
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = set()
    for route in routes(Dashboard()):
        path = route.path.replace("{job_id:path}", "{jobId}")
        if path == "/openapi.json":
            continue
        for method in route.methods or ():
            if method != "HEAD":
                served.add((path, method))
    assert documented == served


def test_events_of_a_finished_job_are_its_snapshot_then_the_end(
    http: httpx.Client, queue: str
) -> None:
    job_id = http.post(f"/api/queues/{queue}/jobs", json={"name": "x"}).json()["jobId"]
    http.delete(f"/api/queues/{queue}/jobs/{job_id}")
    with http.stream("GET", f"/api/queues/{queue}/jobs/{job_id}/events") as reply:
        names = [m["event"] for m in _events(reply.iter_lines())]
    assert names == ["open", "snapshot", "end"]
