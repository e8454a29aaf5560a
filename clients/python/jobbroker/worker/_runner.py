"""Run one handler and turn what it did into the outcome the broker gets."""

from __future__ import annotations

import asyncio
import asyncio.futures
import asyncio.tasks
import concurrent.futures.thread
import contextvars
import inspect
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

from .. import tracing
from ._context import DoNotRetry, JobContext
from ._lease import Lease
from ._outcomes import MAX_STACK, Report, complete, fail, release, stopped

Handler = Callable[[JobContext], Any]
"""A job handler: ``(ctx) -> result``, a plain function (run in a thread) or ``async def``."""

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


def failure(lease: Lease, exc: BaseException, *, no_retry: bool = False) -> Report:
    """The failure an exception stands for: its class name, text and stack."""
    return fail(lease, type(exc).__name__, str(exc), _stack(exc), no_retry=no_retry)


async def run_handler(
    lease: Lease, ctx: JobContext, handler: Handler, executor: Executor | None
) -> Report | None:
    """Run the handler; return the outcome to report, or None when nothing may be reported.

    In a process that uses OpenTelemetry the handler runs in the attempt's ``process <queue>``
    span (jobbroker.tracing); otherwise nothing of it is touched."""
    if not tracing.loaded():
        return await _run(lease, ctx, handler, executor, traced=False)
    with tracing.process_span(lease.job, ctx.worker_id) as span:
        report = await _run(lease, ctx, handler, executor, traced=True)
        if report is None:
            tracing.end_process(span, "lost")
        else:
            tracing.end_process(span, report.kind, report.error_type, report.message, report.stack)
        return report


async def _run(
    lease: Lease, ctx: JobContext, handler: Handler, executor: Executor | None, *, traced: bool
) -> Report | None:
    try:
        if lease.threaded:
            loop = asyncio.get_running_loop()
            if traced:  # the thread runs in the span too (an executor does not carry it over)
                run = contextvars.copy_context().run
                result = await loop.run_in_executor(executor, run, handler, ctx)
            else:
                result = await loop.run_in_executor(executor, handler, ctx)
        else:
            result = handler(ctx)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        external = task is not None and task.cancelling() > 0
        if external:
            task.uncancel()  # type: ignore[union-attr]
        if lease.stop_reason is not None:
            return stopped(lease)
        # Not a stop the worker asked for: raised by the handler's own code (a failure), or
        # the task cancelled from outside, as when the event loop closes (give the job back).
        return release(lease.queue, lease.job_id, lease.token) if external else failure(lease, exc)
    except DoNotRetry as exc:
        return failure(lease, exc, no_retry=True)
    except BaseException as exc:  # a handler's SystemExit must not take the worker down
        return failure(lease, exc)
    if lease.stop_reason == "lost":
        return None
    return complete(lease, result)
