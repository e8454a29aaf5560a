"""email end to end: Add -> ``jobbroker-worker`` (a real process) -> aiosmtplib -> a real SMTP
server (aiosmtpd). Templates (HTML autoescaped, plain-text alternative, overrides), SMTP 4xx
retried, 5xx failing for good, and no second email when the worker is killed after the send
and before Complete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobbroker import AsyncClient, JobFailed
from jobbroker_worker.mailsink import Sink, start
from ports import free_port

from .conftest import Running
from .support import ServiceProcess, until

QUEUE = "email"
ADA = {"to": "ada@example.com", "name": "Ada <b>Lovelace</b>"}


class SmtpServer(Sink):
    """The sink, with scripted replies and a QUIT that can be held."""

    def __init__(self) -> None:
        super().__init__()
        self.data_replies: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_attempts = 0
        self.hold_quit = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        # The worker waits for "221 Bye" as long as we hold it. The flag is set from the
        # test's thread, so no asyncio.Event of this (aiosmtpd's) loop can carry it.
        while self.hold_quit:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return "221 Bye"


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpServer, int]]:
    server = SmtpServer()
    port = free_port()
    controller = start(server, "127.0.0.1", port)
    try:
        yield server, port
    finally:
        server.hold_quit = False
        controller.stop()


def _service(address: str, port: int, log: Path, *args: str) -> ServiceProcess:
    return ServiceProcess(
        address,
        log,
        "--queues",
        QUEUE,
        "--lease",
        "2",
        "--smtp-url",
        f"smtp://127.0.0.1:{port}?starttls=off",
        "--mail-from",
        "Example App <noreply@example.com>",
        "--app-url",
        "https://app.example.com",
        *args,
        JOBBROKER_AI_RETRY_BUDGET="20",
    )


@pytest.fixture
async def service(
    private_broker: Running,
    private_client: AsyncClient,
    smtp: tuple[SmtpServer, int],
    tmp_path: Path,
) -> AsyncIterator[ServiceProcess]:
    process = _service(private_broker.address, smtp[1], tmp_path / "worker.log")
    try:
        await process.ready(private_client, (QUEUE,))
        yield process
    finally:
        process.stop()


@pytest.mark.usefixtures("service")
async def test_welcome_has_html_and_text_parts(
    private_client: AsyncClient, smtp: tuple[SmtpServer, int]
) -> None:
    server, _ = smtp
    added = await private_client.add(QUEUE, "send-welcome", ADA)
    result = await private_client.wait(QUEUE, added.job_id, timeout=60)
    assert result["status"] == "sent"
    (received,) = server.received
    message = received.message
    assert received.recipients == ["ada@example.com"]
    assert message["Subject"] == "Welcome, Ada <b>Lovelace</b>!"
    assert message["Message-ID"] == result["messageId"]
    assert message["From"] == "Example App <noreply@example.com>"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Hello Ada <b>Lovelace</b>," in text.get_content()
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html.get_content()  # autoescaped
    assert "<b>Lovelace" not in html.get_content()


@pytest.mark.usefixtures("service")
async def test_a_token_becomes_a_link(
    private_client: AsyncClient, smtp: tuple[SmtpServer, int]
) -> None:
    server, _ = smtp
    data = {"to": "ada@example.com", "name": "Ada", "token": "t0k"}
    added = await private_client.add(QUEUE, "send-reset-password", data)
    await private_client.wait(QUEUE, added.job_id, timeout=60)
    body = server.received[0].message.get_body(("plain",))
    assert body is not None
    assert "https://app.example.com/reset-password?token=t0k" in body.get_content()


async def test_templates_can_be_overridden(
    private_broker: Running,
    private_client: AsyncClient,
    smtp: tuple[SmtpServer, int],
    tmp_path: Path,
) -> None:
    server, port = smtp
    own = tmp_path / "templates"
    own.mkdir()
    (own / "send-notification.subject.txt").write_text("[Acme] {{ subject }}")
    process = _service(
        private_broker.address, port, tmp_path / "worker.log", "--templates", str(own)
    )
    try:
        await process.ready(private_client, (QUEUE,))
        data = {**ADA, "subject": "Your report", "body": "It is ready.\n\nBye."}
        added = await private_client.add(QUEUE, "send-notification", data)
        await private_client.wait(QUEUE, added.job_id, timeout=60)
    finally:
        process.stop()
    message = server.received[0].message
    assert message["Subject"] == "[Acme] Your report"  # the override
    html = message.get_body(("html",))
    assert html is not None
    assert "<p>It is ready.</p>" in html.get_content()  # the built-in body


@pytest.mark.usefixtures("service")
async def test_smtp_4xx_is_retried(
    private_client: AsyncClient, smtp: tuple[SmtpServer, int]
) -> None:
    server, _ = smtp
    server.data_replies.append("451 4.3.0 Try again later")
    added = await private_client.add(QUEUE, "send-welcome", ADA)
    result = await private_client.wait(QUEUE, added.job_id, timeout=60)
    assert result["status"] == "sent"
    assert server.data_attempts == 2
    assert len(server.received) == 1
    lines = list((await private_client.logs(QUEUE, added.job_id)).lines)
    assert any("451" in line for line in lines), lines


@pytest.mark.usefixtures("service")
async def test_smtp_5xx_fails_for_good(
    private_client: AsyncClient, smtp: tuple[SmtpServer, int]
) -> None:
    server, _ = smtp
    server.rcpt_replies["nobody@example.com"] = "550 5.1.1 No such user here"
    added = await private_client.add(
        QUEUE, "send-welcome", {"to": "nobody@example.com", "name": "N"}, attempts=3
    )
    with pytest.raises(JobFailed) as failed:
        await private_client.wait(QUEUE, added.job_id, timeout=60)
    job = failed.value.job
    assert job.attempts_made == 1
    assert job.failure is not None
    assert "550" in job.failure.message
    assert "No such user here" in job.failure.message
    assert server.received == []


async def test_no_second_email_when_the_worker_dies_before_complete(
    private_broker: Running,
    private_client: AsyncClient,
    smtp: tuple[SmtpServer, int],
    tmp_path: Path,
) -> None:
    server, port = smtp
    server.hold_quit = True  # the worker sent the message and now waits at QUIT
    first = _service(private_broker.address, port, tmp_path / "first.log")
    try:
        await first.ready(private_client, (QUEUE,))
        added = await private_client.add(QUEUE, "send-welcome", ADA)

        async def recorded() -> bool:
            job = await private_client.get_status(QUEUE, added.job_id)
            value = job.progress.value if job.progress else None
            return isinstance(value, dict) and "messageId" in value

        await until(recorded, "the worker to record the Message-ID")
        assert len(server.received) == 1
        first.kill()  # SIGKILL: no Complete, no goodbye
    finally:
        first.stop()
    assert (await private_client.get_status(QUEUE, added.job_id)).state == "active"
    server.hold_quit = False
    second = _service(private_broker.address, port, tmp_path / "second.log")
    try:
        result = await private_client.wait(QUEUE, added.job_id, timeout=60)
    finally:
        second.stop()
    assert result["status"] == "already_sent"
    assert result["messageId"] == server.received[0].message["Message-ID"]
    assert len(server.received) == 1
    job = await private_client.get_status(QUEUE, added.job_id)
    assert job.stalled_count == 1
