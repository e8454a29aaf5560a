"""The one retry policy of the guide's processors (tenacity): failures that may pass (rate
limits, server errors, lost connections, timeouts, an SMTP 4xx) are tried again inside the
attempt, with exponential backoff or the server's ``Retry-After``, for as long as the
attempt's remaining time allows; failures that cannot pass fail the job for good."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from jobbroker import DoNotRetry, JobContext
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 20.0
MAX_TRIES = 6
MARGIN_S = 1.0
"""Time kept free before the attempt's deadline: a retry that would end later is not tried."""


class Permanent(DoNotRetry):
    """A failure that cannot succeed on a retry (a bad request, a refused key, an unknown
    model, a content-policy refusal, a rejected recipient): fails the job for good."""


class Transient(Exception):
    """A failure worth trying again: ``retry_after`` (seconds) when the server said when."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def deadline(ctx: JobContext | None, budget: float) -> float:
    """The monotonic time the attempt's retries must end by: the job's timeout (or the
    worker's default), else ``budget`` seconds from now."""
    limit = time.monotonic() + budget
    timeout_at = ctx.timeout_at if ctx is not None else None
    if timeout_at is not None:
        left = (timeout_at - datetime.now(UTC)).total_seconds()
        limit = min(limit, time.monotonic() + left)
    return limit


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, Transient) and error.retry_after is not None:
        return max(0.0, error.retry_after)
    backoff = min(MAX_DELAY_S, FIRST_DELAY_S * float(2 ** (state.attempt_number - 1)))
    return backoff * random.uniform(0.8, 1.0)


async def retried(
    call: Callable[[], Awaitable[T]],
    until: float,
    on_retry: Callable[[Transient, float], None] | None = None,
) -> T:
    """Await ``call()``, again after each :class:`Transient` failure while the wait before the
    next try ends before ``until`` (monotonic) minus a margin, at most :data:`MAX_TRIES` tries.
    The last failure is raised as it is: the broker then retries the job while it has
    attempts left. ``on_retry(error, wait)`` is told of each retry."""

    def stop(state: RetryCallState) -> bool:
        late = time.monotonic() + state.upcoming_sleep > until - MARGIN_S
        return late or state.attempt_number >= MAX_TRIES

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(error, Transient):
            on_retry(error, state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda error: isinstance(error, Transient)),
        wait=_wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )

    async def once() -> T:
        # A coroutine function, so tenacity awaits it (a lambda returning an awaitable would
        # be taken for a plain function and its result returned unawaited).
        return await call()

    return await retrying(once)
