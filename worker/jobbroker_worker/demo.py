"""The demo worker: ``jobbroker serve --demo`` runs it beside the broker, on the queue ``demo``.

Run it on its own with ``jobbroker work jobbroker_worker.demo``. Its jobs:

- ``sleep`` ``{"seconds": 5}``: sleeps, reporting progress and a log line at each step;
- ``fail`` ``{"message": "..."}``: always fails (every attempt, then for good);
- ``flaky`` ``{"failures": 2}``: fails its first ``failures`` attempts, then succeeds; give it
  ``--attempts 3`` (or more) to see the retries;
- ``echo``: returns its data;
- ``tokens`` ``{"text": "...", "delay": 0.2}``: streams the text word by word as progress
  values, as an AI completion would;

any other name fails at once, without retries.

``JOBBROKER_ADDRESS`` (default ``127.0.0.1:50051``; with ``JOBBROKER_TOKEN`` and the TLS
variables, read by ``Worker``) names the broker and ``JOBBROKER_DEMO_QUEUE`` (default ``demo``)
the queue.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobbroker.worker import DoNotRetry, JobContext, Worker

QUEUE = os.environ.get("JOBBROKER_DEMO_QUEUE", "demo")
NAMES = ("sleep", "fail", "flaky", "echo", "tokens")

worker = Worker(QUEUE, concurrency=10, grace=5.0)


class DemoError(Exception):
    """What the ``fail`` and ``flaky`` jobs raise."""


def _field(ctx: JobContext, name: str, default: Any, kind: type) -> Any:
    data = ctx.data if isinstance(ctx.data, dict) else {}
    value = data.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DoNotRetry(f"data.{name} must be a {kind.__name__} (got {value!r})")
    return value


@worker.handler("sleep")
async def sleep(ctx: JobContext) -> dict[str, Any]:
    seconds: float = _field(ctx, "seconds", 5.0, float)
    if not 0 <= seconds <= 3600:
        raise DoNotRetry(f"data.seconds must be between 0 and 3600 (got {seconds})")
    steps = max(1, min(100, round(seconds * 4)))
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        ctx.progress(percent=100.0 * step / steps, value={"step": step, "of": steps})
        ctx.log(f"step {step} of {steps}")
    return {"slept": seconds}


@worker.handler("fail")
async def fail(ctx: JobContext) -> None:
    message: str = _field(ctx, "message", "this job always fails", str)
    ctx.log(f"attempt {ctx.attempt} of {ctx.max_attempts}: failing on purpose")
    raise DemoError(message)


@worker.handler("flaky")
async def flaky(ctx: JobContext) -> dict[str, Any]:
    failures: int = _field(ctx, "failures", 2, int)
    await asyncio.sleep(0.2)
    if ctx.attempt <= failures:
        ctx.log(f"attempt {ctx.attempt}: failing ({failures} failures planned)")
        raise DemoError(f"attempt {ctx.attempt} failed on purpose; {failures} planned")
    ctx.log(f"attempt {ctx.attempt}: succeeding")
    return {"succeeded_on_attempt": ctx.attempt}


@worker.handler("echo")
async def echo(ctx: JobContext) -> Any:
    return ctx.data


@worker.handler("tokens")
async def tokens(ctx: JobContext) -> dict[str, Any]:
    text: str = _field(ctx, "text", "jobbroker streams partial output through progress", str)
    delay: float = _field(ctx, "delay", 0.2, float)
    words = text.split()
    for count in range(1, len(words) + 1):
        await asyncio.sleep(delay)
        ctx.progress(percent=100.0 * count / len(words), value={"text": " ".join(words[:count])})
    return {"text": text}


@worker.handler()
async def unknown(ctx: JobContext) -> None:
    raise DoNotRetry(
        f"the demo worker has no job named {ctx.name!r}; use one of {', '.join(NAMES)}"
    )
