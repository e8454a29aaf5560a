"""The dashboard's pages over HTTP: what they show, cursor pages and search, the actions with
their CSRF tokens, escaping of everything taken from jobs, and the security headers."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from jobbroker import Client, JobState
from jobbroker_dashboard.security import CSP

from .conftest import Gates, wait_until

PAGES = "/admin/queues"
PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=1">',
    "'><svg onload=window.__xss=1>",
    "</textarea></pre><script>window.__xss=1</script>",
]
"""Markup that would run a script if a page put it in as HTML (in text or in an attribute)."""


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def job_url(queue: str, job_id: str) -> str:
    return f"{PAGES}/queues/{queue}/jobs/{job_id}"


def test_the_queue_list_shows_each_queue_with_its_counts(
    http: httpx.Client, client: Client, queue: str
) -> None:
    client.add(queue, "a", {})
    client.add(queue, "b", {}, delay=60)
    client.pause(queue)
    page = http.get(f"{PAGES}/", params={"q": queue})
    assert page.status_code == 200
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', page.text, re.S)
    assert row, "the queue is not listed"
    cells = re.findall(r'state=(\w+)">(\d+)</a>', row.group(1))
    assert dict(cells)["waiting"] == "1"
    assert dict(cells)["delayed"] == "1"
    assert "paused" in row.group(1)


def test_the_queue_page_shows_counts_settings_workers_and_charts(
    http: httpx.Client, client: Client, queue: str, worker: Any
) -> None:
    client.wait(queue, client.add(queue, "echo", {"n": 1}).job_id, timeout=20)
    from jobbroker import RateLimit

    client.update_settings(queue, rate_limit=RateLimit(10, 1))
    page = http.get(f"{PAGES}/queues/{queue}")
    assert page.status_code == 200
    assert re.search(r"<strong>1</strong> completed", page.text)
    assert "10/1s" in page.text
    assert "Completed per minute" in page.text
    assert "<svg" in page.text
    workers = http.get(f"{PAGES}/queues/{queue}/workers")
    assert worker.worker_id in workers.text


def test_jobs_are_listed_a_page_at_a_time_with_a_cursor(
    http: httpx.Client, client: Client, queue: str
) -> None:
    client.add_bulk(queue, [("job", {"i": i}) for i in range(120)])
    seen: list[str] = []
    url = f"{PAGES}/queues/{queue}/jobs?state=waiting"
    pages = 0
    while url:
        page = http.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<tr data-job="([^"]+)">', page.text)
        pages += 1
        following = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = following.group(1).replace("&amp;", "&") if following else ""
    assert pages == 3
    assert len(seen) == 120
    assert len(set(seen)) == 120


def test_search_by_id_opens_the_job_or_says_there_is_none(
    http: httpx.Client, client: Client, queue: str
) -> None:
    job_id = client.add(queue, "x", {}).job_id
    found = http.get(f"{PAGES}/queues/{queue}/jobs", params={"id": job_id})
    assert found.status_code == 303
    assert found.headers["location"] == job_url(queue, job_id)
    missing = http.get(f"{PAGES}/queues/{queue}/jobs", params={"id": "no-such"})
    assert missing.status_code == 200
    assert "No job no-such" in missing.text


def test_a_job_page_shows_name_data_options_result_and_logs(
    http: httpx.Client, client: Client, queue: str, worker: Any, gates: Gates
) -> None:
    data = {"steps": ["one", "two"], "gate": f"page-{queue}"}
    job_id = client.add(queue, "steps", data, attempts=2, priority=3).job_id
    gates.open(f"page-{queue}-0")
    gates.open(f"page-{queue}-1")
    client.wait(queue, job_id, timeout=20)
    page = http.get(job_url(queue, job_id))
    assert page.status_code == 200
    text = page.text
    assert 'class="job-name">steps<' in text
    assert "&#34;steps&#34;" in text  # the data, as pretty JSON
    assert "&#34;priority&#34;: 3" in text
    assert "&#34;text&#34;: &#34;onetwo&#34;" in text  # the result
    assert "step 0: one" in text
    assert "step 1: two" in text
    assert 'value="100"' in text


def test_a_failed_job_shows_its_reason_and_stack(
    http: httpx.Client, client: Client, queue: str, worker: Any
) -> None:
    job_id = client.add(queue, "fail", {"message": "printer on fire"}).job_id
    wait_until(lambda: client.get_status(queue, job_id).state is JobState.FAILED)
    page = http.get(job_url(queue, job_id)).text
    assert 'id="failure"' in page
    assert "printer on fire" in page
    assert 'id="stack"' in page
    assert "RuntimeError" in page


def test_everything_taken_from_jobs_is_escaped(
    http: httpx.Client, client: Client, queue: str, worker: Any, gates: Gates
) -> None:
    payload_id = 'x"><b>id'
    jobs = [
        client.add(queue, PAYLOADS[0], {"p": PAYLOADS}, job_id=payload_id).job_id,
        client.add(queue, "fail", {"message": PAYLOADS[1]}).job_id,
        client.add(queue, "echo", {"result": PAYLOADS}).job_id,
        client.add(queue, "steps", {"steps": PAYLOADS, "gate": f"xss-{queue}"}).job_id,
    ]
    for i in range(len(PAYLOADS)):
        gates.open(f"xss-{queue}-{i}")
    client.wait(queue, jobs[3], timeout=20)
    wait_until(lambda: client.get_status(queue, jobs[1]).state is JobState.FAILED)
    urls = [
        f"{PAGES}/",
        f"{PAGES}/queues/{queue}",
        *(f"{PAGES}/queues/{queue}/jobs?state={s}" for s in ("waiting", "completed", "failed")),
        *(job_url(queue, job_id.replace('"', "%22")) for job_id in jobs),
    ]
    for url in urls:
        page = http.get(url)
        assert page.status_code == 200, url
        for payload in PAYLOADS:
            assert payload not in page.text, (url, payload)
    job_page = http.get(job_url(queue, jobs[3])).text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in job_page  # shown, as text


def test_every_answer_carries_a_strict_content_security_policy(http: httpx.Client) -> None:
    for url in (f"{PAGES}/", f"{PAGES}/login", f"{PAGES}/static/htmx.min.js", "/api/queues"):
        reply = http.get(url)
        assert reply.headers["content-security-policy"] == CSP, url
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP


def test_a_post_without_the_csrf_token_is_refused(
    http: httpx.Client, client: Client, queue: str
) -> None:
    job_id = client.add(queue, "x", {}).job_id
    http.get(job_url(queue, job_id))  # gets the CSRF cookie
    url = f"{PAGES}/queues/{queue}/job-actions/cancel"
    refused = http.post(url, data={"job_id": job_id})
    assert refused.status_code == 403
    forged = http.post(url, data={"job_id": job_id, "csrf": "0" * 64})
    assert forged.status_code == 403
    assert client.get_status(queue, job_id).state is JobState.WAITING


def test_retry_from_the_job_page_runs_a_failed_job_again(
    http: httpx.Client, client: Client, queue: str, worker: Any
) -> None:
    job_id = client.add(queue, "fail-once", {}).job_id
    wait_until(lambda: client.get_status(queue, job_id).state is JobState.FAILED)
    page = http.get(job_url(queue, job_id))
    assert 'class="retry"' in page.text
    done = http.post(
        f"{PAGES}/queues/{queue}/job-actions/retry",
        data={"job_id": job_id, "csrf": csrf_of(page.text)},
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(job_url(queue, job_id) + "?notice=")
    assert client.wait(queue, job_id, timeout=20) == {"ok": True}


@pytest.mark.parametrize(
    ("action", "form", "check"),
    [
        ("pause", {}, lambda c, q: c.queue(q).paused),
        ("drain", {}, lambda c, q: c.queue(q).counts.waiting == 0),
        (
            "clean",
            {"state": "cancelled", "grace": "0"},
            lambda c, q: c.queue(q).counts.cancelled == 0,
        ),
        (
            "add",
            {"name": "added", "data": '{"k": 1}', "options": '{"priority": 2}'},
            lambda c, q: c.queue(q).counts.waiting == 3,
        ),
    ],
)
def test_queue_actions(
    http: httpx.Client, client: Client, queue: str, action: str, form: dict[str, str], check: Any
) -> None:
    client.add(queue, "x", {})
    client.add(queue, "x", {})
    client.cancel(queue, client.add(queue, "x", {}).job_id)
    page = http.get(f"{PAGES}/queues/{queue}")
    reply = http.post(f"{PAGES}/queues/{queue}/{action}", data={**form, "csrf": csrf_of(page.text)})
    assert reply.status_code == 303, reply.text
    assert check(client, queue)


def test_an_add_with_bad_json_says_which_field(
    http: httpx.Client, client: Client, queue: str
) -> None:
    page = http.get(f"{PAGES}/queues/{queue}")
    reply = http.post(
        f"{PAGES}/queues/{queue}/add",
        data={"name": "x", "data": "{oops", "csrf": csrf_of(page.text)},
    )
    assert reply.status_code == 400
    assert "data: is not JSON" in reply.text


def test_a_refused_action_shows_the_brokers_reason(
    http: httpx.Client, client: Client, queue: str
) -> None:
    job_id = client.add(queue, "x", {}).job_id
    page = http.get(job_url(queue, job_id))
    reply = http.post(
        f"{PAGES}/queues/{queue}/job-actions/retry",
        data={"job_id": job_id, "csrf": csrf_of(page.text)},
    )
    assert reply.status_code == 409
    assert "JOB_NOT_RETRYABLE" in reply.text


def test_schedules_are_listed_and_removed(http: httpx.Client, client: Client, queue: str) -> None:
    client.upsert_schedule(queue, "nightly", "report", cron="0 3 * * *")
    client.upsert_schedule(queue, "often", "ping", every=300)
    page = http.get(f"{PAGES}/queues/{queue}/schedules")
    assert '<tr data-schedule="nightly">' in page.text
    assert "0 3 * * *" in page.text
    assert "every 5m" in page.text
    reply = http.post(
        f"{PAGES}/queues/{queue}/schedule-actions/remove",
        data={"key": "nightly", "csrf": csrf_of(page.text)},
    )
    assert reply.status_code == 303
    assert [s.key for s in client.schedules(queue)] == ["often"]


def test_the_queue_list_is_paged_and_filtered_by_name(
    http: httpx.Client, client: Client, queue: str
) -> None:
    names = [f"{queue}-{i:02d}" for i in range(55)]
    for name in names:
        client.add(name, "x", {})
    first = http.get(f"{PAGES}/", params={"q": queue})
    assert re.findall(r'<tr data-queue="([^"]+)">', first.text) == names[:50]
    assert "55 queues, page 1 of 2" in first.text
    second = http.get(f"{PAGES}/", params={"q": queue, "page": 2})
    assert re.findall(r'<tr data-queue="([^"]+)">', second.text) == names[50:]
    one = http.get(f"{PAGES}/", params={"q": names[7]})
    assert re.findall(r'<tr data-queue="([^"]+)">', one.text) == [names[7]]


def test_answers_say_how_long_the_server_took(http: httpx.Client, queue: str) -> None:
    for url in (f"{PAGES}/queues/{queue}/jobs", f"/api/queues/{queue}/jobs/1"):
        header = http.get(url).headers["server-timing"]
        assert re.fullmatch(r"app;dur=\d+\.\d", header), header


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("resume", lambda c, q: not c.queue(q).paused),
        ("promote-delayed", lambda c, q: c.queue(q).counts.delayed == 0),
    ],
)
def test_more_queue_actions(
    http: httpx.Client, client: Client, queue: str, action: str, check: Any
) -> None:
    client.add(queue, "later", {}, delay=3600)
    client.pause(queue)
    page = http.get(f"{PAGES}/queues/{queue}")
    reply = http.post(f"{PAGES}/queues/{queue}/{action}", data={"csrf": csrf_of(page.text)})
    assert reply.status_code == 303
    assert check(client, queue)


def test_retry_all_failed_from_the_failed_tab(
    http: httpx.Client, client: Client, queue: str, worker: Any
) -> None:
    ids = [client.add(queue, "fail-once", {}).job_id for _ in range(3)]
    wait_until(lambda: client.queue(queue).counts.failed == 3)
    page = http.get(f"{PAGES}/queues/{queue}/jobs", params={"state": "failed"})
    assert ">Retry all failed<" in page.text
    back = re.search(r'name="next" value="([^"]+)"', page.text)
    assert back, "the form says where to come back to"
    form = {"csrf": csrf_of(page.text), "next": back.group(1).replace("&amp;", "&")}
    reply = http.post(f"{PAGES}/queues/{queue}/retry-failed", data=form)
    assert reply.status_code == 303
    assert "state=failed" in reply.headers["location"]  # back to the tab it came from
    for job_id in ids:
        assert client.wait(queue, job_id, timeout=20) == {"ok": True}


@pytest.mark.parametrize("action", ["promote", "remove"])
def test_promote_and_remove_a_delayed_job(
    http: httpx.Client, client: Client, queue: str, action: str
) -> None:
    job_id = client.add(queue, "later", {}, delay=3600).job_id
    page = http.get(job_url(queue, job_id))
    assert f'class="{action}"' in page.text
    reply = http.post(
        f"{PAGES}/queues/{queue}/job-actions/{action}",
        data={"job_id": job_id, "csrf": csrf_of(page.text)},
    )
    assert reply.status_code == 303
    if action == "promote":
        assert client.get_status(queue, job_id).state is JobState.WAITING
    else:
        assert client.queue(queue).counts.total == 0


@pytest.mark.parametrize(
    "target", ["https://example.com/x", "//example.com/x", "/elsewhere", f"{PAGES}/\\\\example.com"]
)
def test_an_action_never_sends_the_browser_off_the_dashboard(
    http: httpx.Client, client: Client, queue: str, target: str
) -> None:
    page = http.get(f"{PAGES}/queues/{queue}")
    reply = http.post(
        f"{PAGES}/queues/{queue}/pause", data={"csrf": csrf_of(page.text), "next": target}
    )
    assert reply.status_code == 303
    assert reply.headers["location"].startswith(f"{PAGES}/queues/{queue}?notice=")
