"""The tour (``jobbroker serve --demo``, ``./scripts/run``): the demo worker and the guide's
workers side by side, answers from the stand-in model, mail kept as ``.eml`` files by the
local SMTP sink."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path
from typing import IO

from jobbroker import AsyncClient
from ports import free_port

from .conftest import Running
from .support import until


def _start(address: str, env: dict[str, str], log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobbroker_worker.tour", "--address", address],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )


async def test_the_tour_serves_the_guides_queues(
    private_broker: Running, private_client: AsyncClient, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "JOBBROKER_"))}
    env |= {"JOBBROKER_DEMO_MAIL_DIR": str(mail), "JOBBROKER_DEMO_SMTP_PORT": str(free_port())}
    log = (tmp_path / "tour.log").open("wb")
    tour = _start(private_broker.address, env, log, tmp_path)
    try:

        async def ready() -> bool:
            return len(await private_client.job_schemas("email")) == 4

        await until(ready, "the tour's workers to register their schemas")
        echo = await private_client.add("demo", "echo", {"x": 1})
        assert await private_client.wait("demo", echo.job_id, timeout=60) == {"x": 1}
        data = {"userId": "u1", "conversationId": "c1", "message": "Hello", "maxTokens": 5}
        added = await private_client.add("ai-tasks", "generate-completion", data)
        result = await private_client.wait("ai-tasks", added.job_id, timeout=60)
        assert result["standIn"] is True
        welcome = {"to": "ada@example.com", "name": "Ada"}
        sent = await private_client.add("email", "send-welcome", welcome)
        await private_client.wait("email", sent.job_id, timeout=60)
    finally:
        tour.send_signal(signal.SIGTERM)
        code = tour.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "tour.log").read_text()
    (kept,) = mail.glob("*.eml")
    message = message_from_bytes(kept.read_bytes(), policy=policy.default)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome, Ada!"
    assert "local SMTP sink" in (tmp_path / "tour.log").read_text()
