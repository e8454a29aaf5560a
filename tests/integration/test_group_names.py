"""A job's group name (JobOptions.group) follows one rule everywhere it can be given: 1-128
characters without spaces, braces or controls, as the proto says, and the message says so."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import error_info, payload, status
from jobbroker.v1 import job_pb2, job_service_pb2, queue_service_pb2, queue_service_pb2_grpc

RULE = "must be 1-128 characters without spaces, braces or controls"

Add = Callable[[Running, str, str], Awaitable[Any]]
"""Give ``group`` to a job through one RPC; returns the reply."""


def _options(group: str) -> job_pb2.JobOptions:
    return job_pb2.JobOptions(group=group)


ADDS: dict[str, tuple[Add, str]] = {
    "Add": (
        lambda b, q, g: b.jobs.Add(
            job_service_pb2.AddRequest(queue=q, name="n", data=payload({}), options=_options(g))
        ),
        "options.group",
    ),
    "AddBulk": (
        lambda b, q, g: b.jobs.AddBulk(
            job_service_pb2.AddBulkRequest(
                queue=q,
                jobs=[job_service_pb2.BulkJob(name="n", data=payload({}), options=_options(g))],
            )
        ),
        "jobs[0].options.group",
    ),
    "UpsertSchedule": (
        lambda b, q, g: queue_service_pb2_grpc.QueueServiceStub(b.channel).UpsertSchedule(
            queue_service_pb2.UpsertScheduleRequest(
                schedule=queue_service_pb2.Schedule(
                    queue=q, key="k", name="n", every_ms=60_000, options=_options(g)
                )
            )
        ),
        "schedule.options.group",
    ),
}


@pytest.mark.parametrize("rpc", ADDS)
@pytest.mark.parametrize("group", ["g" * 129, "g" * 300, "two words", "{tag}", "tab\t"])
async def test_a_group_name_outside_the_rule_is_refused_with_the_rule(
    broker: Running, queue: str, rpc: str, group: str
) -> None:
    add, field = ADDS[rpc]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await add(broker, queue, group)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error_info(error).metadata["field"] == field
    assert error.details() == f"{field}: {RULE}"


@pytest.mark.parametrize("rpc", ADDS)
async def test_a_group_name_of_128_characters_is_accepted(
    broker: Running, queue: str, rpc: str
) -> None:
    add, _ = ADDS[rpc]
    reply = await add(broker, queue, "g" * 128)
    if rpc == "Add":
        assert (await status(broker, queue, reply.job_id)).options.group == "g" * 128
