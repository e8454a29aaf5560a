"""The dashboard in a real browser (Playwright driving Debian's chromium): browsing to a failed
job and retrying it, progress and logs arriving live, sign-in and the read-only view, and job
content carrying script payloads staying inert. Saves screenshots of the main pages
(``JOBBROKER_DASHBOARD_SCREENSHOTS=docs/screenshots`` keeps them there)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobbroker import Client, JobState
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from .conftest import Gates, Secured, Served, wait_until
from .test_pages import PAGES, PAYLOADS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the module (Debian's: Playwright's own download is not
    reachable here, so it is launched by path)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is missing: ./scripts/test installs it (apt-get install chromium)"
            )
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """A page, with what its console said (a CSP violation shows there)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert watched.violations() == []


def shoot(page: Page, name: str) -> None:
    """Save a screenshot of the page for docs/ (when JOBBROKER_DASHBOARD_SCREENSHOTS names a
    folder)."""
    folder = os.environ.get("JOBBROKER_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_browse_to_a_failed_job_retry_it_and_see_it_complete(
    tab: Watched, dashboard: Served, client: Client, queue: str, worker: Any
) -> None:
    page = tab.page
    for i in range(3):
        client.wait(queue, client.add(queue, "echo", {"n": i}).job_id, timeout=20)
    job_id = client.add(queue, "fail-once", {"invoice": 7}).job_id
    wait_until(lambda: client.get_status(queue, job_id).state is JobState.FAILED)

    # Filtered: the shared Redis holds other tests' queues, maybe hundreds.
    page.goto(f"{dashboard.url}{PAGES}/?q={queue[:-1]}")
    page.fill("#filter input[name=q]", queue)
    page.click("#filter button")
    page.locator(f'tr[data-queue="{queue}"] a', has_text=queue).click()
    expect(page.locator("h1")).to_have_text(queue)
    # The charts fill from the queue's last hour: three completions and one failure.
    expect(page.locator("figure.chart1 figcaption")).to_contain_text("3 in 60 min")
    expect(page.locator("figure.chart2 figcaption")).to_contain_text("25.0% of 4 attempts")
    shoot(page, "queue")
    page.locator("a.count.failed").click()
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("first run fails")
    shoot(page, "jobs")
    row.locator("a").first.click()
    expect(page.locator("#state")).to_have_text("failed")
    expect(page.locator("#failure")).to_contain_text("first run fails")
    page.locator("button.retry").click()
    expect(page.locator(".notice")).to_contain_text(f"Job {job_id} retried")
    # No reload from here on: the state changes on the page by itself.
    expect(page.locator("#state")).to_have_text("completed")
    expect(page.locator("#result")).to_contain_text('"ok": true')


def test_progress_and_log_lines_update_without_a_reload(
    tab: Watched, dashboard: Served, client: Client, queue: str, worker: Any, gates: Gates
) -> None:
    page = tab.page
    gate = f"browser-{queue}"
    words = ["The ", "quick ", "brown ", "fox"]
    job_id = client.add(queue, "steps", {"steps": words, "gate": gate}).job_id
    page.goto(f"{dashboard.url}{PAGES}/queues/{queue}/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text(re.compile("waiting|active"))
    page.evaluate("window.__loaded_once = true")
    text = ""
    for i, word in enumerate(words):
        gates.open(f"{gate}-{i}")
        text += word
        # The completion's text grows on the page, like an AI completion streaming tokens.
        expect(page.locator("#progress-text")).to_have_text(text)
        expect(page.locator("#logs .line")).to_have_count(i + 1)
        if i == 1:
            expect(page.locator("#progress progress")).to_have_attribute("value", "50")
            shoot(page, "job")
    expect(page.locator("#logs .line").last).to_have_text("step 3: fox")
    expect(page.locator("#state")).to_have_text("completed")
    assert page.evaluate("window.__loaded_once") is True


def test_script_payloads_in_jobs_stay_inert(
    tab: Watched, dashboard: Served, client: Client, queue: str, worker: Any, gates: Gates
) -> None:
    page = tab.page
    gate = f"xss-b-{queue}"
    named = client.add(queue, PAYLOADS[0], {"p": PAYLOADS}, job_id='q"><b>x').job_id
    failed = client.add(queue, "fail", {"message": PAYLOADS[1]}).job_id
    echoed = client.add(queue, "echo", {"r": PAYLOADS}).job_id
    live = client.add(queue, "steps", {"steps": PAYLOADS, "gate": gate}).job_id
    client.wait(queue, echoed, timeout=20)
    wait_until(lambda: client.get_status(queue, failed).state is JobState.FAILED)
    for url in (
        f"{PAGES}/",
        f"{PAGES}/queues/{queue}/jobs?state=waiting",
        f"{PAGES}/queues/{queue}/jobs?state=failed",
        f"{PAGES}/queues/{queue}/jobs?state=completed",
        f"{PAGES}/queues/{queue}/jobs/{named.replace(chr(34), '%22')}",
        f"{PAGES}/queues/{queue}/jobs/{failed}",
        f"{PAGES}/queues/{queue}/jobs/{echoed}",
    ):
        page.goto(dashboard.url + url)
        expect(page.locator("main")).to_be_visible()
        assert page.evaluate("window.__xss") is None, url
    # The payloads also arrive live, as progress text and log lines.
    page.goto(f"{dashboard.url}{PAGES}/queues/{queue}/jobs/{live}")
    for i in range(len(PAYLOADS)):
        gates.open(f"{gate}-{i}")
    expect(page.locator("#state")).to_have_text("completed")
    expect(page.locator("#logs .line")).to_have_count(len(PAYLOADS))
    expect(page.locator("#logs .line").first).to_have_text(f"step 0: {PAYLOADS[0]}")
    expect(page.locator("#progress-text")).to_have_text("".join(PAYLOADS))
    assert page.evaluate("window.__xss") is None
    assert page.locator("img, svg[onload]").count() == 0 or page.evaluate(
        "[...document.querySelectorAll('img')].every(i => !i.getAttribute('onerror'))"
    )
    assert tab.dialogs == []


def test_sign_in_and_the_read_only_view(
    tab: Watched, browser: Browser, secured: Secured, queue: str
) -> None:
    admin = secured.token(f"admin:{queue}")
    reader = secured.token(f"read:{queue}")
    with Client(secured.address, token=admin) as producer:
        job_id = producer.add(queue, "report", {"month": 11}).job_id
    page = tab.page
    page.goto(f"{secured.dashboard.url}{PAGES}/queues/{queue}")
    expect(page).to_have_url(f"{secured.dashboard.url}{PAGES}/login")
    shoot(page, "login")
    page.fill("input[name=token]", reader)
    page.click("#login button")
    expect(page.locator("h1")).to_have_text("Queues")
    assert reader not in page.url
    cookies = page.context.cookies()
    token_cookie = next(c for c in cookies if c["name"] == "jobbroker_token")
    assert token_cookie["httpOnly"] is True
    assert token_cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read either cookie
    page.goto(f"{secured.dashboard.url}{PAGES}/queues/{queue}/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("waiting")
    assert page.locator(".actions button").count() == 0
    page.goto(f"{secured.dashboard.url}{PAGES}/queues/{queue}")
    expect(page.locator("#summary")).to_be_visible()
    assert page.locator("#add-job").count() == 0
    assert page.locator("#clean").count() == 0

    admin_context = browser.new_context()
    try:
        admin_page = admin_context.new_page()
        admin_page.goto(f"{secured.dashboard.url}{PAGES}/login")
        admin_page.fill("input[name=token]", admin)
        admin_page.click("#login button")
        admin_page.goto(f"{secured.dashboard.url}{PAGES}/queues/{queue}/jobs/{job_id}")
        expect(admin_page.locator("button.cancel")).to_be_visible()
        expect(admin_page.locator("button.remove")).to_be_visible()
    finally:
        admin_context.close()


def test_the_queue_list_page(tab: Watched, dashboard: Served, client: Client, queue: str) -> None:
    client.add(queue, "x", {})
    tab.page.goto(f"{dashboard.url}{PAGES}/?q={queue}")
    expect(tab.page.locator(f'tr[data-queue="{queue}"]')).to_be_visible()
    client.add(queue, "x", {})
    # The count changes on the open page.
    expect(tab.page.locator(f'tr[data-queue="{queue}"] td.num').first).to_have_text("2")
    shoot(tab.page, "queues")
