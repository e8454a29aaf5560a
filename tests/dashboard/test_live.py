"""Live pages over server-sent events: fragments pushed when the queue's events say something
changed, and one broker stream per queue whatever the number of open pages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from client.conftest import SETTINGS
from jobbroker import Client
from jobbroker_broker.server.app import Broker
from jobbroker_dashboard import DashboardSettings

from .conftest import Gates, Host, Served, serve_dashboard, wait_until
from .test_api import _events
from .test_pages import PAGES


def test_a_job_pages_stream_pushes_its_progress_and_new_log_lines(
    dashboard: Served, client: Client, queue: str, worker: Any, gates: Gates
) -> None:
    gate = f"live-{queue}"
    job_id = client.add(queue, "steps", {"steps": ["Hel", "lo"], "gate": gate}).job_id
    url = f"{PAGES}/live/queues/{queue}/job/{job_id}?logs=0"
    with (
        httpx.Client(base_url=dashboard.url, timeout=30) as http,
        http.stream("GET", url) as reply,
    ):
        assert reply.headers["content-type"].startswith("text/event-stream")
        messages = _events(reply.iter_lines())
        assert next(messages)["event"] == "open"
        gates.open(f"{gate}-0")
        logs: list[str] = []
        texts: list[str] = []
        completed = False
        for message in messages:
            if message["event"] == "logs":
                logs.append(message["data"])
            if message["event"] == "job" and 'id="progress-text">' in message["data"]:
                text = message["data"].split('id="progress-text">')[1].split("<")[0]
                if not texts or texts[-1] != text:
                    texts.append(text)
                if text == "Hel":
                    gates.open(f"{gate}-1")
            completed = completed or "badge state completed" in message["data"]
            if completed and "step 1: lo" in "".join(logs):
                break
    assert texts[:2] == ["Hel", "Hello"]
    joined = "".join(logs)
    assert joined.count("step 0: Hel") == 1  # each line sent once
    assert joined.count("step 1: lo") == 1


def _open(url: str, opened: threading.Event, stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as http, http.stream("GET", url) as reply:
        for line in reply.iter_lines():
            if line.startswith("event: open"):
                opened.set()
            if stop.is_set():
                return


def test_many_open_pages_share_one_broker_stream_per_queue(
    dashboard: Served, client: Client, queue: str
) -> None:
    assert dashboard.dash is not None
    client.add(queue, "x", {})
    stop = threading.Event()
    urls = [f"{dashboard.url}{PAGES}/live/queues/{queue}/overview"] * 6
    urls += [f"{dashboard.url}{PAGES}/live/queues/{queue}/jobs?state=waiting"] * 6
    opened = [threading.Event() for _ in urls]
    threads = [
        threading.Thread(target=_open, args=(url, flag, stop), daemon=True)
        for url, flag in zip(urls, opened, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        for flag in opened:
            assert flag.wait(30)
        assert dashboard.dash.hubs.streams(queue) == 1
    finally:
        stop.set()
        client.add(queue, "x", {})  # an event, so each stream sees the stop
        for thread in threads:
            thread.join(30)


def _stream_lines(http: httpx.Client, url: str) -> Iterator[dict[str, str]]:
    with http.stream("GET", url) as reply:
        yield from _events(reply.iter_lines())


def test_the_queue_list_updates_when_a_job_is_added(
    dashboard: Served, client: Client, queue: str
) -> None:
    client.add(queue, "x", {})
    with httpx.Client(base_url=dashboard.url, timeout=30) as http:
        messages = _stream_lines(http, f"{PAGES}/live/queues?q={queue}")
        wait_until(lambda: next(messages)["event"] == "queues")
        client.add(queue, "x", {})
        for message in messages:
            row = message["data"].split(f'data-queue="{queue}"')
            if message["event"] == "queues" and len(row) > 1 and 'state=waiting">2<' in row[1]:
                break


def test_the_charts_count_the_last_hours_events_then_the_live_ones(
    dashboard: Served, client: Client, queue: str, worker: Any
) -> None:
    # Before any page follows the queue: these come from the replay of the last hour.
    for i in range(3):
        client.wait(queue, client.add(queue, "echo", {"i": i}).job_id, timeout=20)
    failed = client.add(queue, "fail", {"final": True}).job_id
    wait_until(lambda: client.get_status(queue, failed).state.value == "failed")
    with httpx.Client(base_url=dashboard.url, timeout=30) as http:
        messages = _stream_lines(http, f"{PAGES}/live/queues/{queue}/overview")
        for message in messages:
            if message["event"] == "charts" and "3 in 60 min" in message["data"]:
                break
        assert "25.0% of 4 attempts" in message["data"]
        client.wait(queue, client.add(queue, "echo", {}).job_id, timeout=20)
        for message in messages:
            if message["event"] == "charts" and "4 in 60 min" in message["data"]:
                break
        assert "20.0% of 5 attempts" in message["data"]


def test_a_live_stream_for_a_bad_queue_name_is_refused_before_it_starts(
    dashboard: Served,
) -> None:
    assert dashboard.dash is not None
    with httpx.Client(base_url=dashboard.url, timeout=30) as http:
        for view in ("overview", "jobs", "schedules", "workers"):
            reply = http.get(f"{PAGES}/live/queues/bad%20name/{view}")
            assert reply.status_code == 400, view
    assert dashboard.dash.hubs.streams("bad name") == 0


@pytest.fixture
def rate_limited(host: Host, redis_url: str) -> Iterator[Served]:
    """A broker allowing a caller 1 request a second (burst 3), and a dashboard on it."""
    made = Broker(replace(SETTINGS, redis_url=redis_url, rate_limit=1.0, rate_limit_burst=3))
    host.run(made.start())
    settings = DashboardSettings(address=f"127.0.0.1:{made.port}", client_options={"retries": 0})
    served = serve_dashboard(settings)
    yield served
    served.stop()
    host.run(made.stop(0.5))


def test_an_update_that_failed_is_tried_again_without_a_new_event(
    rate_limited: Served, queue: str
) -> None:
    # Opening the stream spends the burst (the queue, and what the token may do); the first
    # update is then refused by the rate limit, and no event will come to retry it.
    url = f"{PAGES}/live/queues/{queue}/overview"
    with httpx.Client(base_url=rate_limited.url, timeout=httpx.Timeout(30, read=20)) as http:
        for message in _stream_lines(http, url):
            if message["event"] == "summary":
                assert "<strong>0</strong> waiting" in message["data"]
                break
