"""Run one handler and turn what it did into the outcome the broker gets."""

from __future__ import annotations

import asyncio
import asyncio.futures
import asyncio.tasks
import concurrent.futures.thread
import inspect
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

import orjson

from ._calls import retry_delay
from ._worker_context import DoNotRetry, JobContext
from .models import Raw
from .v1 import worker_service_pb2 as ws

Handler = Callable[[JobContext], Any]
"""A job handler: ``(ctx) -> result``, a plain function (run in a thread) or ``async def``."""

# The broker's limits on a failure (worker_service.proto, FailRequest).
MAX_MESSAGE = 65_536
MAX_ERROR_TYPE = 256
MAX_STACK = 262_144

# Frames of the machinery between the worker and the handler, left out of reported stacks.
_PLUMBING = frozenset(
    module.__file__
    for module in (asyncio.futures, asyncio.tasks, concurrent.futures.thread)
    if module.__file__
) | {__file__}


def is_async(handler: Handler) -> bool:
    """Whether a handler is a coroutine function (or an object with an async ``__call__``)."""
    call = type(handler).__dict__.get("__call__") if not inspect.isroutine(handler) else None
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _stack(exc: BaseException) -> str:
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _PLUMBING:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > MAX_STACK:  # keep the end: the raising frame and the exception
        text = "...\n" + text[-(MAX_STACK - 4) :]
    return text


class Report:
    """An outcome waiting to be sent: written straight into the stream's message (building a
    protobuf message per job and copying it into the request would cost twice as much)."""

    __slots__ = (
        "body",
        "content_type",
        "error_type",
        "job_id",
        "kind",
        "message",
        "no_retry",
        "queue",
        "stack",
        "token",
    )

    def __init__(self, kind: str, queue: str, job_id: str, token: str) -> None:
        self.kind = kind
        """``complete``, ``fail`` or ``release``."""
        self.queue = queue
        self.job_id = job_id
        self.token = token
        self.body: bytes | None = None
        self.content_type = ""
        self.message = self.error_type = self.stack = ""
        self.no_retry = False

    def __repr__(self) -> str:
        return f"<Report {self.kind} {self.queue}/{self.job_id}>"

    def write(self, outcome: ws.Outcome) -> None:
        """Fill an (empty) ``Outcome`` of a request."""
        if self.kind == "complete":
            complete = outcome.complete
            complete.queue, complete.job_id, complete.token = self.queue, self.job_id, self.token
            if self.body is not None:
                complete.result.body = self.body
                if self.content_type:
                    complete.result.content_type = self.content_type
        elif self.kind == "fail":
            fail = outcome.fail
            fail.queue, fail.job_id, fail.token = self.queue, self.job_id, self.token
            fail.message, fail.error_type, fail.stack = self.message, self.error_type, self.stack
            fail.no_retry = self.no_retry
        else:
            release = outcome.release
            release.queue, release.job_id, release.token = self.queue, self.job_id, self.token


def fail(
    ctx: JobContext, error_type: str, message: str, stack: str = "", *, no_retry: bool = False
) -> Report:
    """A failure of the current attempt."""
    report = Report("fail", ctx.queue, ctx.id, ctx._token)
    report.message = message[:MAX_MESSAGE]
    report.error_type = error_type[:MAX_ERROR_TYPE]
    report.stack = stack
    report.no_retry = no_retry
    return report


def failure(ctx: JobContext, exc: BaseException, *, no_retry: bool = False) -> Report:
    """The failure an exception stands for: its class name, text and stack."""
    return fail(ctx, type(exc).__name__, str(exc), _stack(exc), no_retry=no_retry)


def release(queue: str, job_id: str, token: str) -> Report:
    """Give a lease back without spending an attempt."""
    return Report("release", queue, job_id, token)


def complete(ctx: JobContext, result: Any) -> Report:
    """A completion with the handler's result (JSON, or :class:`Raw` as is)."""
    report = Report("complete", ctx.queue, ctx.id, ctx._token)
    if isinstance(result, Raw):
        report.body, report.content_type = result.body, result.content_type
    elif result is not None:
        try:
            report.body = orjson.dumps(result)
        except TypeError as exc:
            return fail(
                ctx,
                type(exc).__name__,
                f"the handler's result cannot be encoded as JSON ({exc}); return "
                "JSON-compatible values or jobbroker.Raw",
            )
    return report


def unknown_name(ctx: JobContext, known: list[str]) -> Report:
    """The failure of a job nobody registered a handler for: final, retrying cannot help."""
    names = ", ".join(repr(name) for name in sorted(known)) or "none"
    return fail(
        ctx,
        "UnknownJobName",
        f"worker {ctx.worker_id} has no handler for job name {ctx.name!r} (handlers: {names}; "
        "register one with @worker.handler(name) or a default with @worker.handler())",
        no_retry=True,
    )


def stopped(ctx: JobContext) -> Report | None:
    """The outcome of a handler that stopped because it was asked to: cancelled jobs fail
    (the broker ends them CANCELLED), shut-down ones go back, lost leases report nothing."""
    reason = ctx._stop_reason
    if reason == "lost":
        return None
    if reason == "cancel":
        detail = f" ({ctx.stop_detail})" if ctx.stop_detail else ""
        return fail(ctx, "CancelledError", f"cancelled{detail}", no_retry=True)
    return release(ctx.queue, ctx.id, ctx._token)


async def run_handler(
    ctx: JobContext, handler: Handler, threaded: bool, executor: Executor | None
) -> Report | None:
    """Run the handler; return the outcome to report, or None when nothing may be reported."""
    try:
        if threaded:
            result = await asyncio.get_running_loop().run_in_executor(executor, handler, ctx)
        else:
            result = handler(ctx)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        external = task is not None and task.cancelling() > 0
        if external:
            task.uncancel()  # type: ignore[union-attr]
        if ctx._stop_reason is not None:
            return stopped(ctx)
        # Not a stop the worker asked for: raised by the handler's own code (a failure), or
        # the task cancelled from outside, as when the event loop closes (give the job back).
        return release(ctx.queue, ctx.id, ctx._token) if external else failure(ctx, exc)
    except DoNotRetry as exc:
        return failure(ctx, exc, no_retry=True)
    except BaseException as exc:  # a handler's SystemExit must not take the worker down
        return failure(ctx, exc)
    if ctx._stop_reason == "lost":
        return None
    return complete(ctx, result)


class Backoff:
    """Exponential backoff with jitter: first, 2x first, ... capped; reset after a success."""

    def __init__(self, first: float = 0.05, cap: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = retry_delay(self.failures, self.first, self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
