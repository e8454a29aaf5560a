"""Lease tokens the broker never issued: refused as INVALID_ARGUMENT naming the token, on every
unary call and every item of the worker stream, never as "leased again since" (LEASE_SUPERSEDED,
which only the token of an older lease of the job gets)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import (
    LeasedJob,
    S,
    add_id,
    complete,
    complete_req,
    error_info,
    expect_error,
    fail_req,
    lease_one,
    outcome_complete,
    outcome_fail,
    outcome_release,
    release_req,
    status,
    update,
    worker_stream,
)
from jobbroker.v1 import worker_service_pb2

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

Unary = Callable[[Running, LeasedJob], Awaitable[Any]]
UNARY: dict[str, Unary] = {
    "Complete": lambda b, job: b.workers.Complete(complete_req(job, {"ok": True})),
    "Fail": lambda b, job: b.workers.Fail(fail_req(job)),
    "Release": lambda b, job: b.workers.Release(release_req(job)),
}


def forged(job: LeasedJob, token: str) -> LeasedJob:
    copy = worker_service_pb2.LeasedJob()
    copy.CopyFrom(job)
    copy.token = token
    return copy


def never_issued(job: LeasedJob) -> list[str]:
    """Tokens of the shape Lease gives, which it never gave for ``job``."""
    return [
        f"{job.fence + 1}-{job.token.partition('-')[2]}",  # a fence above the job's newest
        f"{job.fence}-0000000000000000",  # the newest fence, another token
    ]


@pytest.mark.parametrize("method", UNARY)
async def test_a_token_never_issued_is_invalid_and_changes_nothing(
    broker: Running, queue: str, method: str
) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    before = await status(broker, queue, job_id)
    for token in [*never_issued(leased), "garbage", "0-abc"]:
        error = await expect_error(
            UNARY[method](broker, forged(leased, token)), INVALID_ARGUMENT, "INVALID_FIELD"
        )
        assert error_info(error).metadata["field"] == "token"
        assert "superseded" not in (error.details() or "")
        assert "leased again" not in (error.details() or "")
    assert await status(broker, queue, job_id) == before
    assert await complete(broker, leased) == S.JOB_STATE_COMPLETED  # the live token still works


@pytest.mark.parametrize("method", UNARY)
async def test_an_older_lease_token_is_still_superseded(
    broker: Running, queue: str, method: str
) -> None:
    await add_id(broker, queue)
    old = await lease_one(broker, queue)
    await broker.workers.Release(release_req(old))
    await lease_one(broker, queue)
    await expect_error(UNARY[method](broker, old), FAILED_PRECONDITION, "LEASE_SUPERSEDED")


async def test_items_with_a_token_never_issued_are_invalid_on_the_worker_stream(
    broker: Running, queue: str
) -> None:
    await add_id(broker, queue)
    async with worker_stream(broker, "worker-t", [queue]) as stream:
        leased = await lease_one(broker, queue, "worker-t")
        for token in [*never_issued(leased), "garbage"]:
            bad = forged(leased, token)
            ack = await stream.send([update(bad, percent=50)])
            [refused] = ack.leases
            assert (refused.error.code, refused.error.reason) == (
                INVALID_ARGUMENT.value[0],
                "INVALID_FIELD",
            )
            assert "token" in refused.error.message
            for outcome in (outcome_complete(bad), outcome_fail(bad), outcome_release(bad)):
                [result] = (await stream.send(outcomes=[outcome])).outcomes
                assert (result.error.code, result.error.reason) == (
                    INVALID_ARGUMENT.value[0],
                    "INVALID_FIELD",
                ), result.error.message
        [ok] = (await stream.send(outcomes=[outcome_complete(leased)])).outcomes
        assert not ok.HasField("error")
