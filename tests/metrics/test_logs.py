"""Structured logs: JSON lines with fields, readable lines, and never a payload."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from jobbroker import JobContext, Raw, Worker
from jobbroker.logs import ConsoleFormatter, JsonFormatter, configure, job_fields
from jobbroker.v1 import job_pb2, job_service_pb2
from jobbroker_broker.__main__ import main

from .harness import Running, eventually

SECRET = "s3cr3t-payload-7d1e"
"""In job data, results and progress values: it must never reach a log line."""


@pytest.fixture
def log_to() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("jobbroker.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_json_lines_carry_timestamp_level_logger_message_and_fields(
    log_to: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log_to
    logger.handlers[0].setFormatter(JsonFormatter())
    logger.warning("job %s/%s refused", "q", "7", extra=job_fields("q", "7", reason="LATE"))
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed", extra={"queue": "q"})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first.pop("timestamp").endswith("+00:00")
    assert first == {
        "level": "warning",
        "logger": "jobbroker.test-logs",
        "message": "job q/7 refused",
        "queue": "q",
        "job_id": "7",
        "reason": "LATE",
    }
    assert second["queue"] == "q"
    assert "ValueError: bad" in second["exception"]


def test_console_lines_end_with_the_fields(log_to: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log_to
    logger.handlers[0].setFormatter(ConsoleFormatter())
    logger.info("job cancelled", extra=job_fields("q", "7"))
    assert (
        out.getvalue().rstrip().endswith("INFO jobbroker.test-logs: job cancelled queue=q job_id=7")
    )


def test_unknown_format_or_level_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--log-format"):
        configure("xml", "info")
    with pytest.raises(ValueError, match="--log-level"):
        configure("json", "loud")
    with pytest.raises(SystemExit, match="--log-format"):
        main(["--log-format", "xml"])


async def test_no_payload_is_ever_logged(
    broker: Running, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    worker = Worker(queue, address=broker.address, wait=1.0, grace=5.0)
    release = asyncio.Event()

    @worker.handler("ok")
    async def ok(ctx: JobContext) -> Any:
        ctx.progress(50, value={"partial": SECRET})
        return {"echo": ctx.data["secret"]}

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> Any:
        raise RuntimeError("attempt failed")

    @worker.handler("bad-result")
    async def bad_result(ctx: JobContext) -> Raw:
        return Raw(f"not json {SECRET}".encode(), "application/json")

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> Any:
        await release.wait()

    async def add(name: str, **options: Any) -> str:
        reply = await broker.jobs.Add(
            job_service_pb2.AddRequest(
                queue=queue,
                name=name,
                data=job_pb2.Payload(body=json.dumps({"secret": SECRET}).encode()),
                options=job_pb2.JobOptions(**options),
            )
        )
        return str(reply.job_id)

    async def state(job_id: str) -> int:
        reply = await broker.jobs.GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id)
        )
        return int(reply.job.state)

    await worker.start()
    try:
        ended = {
            await add("ok"): job_pb2.JOB_STATE_COMPLETED,
            await add("flaky", attempts=2): job_pb2.JOB_STATE_FAILED,
            await add("bad-result"): job_pb2.JOB_STATE_FAILED,
        }
        cancelled = await add("slow")
        await eventually(lambda: state(cancelled), lambda s: s == job_pb2.JOB_STATE_ACTIVE)
        await broker.jobs.Cancel(job_service_pb2.CancelRequest(queue=queue, job_id=cancelled))
        ended[cancelled] = job_pb2.JOB_STATE_CANCELLED
        for job_id, final in ended.items():
            await eventually(lambda job_id=job_id: state(job_id), lambda s, f=final: s == f)
    finally:
        await asyncio.wait_for(worker.stop(0), 15)

    assert caplog.records, "the lifecycle logged nothing: the test would prove nothing"
    formatter = JsonFormatter()
    for record in caplog.records:
        assert SECRET not in formatter.format(record), record.getMessage()
    # The lines about a job name it.
    about_jobs = [r for r in caplog.records if getattr(r, "job_id", None)]
    assert about_jobs
    assert all(getattr(r, "queue", None) == queue for r in about_jobs)
