"""Job options the broker would refuse, or that the wire would turn into something else, raise
the broker's own error (InvalidArgument naming the field) before any call is made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from jobbroker import AsyncClient, Backoff, InvalidArgument, JobOptions, Keep
from jobbroker.errors import from_rpc_error
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from .conftest import ClientFactory, RunningBroker

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"priority": -1}, "options.priority"),
    ({"priority": 1_000_001}, "options.priority"),
    ({"priority": 1.5}, "options.priority"),
    ({"attempts": 0}, "options.attempts"),
    ({"attempts": -1}, "options.attempts"),
    ({"attempts": 10_001}, "options.attempts"),
    ({"delay": -1}, "options.delay_ms"),
    ({"delay": timedelta(seconds=-1)}, "options.delay_ms"),
    ({"delay": float("nan")}, "options.delay_ms"),
    ({"delay": 11 * 365 * 24 * 3600}, "options.delay_ms"),
    ({"timeout": 0}, "options.timeout_ms"),
    ({"timeout": 0.0004}, "options.timeout_ms"),
    ({"timeout": -5}, "options.timeout_ms"),
    ({"lifespan": timedelta(microseconds=10)}, "options.lifespan_ms"),
    ({"backoff": Backoff("linear", 1)}, "options.backoff.type"),  # type: ignore[arg-type]
    ({"backoff": Backoff("fixed", -1)}, "options.backoff.delay_ms"),
    ({"backoff": Backoff("fixed", 1, jitter=1.5)}, "options.backoff.jitter"),
    ({"backoff": Backoff("fixed", 1, max_delay=0)}, "options.backoff.max_delay_ms"),
    ({"remove_on_complete": -1}, "options.remove_on_complete.keep_last"),
    ({"remove_on_fail": Keep(age=0)}, "options.remove_on_fail.keep_age_ms"),
    ({"remove_on_fail": Keep()}, "options.remove_on_fail"),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED)
def test_job_options_refuse_values_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        JobOptions(**fields)
    error = raised.value
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_FIELD"


def test_values_at_the_limits_are_kept() -> None:
    options = JobOptions(
        priority=1_000_000,
        attempts=10_000,
        delay=0,
        timeout=0.001,
        lifespan=timedelta(milliseconds=1),
        backoff=Backoff("exponential", 0),
        remove_on_fail=Keep(last=5),
    )
    message = options.to_proto()
    assert (message.priority, message.attempts, message.timeout_ms, message.lifespan_ms) == (
        1_000_000,
        10_000,
        1,
        1,
    )


def test_keeping_the_last_zero_jobs_removes_them_at_once() -> None:
    """``0`` on the wire means "not set" (keep everything): the opposite of what was asked."""
    assert JobOptions(remove_on_complete=0).to_proto().remove_on_complete.remove
    assert JobOptions(remove_on_fail=0).to_proto().remove_on_fail.remove


@pytest.mark.parametrize(
    "fields",
    [{"priority": -1}, {"delay": -1}, {"attempts": 0}, {"attempt_timeout": 0.0001}],
)
async def test_add_raises_invalid_argument_before_calling(
    make_client: ClientFactory, fields: dict[str, Any], queue: str
) -> None:
    # Nothing listens there: an error from the broker would be UNAVAILABLE, not this.
    client = make_client("127.0.0.1:1", retries=0, timeout=1)
    with pytest.raises(InvalidArgument, match="options"):
        await client.add(queue, "job", **fields)


async def test_the_error_is_the_one_the_broker_answers(broker: RunningBroker, queue: str) -> None:
    """For a rule both sides check, the client's error and the broker's match."""
    async with grpc.aio.insecure_channel(broker.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.AddRequest(
            queue=queue, name="job", options=job_pb2.JobOptions(priority=2_000_000)
        )
        with pytest.raises(grpc.aio.AioRpcError) as answered:
            await stub.Add(request)
    from_broker = from_rpc_error(answered.value)
    async with AsyncClient(broker.address) as client:
        with pytest.raises(InvalidArgument) as raised:
            await client.add(queue, "job", priority=2_000_000)
    mine = raised.value
    assert type(from_broker) is type(mine)
    assert (mine.code, mine.reason, mine.field) == (
        from_broker.code,
        from_broker.reason,
        from_broker.field,
    )
    assert mine.message.startswith(from_broker.message)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"every": 0}, "schedule.every_ms"),
        ({"every": 0.0004}, "schedule.every_ms"),
        ({"every": -60}, "schedule.every_ms"),
        ({"every": 0.5}, "schedule.every_ms"),  # the broker's minimum is 1 s
        ({"every": 60, "limit": -1}, "schedule.limit"),
    ],
)
async def test_schedule_values_are_checked_before_calling(
    make_client: ClientFactory, fields: dict[str, Any], field: str, queue: str
) -> None:
    client = make_client("127.0.0.1:1", retries=0, timeout=1)
    with pytest.raises(InvalidArgument) as raised:
        await client.upsert_schedule(queue, "k", "job", **fields)
    assert raised.value.field == field
