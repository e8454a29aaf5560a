"""One trace from a producer's span, through the broker's Add span, to the worker's process
span of each attempt: a real client, a real in-process broker over real Redis, a real Worker,
and the spans the OpenTelemetry SDK records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from jobbroker import AsyncClient, Client, JobContext, Worker
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

tracer = trace.get_tracer("tests.tracing")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def worker_of(address: str, queue: str) -> Worker:
    return Worker(queue, address=address, wait=1.0, grace=5.0)


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


async def finished(spans: InMemorySpanExporter, name: str, count: int) -> list[ReadableSpan]:
    """The spans named ``name`` once there are ``count`` of them. An aborted call's status
    reaches the caller before the broker's span ends (grpc.aio sends it from inside
    ``context.abort``), so a test that reads such spans waits for them."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while len(found := named(spans, name)) < count:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{count} {name} spans expected, got {len(found)}")
        await asyncio.sleep(0.01)
    return found


def one(found: Sequence[ReadableSpan]) -> ReadableSpan:
    assert len(found) == 1, [s.name for s in found]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_from_producer_through_broker_add_to_worker_process(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    seen: dict[str, SpanContext] = {}
    worker = worker_of(broker_address, queue)

    @worker.handler("resize")
    async def resize(ctx: JobContext) -> Any:
        seen["async"] = trace.get_current_span().get_span_context()
        return {"ok": True}

    @worker.handler("thumb")
    def thumb(ctx: JobContext) -> Any:  # runs in a thread: the span must follow it there
        seen["thread"] = trace.get_current_span().get_span_context()
        return {"ok": True}

    async with AsyncClient(broker_address) as client, worker:
        with tracer.start_as_current_span("checkout") as producer:
            added = await client.add(queue, "resize", {"w": 10})
        with tracer.start_as_current_span("upload") as other:
            thumbed = await client.add(queue, "thumb", {"w": 5})
        assert await client.wait(queue, added.job_id, timeout=10) == {"ok": True}
        assert await client.wait(queue, thumbed.job_id, timeout=10) == {"ok": True}
        job = await client.get_status(queue, added.job_id)
    assert job.state.value == "completed"

    trace_id = producer.get_span_context().trace_id
    add = one(
        [s for s in named(spans, "jobbroker.v1.JobService/Add") if s.context.trace_id == trace_id]
    )
    assert add.kind is SpanKind.SERVER
    assert parent_id(add) == producer.get_span_context().span_id
    assert add.attributes is not None
    assert add.attributes["rpc.system.name"] == "grpc"
    assert add.attributes["rpc.method"] == "jobbroker.v1.JobService/Add"
    assert add.attributes["rpc.response.status_code"] == "OK"
    assert add.attributes["messaging.destination.name"] == queue
    assert add.attributes["messaging.message.id"] == added.job_id

    processes = named(spans, f"process {queue}")
    by_trace = {s.context.trace_id: s for s in processes}
    assert len(processes) == 2
    process = by_trace[trace_id]
    assert process.kind is SpanKind.CONSUMER
    assert parent_id(process) == producer.get_span_context().span_id
    assert process.attributes == {
        "messaging.system": "jobbroker",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": added.job_id,
        "messaging.client.id": worker.worker_id,
        "jobbroker.job.name": "resize",
        "jobbroker.job.attempt": 1,
        "jobbroker.job.max_attempts": 1,
        "jobbroker.job.outcome": "complete",
    }
    assert process.status.status_code is StatusCode.UNSET
    assert seen["async"].span_id == process.context.span_id

    threaded = by_trace[other.get_span_context().trace_id]
    assert parent_id(threaded) == other.get_span_context().span_id
    assert seen["thread"].span_id == threaded.context.span_id


async def test_a_retried_job_gives_one_process_span_per_attempt_in_the_same_trace(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    worker = worker_of(broker_address, queue)

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> Any:
        if ctx.attempt == 1:
            raise ConnectionError("upstream refused")
        return "done"

    async with AsyncClient(broker_address) as client, worker:
        with tracer.start_as_current_span("order") as producer:
            added = await client.add(queue, "flaky", attempts=2)
        assert await client.wait(queue, added.job_id, timeout=10) == "done"

    processes = sorted(
        named(spans, f"process {queue}"),
        key=lambda s: s.attributes["jobbroker.job.attempt"] if s.attributes else 0,
    )
    assert [s.attributes["jobbroker.job.attempt"] for s in processes if s.attributes] == [1, 2]
    first, second = processes
    context = producer.get_span_context()
    assert {first.context.trace_id, second.context.trace_id} == {context.trace_id}
    assert parent_id(first) == parent_id(second) == context.span_id
    assert first.context.span_id != second.context.span_id

    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ConnectionError: upstream refused"
    assert first.attributes is not None
    assert first.attributes["jobbroker.job.outcome"] == "fail"
    assert first.attributes["error.type"] == "ConnectionError"
    (event,) = first.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"
    assert "upstream refused" in str(event.attributes["exception.stacktrace"])
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes is not None
    assert second.attributes["jobbroker.job.outcome"] == "complete"


async def test_a_job_added_without_an_active_span_runs_in_a_trace_of_its_own(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    worker = worker_of(broker_address, queue)

    @worker.handler("plain")
    async def plain(ctx: JobContext) -> Any:
        return 7

    async with AsyncClient(broker_address) as client, worker:
        added = await client.add(queue, "plain")
        assert await client.wait(queue, added.job_id, timeout=10) == 7
    async with grpc.aio.insecure_channel(broker_address) as channel:
        reply = await job_service_pb2_grpc.JobServiceStub(channel).GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=added.job_id)
        )
    assert not reply.job.options.HasField("trace_context")
    process = one(named(spans, f"process {queue}"))
    assert process.parent is None
    add = one(named(spans, "jobbroker.v1.JobService/Add"))
    assert add.parent is None
    assert add.context.trace_id != process.context.trace_id


async def test_the_sync_client_carries_the_calling_threads_span(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    def produce() -> tuple[SpanContext, str]:
        with Client(broker_address) as client, tracer.start_as_current_span("cron") as span:
            return span.get_span_context(), client.add(queue, "tick").job_id

    context, job_id = await asyncio.to_thread(produce)
    worker = worker_of(broker_address, queue)

    @worker.handler("tick")
    async def tick(ctx: JobContext) -> Any:
        return None

    async with AsyncClient(broker_address) as client, worker:
        await client.wait(queue, job_id, timeout=10)
    process = one(named(spans, f"process {queue}"))
    assert process.context.trace_id == context.trace_id
    assert parent_id(process) == context.span_id


async def test_a_bulk_add_in_one_span_is_its_child_and_each_job_keeps_its_context(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    worker = worker_of(broker_address, queue)

    @worker.handler()
    async def anything(ctx: JobContext) -> Any:
        return None

    async with AsyncClient(broker_address) as client:
        with tracer.start_as_current_span("import") as producer:
            added = await client.add_bulk(queue, [("a", 1), ("b", 2)])
            # Concurrent adds that the client gathers into AddBulk(each) calls.
            more = await asyncio.gather(*(client.add(queue, "c", i) for i in range(20)))
        async with worker:
            for job in [*added, *more]:
                await client.wait(queue, job.job_id, timeout=10)

    context = producer.get_span_context()
    bulk = [
        s
        for s in named(spans, "jobbroker.v1.JobService/AddBulk")
        if s.attributes and s.attributes.get("messaging.destination.name") == queue
    ]
    assert bulk
    assert {parent_id(s) for s in bulk} == {context.span_id}
    processes = named(spans, f"process {queue}")
    assert len(processes) == 22
    assert {s.context.trace_id for s in processes} == {context.trace_id}
    assert {parent_id(s) for s in processes} == {context.span_id}


async def test_an_add_bulk_of_jobs_from_several_traces_links_to_them(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    jobs = [
        job_service_pb2.BulkJob(
            name="a",
            options=job_pb2.JobOptions(trace_context=job_pb2.TraceContext(traceparent=parent)),
        )
        for parent in (TRACEPARENT, other, TRACEPARENT)
    ]
    async with grpc.aio.insecure_channel(broker_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await stub.AddBulk(job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs))
    bulk = one(named(spans, "jobbroker.v1.JobService/AddBulk"))
    assert bulk.parent is None
    assert sorted(f"{link.context.trace_id:032x}" for link in bulk.links) == [
        "0af7651916cd43dd8448eb211c80319c",
        "11111111111111111111111111111111",
    ]


async def test_traceparent_metadata_stands_in_for_the_field_on_add(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    state = "vendor=opaque"
    async with grpc.aio.insecure_channel(broker_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        metadata = (("traceparent", TRACEPARENT), ("tracestate", state))
        reply = await stub.Add(
            job_service_pb2.AddRequest(queue=queue, name="from-go"), metadata=metadata
        )
        ignored = await stub.Add(
            job_service_pb2.AddRequest(queue=queue, name="bad-header"),
            metadata=(("traceparent", "00-not-a-trace"),),
        )
        job = await stub.GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=reply.job_id)
        )
        bad = await stub.GetStatus(
            job_service_pb2.GetStatusRequest(queue=queue, job_id=ignored.job_id)
        )
    assert job.job.options.trace_context == job_pb2.TraceContext(
        traceparent=TRACEPARENT, tracestate=state
    )
    assert not bad.job.options.HasField("trace_context")  # an invalid header is ignored
    add = [s for s in named(spans, "jobbroker.v1.JobService/Add") if s.parent is not None]
    assert [f"{s.context.trace_id:032x}" for s in add] == ["0af7651916cd43dd8448eb211c80319c"]


@pytest.mark.parametrize(
    ("carried", "field"),
    [
        (job_pb2.TraceContext(traceparent="00-xyz"), "options.trace_context.traceparent"),
        (
            job_pb2.TraceContext(traceparent=TRACEPARENT.upper().replace("0A", "0a")),
            "options.trace_context.traceparent",
        ),
        (
            job_pb2.TraceContext(traceparent="00-" + "0" * 32 + "-b7ad6b7169203331-01"),
            "options.trace_context.traceparent",
        ),
        (job_pb2.TraceContext(tracestate="a=b"), "options.trace_context.traceparent"),
        (
            job_pb2.TraceContext(traceparent=TRACEPARENT, tracestate="a=" + "b" * 600),
            "options.trace_context.tracestate",
        ),
        (
            job_pb2.TraceContext(traceparent=TRACEPARENT, tracestate="a=b\nc=d"),
            "options.trace_context.tracestate",
        ),
    ],
)
async def test_an_invalid_trace_context_field_is_refused_naming_the_field(
    broker_address: str, queue: str, carried: job_pb2.TraceContext, field: str
) -> None:
    async with grpc.aio.insecure_channel(broker_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Add(
                job_service_pb2.AddRequest(
                    queue=queue, name="x", options=job_pb2.JobOptions(trace_context=carried)
                )
            )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")


async def test_a_job_added_by_a_handler_is_a_child_of_its_process_span(
    spans: InMemorySpanExporter, broker_address: str, queue: str
) -> None:
    worker = worker_of(broker_address, queue)

    async with AsyncClient(broker_address) as client:

        @worker.handler("order")
        async def order(ctx: JobContext) -> Any:
            return (await client.add(queue, "invoice")).job_id

        @worker.handler("invoice")
        async def invoice(ctx: JobContext) -> Any:
            return None

        async with worker:
            with tracer.start_as_current_span("checkout") as producer:
                added = await client.add(queue, "order")
            follow_up = await client.wait(queue, added.job_id, timeout=10)
            await client.wait(queue, follow_up, timeout=10)

    found = named(spans, f"process {queue}")
    processes = {s.attributes["jobbroker.job.name"]: s for s in found if s.attributes}
    assert processes["order"].context.trace_id == producer.get_span_context().trace_id
    assert processes["invoice"].context.trace_id == producer.get_span_context().trace_id
    assert parent_id(processes["invoice"]) == processes["order"].context.span_id


async def test_broker_spans_carry_the_status_and_mark_server_faults_as_errors(
    spans: InMemorySpanExporter, broker_address: str, queue: str, private_redis: Any
) -> None:
    async with grpc.aio.insecure_channel(broker_address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.GetStatusRequest(queue=queue, job_id="nope")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetStatus(request)
        private_redis.stop()
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stub.GetStatus(request, timeout=10)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert down.value.code() is grpc.StatusCode.UNAVAILABLE
    first, second = await finished(spans, "jobbroker.v1.JobService/GetStatus", 2)
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["rpc.response.status_code"] == "NOT_FOUND"
    assert first.status.status_code is StatusCode.UNSET  # the caller's mistake
    assert second.attributes["rpc.response.status_code"] == "UNAVAILABLE"
    assert second.status.status_code is StatusCode.ERROR
