"""Job data schemas checked at Add: set through QueueService (client, raw stub), refused data
answered INVALID_ARGUMENT with the field path and the rule, nothing stored; several replicas;
the Worker SDK's registration from pydantic models."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from jobbroker import AsyncClient, InvalidArgument, JobOptions, LimitExceeded, Worker
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, queue_service_pb2_grpc
from jobbroker.v1 import queue_service_pb2 as qpb
from jobbroker_broker.server.job_schemas import MAX_SCHEMA_BYTES
from pydantic import BaseModel, Field

from .conftest import Running, start_broker


class Turn(BaseModel):
    role: str
    content: str


class Completion(BaseModel):
    userId: str
    conversationId: str
    message: str = Field(min_length=1)
    maxTokens: int = Field(default=4096, ge=1)
    messages: list[Turn] = []


GOOD = {"userId": "u1", "conversationId": "c1", "message": "hi"}


def _info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    pytest.fail(f"{error.code()} {error.details()!r} carries no ErrorInfo")


async def _counts(client: AsyncClient, queue: str) -> tuple[int, ...]:
    counts = (await client.queue(queue)).counts
    return (counts.waiting, counts.delayed, counts.active, counts.completed)


async def test_add_refuses_data_that_breaks_the_schema(client: AsyncClient, queue: str) -> None:
    assert await client.set_job_schema(queue, "generate-completion", Completion) is True
    assert await client.set_job_schema(queue, "generate-completion", Completion) is False
    added = await client.add(queue, "generate-completion", GOOD)
    assert added.state == "waiting"

    bad = {**GOOD, "messages": [{"role": "user", "content": 3}]}
    with pytest.raises(InvalidArgument) as refused:
        await client.add(queue, "generate-completion", bad)
    assert refused.value.field == "data.messages[0].content"
    assert refused.value.metadata["rule"] == "type"
    assert "data.messages[0].content" in refused.value.message

    with pytest.raises(InvalidArgument) as missing:
        await client.add(queue, "generate-completion", {"userId": "u1", "message": "hi"})
    assert missing.value.field == "data.conversationId"
    assert missing.value.metadata["rule"] == "required"

    with pytest.raises(InvalidArgument) as short:
        await client.add(queue, "generate-completion", {**GOOD, "message": ""})
    assert (short.value.field, short.value.metadata["rule"]) == ("data.message", "minLength")

    # Other names of the queue are not checked; nothing refused was stored.
    await client.add(queue, "other", {"anything": [1, 2]})
    assert await _counts(client, queue) == (2, 0, 0, 0)


async def test_refusal_reaches_a_raw_grpc_caller_with_error_info(
    broker: Running, client: AsyncClient, queue: str
) -> None:
    await client.set_job_schema(queue, "send", {"type": "object", "required": ["to"]})
    async with grpc.aio.insecure_channel(broker.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.AddRequest(
            queue=queue, name="send", data=job_pb2.Payload(body=b'{"subject": "x"}')
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Add(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = _info(refused.value)
        assert info.reason == "INVALID_FIELD"
        assert dict(info.metadata) == {"field": "data.to", "rule": "required"}

        # Data that is not JSON cannot match a schema.
        opaque = job_service_pb2.AddRequest(
            queue=queue,
            name="send",
            data=job_pb2.Payload(body=b"\x00\x01", content_type="application/octet-stream"),
        )
        with pytest.raises(grpc.aio.AioRpcError) as typed:
            await stub.Add(opaque)
        assert _info(typed.value).metadata["field"] == "data.content_type"


async def test_add_bulk_checks_every_job(client: AsyncClient, queue: str) -> None:
    await client.set_job_schema(queue, "generate-completion", Completion)
    jobs: list[Any] = [
        ("generate-completion", GOOD),
        ("generate-completion", {**GOOD, "maxTokens": 0}),
    ]
    with pytest.raises(InvalidArgument) as refused:
        await client.add_bulk(queue, jobs)
    assert refused.value.field == "jobs[1].data.maxTokens"
    assert refused.value.metadata["rule"] == "minimum"
    assert await _counts(client, queue) == (0, 0, 0, 0)  # atomic: none was added


async def test_add_bulk_each_refuses_only_the_bad_jobs(
    broker: Running, client: AsyncClient, queue: str
) -> None:
    await client.set_job_schema(queue, "generate-completion", Completion)
    async with grpc.aio.insecure_channel(broker.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        good = job_pb2.Payload(body=json.dumps(GOOD).encode())
        bad = job_pb2.Payload(body=b'{"userId": 1}')
        reply = await stub.AddBulk(
            job_service_pb2.AddBulkRequest(
                queue=queue,
                each=True,
                jobs=[
                    job_service_pb2.BulkJob(name="generate-completion", data=good),
                    job_service_pb2.BulkJob(name="generate-completion", data=bad),
                ],
            )
        )
    assert reply.results[0].job_id
    assert [e.index for e in reply.errors] == [1]
    assert reply.errors[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert dict(reply.errors[0].metadata)["rule"] in ("type", "required")
    assert await _counts(client, queue) == (1, 0, 0, 0)


async def test_set_refuses_unusable_schemas(
    broker: Running, client: AsyncClient, queue: str
) -> None:
    cases = [
        "[1, 2]",  # not an object
        '{"$ref": "http://127.0.0.1:9/schema.json"}',  # fetched from elsewhere
        '{"$id": "http://127.0.0.1:9/", "$ref": "#/x"}',
        '{"type": "string", "minLength": "one"}',  # a keyword with a wrong value
        '{"type": "string", "pattern": "(unclosed"}',  # a bad regex
        json.dumps({"type": "string", "description": "x" * MAX_SCHEMA_BYTES}),
    ]
    async with grpc.aio.insecure_channel(broker.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        for text in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SetJobSchema(qpb.SetJobSchemaRequest(queue=queue, name="n", schema=text))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, text
            assert _info(refused.value).metadata["field"] == "schema", text
    assert await client.job_schemas(queue) == {}
    # The client refuses what is not a schema before sending it.
    with pytest.raises(ValueError, match="not valid JSON"):
        await client.set_job_schema(queue, "send", '{"type": "object", "properties": ')
    with pytest.raises(TypeError, match="a schema is a dict"):
        await client.set_job_schema(queue, "send", [1, 2])


async def test_a_schedule_is_checked_when_it_is_set(client: AsyncClient, queue: str) -> None:
    await client.set_job_schema(queue, "generate-completion", Completion)
    with pytest.raises(InvalidArgument) as refused:
        await client.upsert_schedule(
            queue, "nightly", "generate-completion", {**GOOD, "message": ""}, every=60
        )
    assert refused.value.field == "schedule.data.message"
    assert await client.schedules(queue) == []
    await client.upsert_schedule(queue, "nightly", "generate-completion", GOOD, every=60)
    assert [s.key for s in await client.schedules(queue)] == ["nightly"]


async def test_remove_and_list(client: AsyncClient, queue: str) -> None:
    await client.set_job_schema(queue, "a", {"type": "object"})
    await client.set_job_schema(queue, "b", Completion)
    listed = await client.job_schemas(queue)
    assert listed["a"] == {"type": "object"}
    assert listed["b"] == Completion.model_json_schema()
    with pytest.raises(InvalidArgument):
        await client.add(queue, "a", [1])
    assert await client.set_job_schema(queue, "a", None) is True
    assert await client.set_job_schema(queue, "a", None) is False
    await client.add(queue, "a", [1])  # no schema, no check
    assert list(await client.job_schemas(queue)) == ["b"]


async def test_a_schema_set_on_one_replica_applies_on_another(
    redis_url: str, broker: Running, queue: str
) -> None:
    other = await start_broker(redis_url)
    try:
        async with (
            AsyncClient(broker.address, retries=0) as first,
            AsyncClient(other.address, retries=0) as second,
        ):
            await second.add(queue, "send", {"to": 1})  # caches "no schema" on `other`
            await first.set_job_schema(queue, "send", {"properties": {"to": {"type": "string"}}})
            deadline = time.monotonic() + 10
            refused: InvalidArgument | None = None
            while refused is None:
                try:
                    await second.add(queue, "send", {"to": 2})
                except InvalidArgument as error:
                    refused = error
                    continue
                assert time.monotonic() < deadline, "the other replica never applied the schema"
                await asyncio.sleep(0.05)
            assert refused.field == "data.to"
    finally:
        await other.broker.stop(0.5)


async def test_the_worker_sdk_registers_its_handlers_schemas(
    broker: Running, client: AsyncClient, queue: str
) -> None:
    worker = Worker([queue, f"{queue}-b"], address=broker.address, wait=0.2)

    @worker.handler("generate-completion", schema=Completion)
    async def complete(ctx: Any) -> None:
        return None

    async with worker:
        deadline = time.monotonic() + 10
        while not await client.job_schemas(f"{queue}-b"):
            assert time.monotonic() < deadline, "the worker never registered its schema"
            await asyncio.sleep(0.05)
    assert (await client.job_schemas(queue))["generate-completion"]["title"] == "Completion"
    with pytest.raises(InvalidArgument) as refused:
        await client.add(queue, "generate-completion", {"userId": "u"})
    assert refused.value.field == "data.conversationId"
    assert json.loads(worker.schemas["generate-completion"]) == Completion.model_json_schema()


def test_a_schema_needs_a_job_name() -> None:
    worker = Worker("q", address="127.0.0.1:1")
    with pytest.raises(ValueError, match="needs a job name"):
        worker.handler(schema=Completion)


async def test_too_many_schemas(client: AsyncClient, queue: str, monkeypatch: Any) -> None:
    from jobbroker_broker.server import job_schemas

    monkeypatch.setattr(job_schemas, "MAX_SCHEMAS", 2)
    await client.set_job_schema(queue, "a", True)
    await client.set_job_schema(queue, "b", True)
    await client.set_job_schema(queue, "b", {"type": "object"})  # replacing is fine
    with pytest.raises(LimitExceeded):
        await client.set_job_schema(queue, "c", True)


async def test_jobs_with_options_are_checked_too(client: AsyncClient, queue: str) -> None:
    await client.set_job_schema(queue, "send", {"type": "object", "required": ["to"]})
    with pytest.raises(InvalidArgument):
        await client.add(queue, "send", {}, options=JobOptions(priority=3, attempts=2))


async def test_queue_service_stub_lists_schemas(broker: Running, queue: str) -> None:
    async with grpc.aio.insecure_channel(broker.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        await stub.SetJobSchema(qpb.SetJobSchemaRequest(queue=queue, name="n", schema="true"))
        reply = await stub.ListJobSchemas(qpb.ListJobSchemasRequest(queue=queue))
        assert [(s.name, s.schema) for s in reply.schemas] == [("n", "true")]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetJobSchema(qpb.SetJobSchemaRequest(queue=queue, name="", schema="{}"))
        assert _info(refused.value).metadata["field"] == "name"
        with pytest.raises(grpc.aio.AioRpcError) as garbled:
            await stub.SetJobSchema(qpb.SetJobSchemaRequest(queue=queue, name="n", schema="{"))
        assert _info(garbled.value).metadata["field"] == "schema"
        assert "not valid JSON" in (garbled.value.details() or "")
