"""Request bytes that are not a valid protobuf message, sent to any method, by anyone: answered
INVALID_ARGUMENT with an ErrorInfo naming the method, and never a traceback in the log (at most
one warning line a minute, however many arrive)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobbroker.v1 import worker_service_pb2

from .conftest import Secured, start_secured

GARBAGE = b"\xff\xff\xff"
"""A field tag with no end: no message type parses it."""
BAD_UTF8 = b"\x0a\x02\xff\xfe"
"""Field 1 (a string in every request here) holding bytes that are not UTF-8."""

UNARY = ["/jobbroker.v1.JobService/Add", "/grpc.health.v1.Health/Check"]
SERVER_STREAM = ["/jobbroker.v1.JobService/StreamProgress", "/grpc.health.v1.Health/Watch"]
BIDI = [
    "/jobbroker.v1.WorkerService/ReportProgress",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]


@pytest.fixture
async def gated(redis_url: str, tmp_path: Path) -> AsyncIterator[Secured]:
    running = await start_secured(redis_url, tmp_path / "tokens.toml")
    yield running
    await running.broker.stop(0.5)


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


async def call_raw(channel: grpc.aio.Channel, method: str, body: bytes, token: str | None) -> None:
    """Send ``body`` as the request of ``method``, bytes as they are; raises its error."""
    metadata = bearer(token)
    if method in UNARY:
        await channel.unary_unary(method)(body, metadata=metadata, timeout=10)
    elif method in SERVER_STREAM:
        async for _ in channel.unary_stream(method)(body, metadata=metadata, timeout=10):
            pass
    else:
        async for _ in channel.stream_stream(method)(iter([body]), metadata=metadata, timeout=10):
            pass


async def read_to_the_end(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    pytest.fail(f"{error.code()} {error.details()!r} carries no ErrorInfo")


def assert_refused(error: grpc.aio.AioRpcError, method: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "not a valid request message" in (error.details() or "")
    info = error_info(error)
    assert info.reason == "INVALID_FIELD"
    assert dict(info.metadata) == {"field": "request", "method": method.lstrip("/")}


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not loud, [r.getMessage() for r in loud]


@pytest.mark.parametrize("method", UNARY + SERVER_STREAM + BIDI)
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "no-token"])
async def test_unparsable_bytes_get_invalid_argument_and_no_traceback(
    gated: Secured,
    queue: str,
    method: str,
    authenticated: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = gated.token(f"admin:{queue}")[0] if authenticated else None
    async with grpc.aio.insecure_channel(gated.address) as channel:
        for body in (GARBAGE, BAD_UTF8):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call_raw(channel, method, body, token)
            if method in BIDI and not authenticated:
                # A bidirectional stream's token is checked when it opens, before any message
                # is read: the garbage is never looked at.
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            else:
                assert_refused(caught.value, method)
    assert_no_traceback(caplog)


async def test_an_unparsable_message_later_on_the_worker_stream_ends_it_the_same_way(
    gated: Secured, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = gated.token(f"worker:{queue}")
    method = "/jobbroker.v1.WorkerService/ReportProgress"
    first = worker_service_pb2.ReportProgressRequest(worker_id="w", queues=[queue], seq=1)
    async with grpc.aio.insecure_channel(gated.address) as channel:
        call = channel.stream_stream(method)(metadata=bearer(token), timeout=10)
        await call.write(first.SerializeToString())
        ack = worker_service_pb2.ReportProgressResponse.FromString(await call.read())
        assert ack.seq == 1
        await call.write(GARBAGE)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_to_the_end(call)
    assert_refused(caught.value, method)
    assert_no_traceback(caplog)


async def test_a_flood_of_unparsable_requests_logs_one_line(
    gated: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(gated.address) as channel:
        for _ in range(200):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call_raw(channel, "/jobbroker.v1.JobService/Add", GARBAGE, None)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_no_traceback(caplog)
    lines = [r for r in caplog.records if "not valid protobuf messages" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0].getMessage()


async def test_valid_health_checks_still_pass_without_a_token(gated: Secured) -> None:
    async with grpc.aio.insecure_channel(gated.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
