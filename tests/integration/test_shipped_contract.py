"""A caller that has nothing but the files under protos/ (as a generator in another language
would) can read the broker's errors, its health and its events.

The descriptors come from `buf build` of the repository's module, in a pool of their own, so
nothing of the Python packages' own copies (googleapis-common-protos, grpcio-health-checking,
the generated jobbroker.v1) is used to decode.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Running
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from helpers import add_id, complete, lease_one

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pool.DescriptorPool:
    out = tmp_path_factory.mktemp("buf") / "contract.binpb"
    subprocess.run(
        [str(BUF), "build", "--as-file-descriptor-set", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # dependencies first, as buf writes them
        pool.Add(file)
    return pool


def message(pool: descriptor_pool.DescriptorPool, name: str) -> Any:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


async def test_an_error_is_a_status_with_error_info_in_the_details_trailer(
    broker: Running, shipped: descriptor_pool.DescriptorPool, queue: str
) -> None:
    request = message(shipped, "jobbroker.v1.GetStatusRequest")(queue=queue, job_id="nope")
    call = broker.channel.unary_unary(
        "/jobbroker.v1.JobService/GetStatus", request_serializer=request.SerializeToString
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    error = raised.value
    trailer = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]

    status = message(shipped, "google.rpc.Status").FromString(trailer)
    assert (status.code, status.message) == (grpc.StatusCode.NOT_FOUND.value[0], error.details())
    [detail] = status.details
    assert detail.type_url == "type.googleapis.com/google.rpc.ErrorInfo"
    info = message(shipped, "google.rpc.ErrorInfo").FromString(detail.value)
    assert (info.domain, info.reason) == ("jobbroker.v1", "JOB_NOT_FOUND")
    assert dict(info.metadata) == {"queue": queue, "job_id": "nope"}
    reasons = shipped.FindEnumTypeByName("jobbroker.v1.ErrorReason").values_by_name
    assert f"ERROR_REASON_{info.reason}" in reasons


async def test_health_answers_through_the_shipped_health_proto(
    broker: Running, shipped: descriptor_pool.DescriptorPool
) -> None:
    request_type = message(shipped, "grpc.health.v1.HealthCheckRequest")
    response_type = message(shipped, "grpc.health.v1.HealthCheckResponse")
    check = broker.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    reply = await check(request_type(service="jobbroker.v1.JobService"))
    assert reply.status == response_type.SERVING


async def test_the_final_event_is_marked_on_the_wire(
    broker: Running, shipped: descriptor_pool.DescriptorPool, queue: str
) -> None:
    request_type = message(shipped, "jobbroker.v1.StreamProgressRequest")
    response_type = message(shipped, "jobbroker.v1.StreamProgressResponse")
    job_id = await add_id(broker, queue)
    await complete(broker, await lease_one(broker, queue))
    follow = broker.channel.unary_stream(
        "/jobbroker.v1.JobService/StreamProgress",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    items = [
        item
        async for item in follow(request_type(queue=queue, job_id=job_id, after_event_id="0-0"))
    ]
    event_type = shipped.FindEnumTypeByName("jobbroker.v1.EventType")
    seen = [(event_type.values_by_number[i.event.type].name, i.event.final) for i in items]
    assert seen == [
        ("EVENT_TYPE_ADDED", False),
        ("EVENT_TYPE_ACTIVE", False),
        ("EVENT_TYPE_COMPLETED", True),
    ]
