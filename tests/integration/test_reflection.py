"""Server reflection and health, so grpcurl and grpc_health_probe work out of the box."""

from __future__ import annotations

from collections.abc import AsyncIterator

from conftest import Running
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


async def _one(
    request: reflection_pb2.ServerReflectionRequest,
) -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
    yield request


async def test_reflection_lists_every_service(broker: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(broker.channel)
    call = stub.ServerReflectionInfo(_one(reflection_pb2.ServerReflectionRequest(list_services="")))
    names = set()
    async for response in call:
        names |= {s.name for s in response.list_services_response.service}
    assert {
        "jobbroker.v1.JobService",
        "jobbroker.v1.WorkerService",
        "grpc.health.v1.Health",
    } <= names


async def test_reflection_describes_the_contract(broker: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(broker.channel)
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="jobbroker.v1.JobService"
    )
    call = stub.ServerReflectionInfo(_one(request))
    protos = [r.file_descriptor_response.file_descriptor_proto async for r in call]
    assert protos, "no descriptor for jobbroker.v1.JobService"
    assert protos[0]


async def test_health_is_serving_for_each_service(broker: Running) -> None:
    stub = health_pb2_grpc.HealthStub(broker.channel)
    for service in ("", "jobbroker.v1.JobService", "jobbroker.v1.WorkerService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
