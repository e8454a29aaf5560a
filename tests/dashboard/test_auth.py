"""A dashboard in front of a broker with tokens: it asks for one, keeps it in an HttpOnly,
SameSite=Strict cookie, shows a read-only token no write action and refuses its writes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from jobbroker import AsyncClient, JobState
from jobbroker_dashboard.access import Access

from .conftest import Secured
from .test_pages import PAGES, csrf_of, job_url

ACTION_BUTTONS = ('class="retry"', 'class="cancel"', 'class="remove"', 'class="promote"')


def sign_in(http: httpx.Client, token: str) -> httpx.Response:
    form = http.get(f"{PAGES}/login")
    return http.post(f"{PAGES}/login", data={"token": token, "csrf": csrf_of(form.text)})


@pytest.fixture
def admin(secured: Secured, queue: str) -> str:
    return secured.token(f"admin:{queue}")


def test_without_a_token_every_page_asks_for_one(secured: Secured, queue: str) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        for url in (f"{PAGES}/", f"{PAGES}/queues/{queue}", job_url(queue, "1")):
            reply = http.get(url)
            assert reply.status_code == 303, url
            assert reply.headers["location"] == f"{PAGES}/login"
        assert 'type="password" name="token"' in http.get(f"{PAGES}/login").text


def test_an_unknown_token_is_refused_and_not_kept(secured: Secured) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        reply = sign_in(http, "jbt_00000000_" + "a" * 43)
        assert reply.status_code == 401
        assert "Refused" in reply.text
        assert "jobbroker_token" not in reply.headers.get("set-cookie", "")


def test_the_token_lives_in_an_httponly_strict_cookie_never_in_a_url_or_page(
    secured: Secured, admin: str, queue: str
) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        reply = sign_in(http, admin)
        assert reply.status_code == 303
        assert admin not in reply.headers["location"]
        cookie = next(
            c for c in reply.headers.get_list("set-cookie") if c.startswith("jobbroker_token=")
        )
        assert f"jobbroker_token={admin}" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        page = http.get(f"{PAGES}/queues/{queue}")
        assert page.status_code == 200
        assert admin not in page.text
        assert "Sign out" in page.text


def test_a_sign_in_form_without_its_csrf_token_is_refused(secured: Secured, admin: str) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        http.get(f"{PAGES}/login")
        reply = http.post(f"{PAGES}/login", data={"token": admin})
        assert reply.status_code == 403
        assert "jobbroker_token" not in reply.headers.get("set-cookie", "")


def test_a_read_only_token_sees_no_write_action_and_its_writes_are_refused(
    secured: Secured, admin: str, queue: str
) -> None:
    reader = secured.token(f"read:{queue}")
    admin_api = httpx.Client(
        base_url=secured.dashboard.url, headers={"authorization": f"Bearer {admin}"}
    )
    with admin_api:
        job_id = admin_api.post(f"/api/queues/{queue}/jobs", json={"name": "x"}).json()["jobId"]
    with httpx.Client(base_url=secured.dashboard.url) as http:
        assert sign_in(http, reader).status_code == 303
        queue_page = http.get(f"{PAGES}/queues/{queue}").text
        assert 'id="add-job"' not in queue_page
        assert 'id="clean"' not in queue_page
        assert ">Pause<" not in queue_page
        page = http.get(job_url(queue, job_id))
        assert page.status_code == 200
        for button in ACTION_BUTTONS:
            assert button not in page.text
        refused = http.post(
            f"{PAGES}/queues/{queue}/job-actions/cancel",
            data={"job_id": job_id, "csrf": csrf_of(page.text)},
        )
        assert refused.status_code == 403
        paused = http.post(f"{PAGES}/queues/{queue}/pause", data={"csrf": csrf_of(page.text)})
        assert paused.status_code == 403
    with httpx.Client(
        base_url=secured.dashboard.url, headers={"authorization": f"Bearer {admin}"}
    ) as api:
        status = api.get(f"/api/queues/{queue}/jobs/{job_id}").json()
        assert status["state"] == JobState.WAITING
        assert api.get("/api/queues").json()["queues"][0]["paused"] is False


def test_an_admin_sees_the_actions(secured: Secured, admin: str, queue: str) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        sign_in(http, admin)
        page = http.get(f"{PAGES}/queues/{queue}").text
        assert 'id="add-job"' in page
        assert 'id="clean"' in page
        assert ">Pause<" in page


def test_sign_out_forgets_the_token(secured: Secured, admin: str) -> None:
    with httpx.Client(base_url=secured.dashboard.url) as http:
        sign_in(http, admin)
        page = http.get(f"{PAGES}/")
        out = http.post(f"{PAGES}/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert http.get(f"{PAGES}/").status_code == 303


@pytest.mark.parametrize(
    ("grant", "produce", "admin_role"),
    [("read", False, False), ("producer", True, False), ("admin", True, True)],
)
def test_what_a_token_may_do_is_asked_without_changing_anything(
    secured: Secured, queue: str, grant: str, produce: bool, admin_role: bool
) -> None:
    token = secured.token(f"{grant}:{queue}")

    async def probe() -> tuple[bool, bool]:
        async with AsyncClient(secured.address, token=token, retries=0) as client:
            caps = await Access().capabilities(client, queue)
            return caps.produce, caps.admin

    assert asyncio.run(probe()) == (produce, admin_role)


def test_an_open_page_says_so_when_its_token_is_revoked(
    secured: Secured, admin: str, queue: str
) -> None:
    with httpx.Client(base_url=secured.dashboard.url, timeout=30) as http:
        sign_in(http, admin)
        with http.stream("GET", f"{PAGES}/live/queues/{queue}/overview") as reply:
            lines = reply.iter_lines()
            assert next(lines) == "retry: 2000"
            secured.revoke(admin)
            failed = next(line for line in lines if line == "event: failed")
            assert failed
            assert "Live updates stopped" in next(lines)
