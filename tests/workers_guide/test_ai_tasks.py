"""ai-tasks end to end: Add over gRPC -> ``jobbroker-worker`` (a real process) -> the unmodified
``openai`` library -> the OpenAI-compatible stand-in server (real SSE and embeddings wire
format) -> deltas over StreamProgress -> the result. Failures: a cancel mid-stream closes the
HTTP connection; 429 (Retry-After), 500 and a dropped stream are retried; 400 and an unknown
model fail for good at once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobbroker import AsyncClient, Event, InvalidArgument, JobFailed
from jobbroker.embeddings import decode_embeddings
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from jobbroker_worker.standin import Fault, StandIn, embed

from .conftest import Running
from .support import ServiceProcess, until

QUEUE = "ai-tasks"
DATA = {
    "userId": "user-1",
    "conversationId": "conv-1",
    "message": "How do queues work?",
    "model": "gpt-test",
    "maxTokens": 40,
    "temperature": 0.2,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
}


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with StandIn(delay=0.01) as server:
        yield server


@pytest.fixture
async def service(
    private_broker: Running, private_client: AsyncClient, standin: StandIn, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    process = ServiceProcess(
        private_broker.address,
        tmp_path / "worker.log",
        "--queues",
        QUEUE,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=standin.base_url,
        JOBBROKER_EMBEDDING_BATCH="2",
        JOBBROKER_AI_RETRY_BUDGET="20",
    )
    try:
        await process.ready(private_client, (QUEUE,))
        yield process
    finally:
        assert process.stop() == 0, process.output()


async def _add(address: str, data: Any, name: str = "generate-completion", **opts: Any) -> str:
    """Add over plain gRPC, as any language would."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await job_service_pb2_grpc.JobServiceStub(channel).Add(
            job_service_pb2.AddRequest(
                queue=QUEUE,
                name=name,
                data=job_pb2.Payload(body=json.dumps(data).encode()),
                options=job_pb2.JobOptions(**opts),
            )
        )
    return reply.job_id


async def _chat_requests(standin: StandIn) -> list[Any]:
    return [seen for seen in standin.requests if seen.path.endswith("/chat/completions")]


@pytest.mark.usefixtures("service")
async def test_a_completion_streams_its_deltas_in_order(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    job_id = await _add(private_broker.address, DATA)
    values: list[dict[str, Any]] = []
    async for item in private_client.stream_progress(QUEUE, job_id, timeout=60):
        if isinstance(item, Event) and item.progress is not None and item.progress.value:
            values.append(item.progress.value)
    result = (await private_client.get_status(QUEUE, job_id)).result

    assert [v["seq"] for v in values] == list(range(1, len(values) + 1))
    assert "".join(v["delta"] for v in values) == result["content"]
    assert [v["tokens"] for v in values] == sorted(v["tokens"] for v in values)
    assert len(values) > 1, "the answer arrived in one piece, not streamed"
    assert result["conversationId"] == "conv-1"
    assert result["tokens"] == result["usage"]["completionTokens"] == values[-1]["tokens"]
    assert result["model"] == "jobbroker-standin"
    assert result["finishReason"] in ("stop", "length")
    assert result["standIn"] is True

    (request,) = await _chat_requests(standin)
    assert request.body["stream"] is True
    assert request.body["model"] == "gpt-test"
    assert request.body["max_tokens"] == 40
    assert request.headers["authorization"] == "Bearer sk-test"
    assert [m["role"] for m in request.body["messages"]] == ["system", "user", "assistant", "user"]
    assert request.body["messages"][-1]["content"] == "How do queues work?"


@pytest.mark.usefixtures("service")
async def test_cancel_mid_stream_closes_the_connection(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    standin.faults.append(Fault(delay=0.3))  # a slow stream: plenty of time to cancel
    job_id = await _add(private_broker.address, {**DATA, "maxTokens": 200})

    async def first_delta() -> bool:
        job = await private_client.get_status(QUEUE, job_id)
        return bool(job.progress and job.progress.value)

    await until(first_delta, "the first delta")
    cancelled_at = time.monotonic()
    await private_client.cancel(QUEUE, job_id, "user went away")
    await until(_event_set(standin), "the stand-in to see the connection close", within=10)
    assert time.monotonic() - cancelled_at < 5
    assert len(standin.disconnects) == 1
    job = await private_client.get_status(QUEUE, job_id)
    assert job.state == "cancelled"
    assert len(await _chat_requests(standin)) == 1  # not retried


def _event_set(standin: StandIn) -> Any:
    async def check() -> bool:
        return standin.disconnected.is_set()

    return check


@pytest.mark.usefixtures("service")
async def test_429_is_retried_after_its_retry_after(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    standin.faults.append(Fault(status=429, retry_after=1.0, code="rate_limit_exceeded"))
    job_id = await _add(private_broker.address, DATA)
    result = await private_client.wait(QUEUE, job_id, timeout=60)
    first, second = await _chat_requests(standin)
    assert second.at - first.at >= 1.0
    assert result["content"]
    job = await private_client.get_status(QUEUE, job_id)
    assert job.attempts_made == 1  # retried inside the attempt, not by the broker
    lines = list((await private_client.logs(QUEUE, job_id)).lines)
    assert any("API 429" in line and "trying again" in line for line in lines), lines


@pytest.mark.usefixtures("service")
async def test_500_and_a_dropped_stream_are_retried(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    standin.faults += [Fault(status=500), Fault(drop_after=4)]
    job_id = await _add(private_broker.address, DATA)
    values: list[dict[str, Any]] = []
    async for item in private_client.stream_progress(QUEUE, job_id, timeout=60):
        if isinstance(item, Event) and item.progress is not None and item.progress.value:
            values.append(item.progress.value)
    result = (await private_client.get_status(QUEUE, job_id)).result
    assert len(await _chat_requests(standin)) == 3
    # The dropped try had reported some text: the retry says it starts again.
    restart = next(i for i, v in enumerate(values) if v.get("restart"))
    assert "".join(v["delta"] for v in values[restart:]) == result["content"]


@pytest.mark.usefixtures("service")
@pytest.mark.parametrize(
    ("fault", "known", "expected"),
    [
        (Fault(status=400, message="max_tokens is too large"), None, "API 400"),
        (Fault(status=401, code="invalid_api_key"), None, "API 401"),
        (None, {"other-model"}, "model_not_found"),
        (Fault(finish_reason="content_filter"), None, "content filter"),
    ],
)
async def test_errors_that_cannot_succeed_fail_at_once(
    private_broker: Running,
    private_client: AsyncClient,
    standin: StandIn,
    fault: Fault | None,
    known: set[str] | None,
    expected: str,
) -> None:
    if fault is not None:
        standin.faults.append(fault)
    standin.known_models = known
    job_id = await _add(private_broker.address, DATA, attempts=3)
    with pytest.raises(JobFailed) as failed:
        await private_client.wait(QUEUE, job_id, timeout=60)
    job = failed.value.job
    assert job.attempts_made == 1
    assert job.failure is not None
    assert expected in job.failure.message
    assert len(await _chat_requests(standin)) == 1


@pytest.mark.usefixtures("service")
async def test_embeddings_in_chunks_stored_as_base64(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    texts = ["one", "two", "three", "four", "five"]
    data = {"input": texts, "model": "text-embedding-test", "dimensions": 64}
    job_id = await _add(private_broker.address, data, name="generate-embeddings")
    result = await private_client.wait(QUEUE, job_id, timeout=60)
    requests = [s for s in standin.requests if s.path.endswith("/embeddings")]
    assert [r.body["input"] for r in requests] == [["one", "two"], ["three", "four"], ["five"]]
    assert {r.body["encoding_format"] for r in requests} == {"base64"}
    assert result["encoding"] == "base64-float32-le"
    assert (result["count"], result["dimensions"]) == (5, 64)
    vectors = decode_embeddings(result)
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(embed(text, 64), abs=1e-6)
    job = await private_client.get_status(QUEUE, job_id)
    assert job.progress is not None
    assert job.progress.value == {"chunk": 3, "of": 3, "embedded": 5}


@pytest.mark.usefixtures("service")
async def test_the_worker_registered_schemas_refuse_bad_adds(
    private_client: AsyncClient,
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await private_client.add(QUEUE, "generate-completion", {**DATA, "temperature": 3})
    assert refused.value.field == "data.temperature"
    with pytest.raises(InvalidArgument) as empty:
        await private_client.add(QUEUE, "generate-embeddings", {"input": []})
    assert empty.value.field.startswith("data.input")


@pytest.mark.usefixtures("service")
async def test_a_timeout_mid_stream_closes_the_connection(
    private_broker: Running, private_client: AsyncClient, standin: StandIn
) -> None:
    standin.faults.append(Fault(delay=0.3))
    job_id = await _add(private_broker.address, {**DATA, "maxTokens": 200}, timeout_ms=1500)
    with pytest.raises(JobFailed) as failed:
        await private_client.wait(QUEUE, job_id, timeout=60)
    await until(_event_set(standin), "the stand-in to see the connection close", within=10)
    assert failed.value.job.failure is not None
    assert len(await _chat_requests(standin)) == 1
