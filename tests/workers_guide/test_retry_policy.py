"""The processors' retry policy: Transient failures are tried again with the server's
Retry-After or backoff, only while the attempt has time left; Permanent ones at once fail."""

from __future__ import annotations

import time

import pytest
from jobbroker_worker.retry import MAX_TRIES, Permanent, Transient, retried


async def test_retry_after_is_honoured_then_it_succeeds() -> None:
    calls: list[float] = []

    async def call() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Transient("429", retry_after=0.3)
        return "done"

    assert await retried(call, time.monotonic() + 30) == "done"
    assert calls[1] - calls[0] >= 0.3


async def test_no_retry_that_would_end_past_the_attempts_deadline() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Transient("429", retry_after=5)

    started = time.monotonic()
    with pytest.raises(Transient):
        await retried(call, time.monotonic() + 3)  # 5 s would end past the deadline
    assert calls == 1
    assert time.monotonic() - started < 1


async def test_tries_are_bounded_and_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Transient("500", retry_after=0)

    with pytest.raises(Transient):
        await retried(flaky, time.monotonic() + 30)
    assert calls == MAX_TRIES

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise Permanent("400")

    calls = 0
    with pytest.raises(Permanent):
        await retried(refused, time.monotonic() + 30)
    assert calls == 1
