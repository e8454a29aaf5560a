"""API tokens: every way a call can be refused, revocation of open streams, and leases bound
to the token that took them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobbroker import PermissionDenied, Unauthenticated
from jobbroker.v1 import worker_service_pb2 as W
from jobbroker.v1 import worker_service_pb2_grpc

from .conftest import Secured


async def test_a_call_without_a_token_is_unauthenticated(secured: Secured, queue: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await secured.client(None).add(queue, "job", {})
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason == "TOKEN_MISSING"
    assert "authorization" in caught.value.message


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "TOKEN_MALFORMED"),
        ("Bearer not-a-token", "TOKEN_MALFORMED"),
        ("Bearer jbt_0123abcd_" + "A" * 43, "TOKEN_UNKNOWN"),
    ],
)
async def test_a_malformed_or_unknown_token_is_unauthenticated(
    secured: Secured, queue: str, header: str, reason: str
) -> None:
    client = secured.client(None, metadata=[("authorization", header)])
    with pytest.raises(Unauthenticated) as caught:
        await client.add(queue, "job", {})
    assert caught.value.reason == reason


async def test_a_token_with_a_wrong_secret_is_unknown(secured: Secured, queue: str) -> None:
    token, _ = secured.token(f"producer:{queue}")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated) as caught:
        await secured.client(forged).add(queue, "job", {})
    assert caught.value.reason == "TOKEN_UNKNOWN"


async def test_a_producer_adds_reads_and_cancels_on_its_queues_only(
    secured: Secured, queue: str
) -> None:
    token, _ = secured.token(f"producer:{queue}*")
    client = secured.client(token)
    added = await client.add(queue, "job", {"n": 1})
    assert (await client.get_status(queue, added.job_id)).id == added.job_id
    await client.cancel(queue, added.job_id)
    with pytest.raises(PermissionDenied) as caught:
        await client.add("other-" + queue, "job", {})
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "other-" + queue in caught.value.message
    with pytest.raises(PermissionDenied):  # admin operations are not a producer's
        await client.pause(queue)


async def test_a_read_only_token_cannot_add(secured: Secured, queue: str) -> None:
    token, _ = secured.token(f"read:{queue}")
    with pytest.raises(PermissionDenied) as caught:
        await secured.client(token).add(queue, "job", {})
    assert "may not produce" in caught.value.message


async def test_a_worker_token_cannot_add_and_a_producer_cannot_lease(
    secured: Secured, queue: str
) -> None:
    worker_token, _ = secured.token(f"worker:{queue}")
    producer_token, _ = secured.token(f"producer:{queue}")
    with pytest.raises(PermissionDenied):
        await secured.client(worker_token).add(queue, "job", {})
    channel = grpc.aio.insecure_channel(secured.address)
    try:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Lease(
                W.LeaseRequest(queue=queue, worker_id="w1"),
                metadata=[("authorization", f"Bearer {producer_token}")],
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close()


async def test_a_worker_token_leases_only_from_its_queues(secured: Secured, queue: str) -> None:
    other = f"{queue}-other"
    producer, _ = secured.token(f"producer:{other}")
    worker, _ = secured.token(f"worker:{queue}")
    added = await secured.client(producer).add(other, "job", {})
    auth = [("authorization", f"Bearer {worker}")]
    channel = grpc.aio.insecure_channel(secured.address)
    try:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Lease(
                W.LeaseRequest(queue=queue, more_queues=[other], worker_id="w1"), metadata=auth
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "more_queues[0]" in (caught.value.details() or "")
        for ask in (W.StreamLease(queue=other), W.StreamLease(queue=queue, more_queues=[other])):
            call = stub.ReportProgress(metadata=auth)
            await call.write(
                W.ReportProgressRequest(worker_id="w1", seq=1, queues=[queue], lease=ask)
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "lease." in (caught.value.details() or "")
        job = await secured.client(producer).get_status(other, added.job_id)
        assert job.state.name == "WAITING"
    finally:
        await channel.close()


async def test_list_queues_shows_only_the_queues_the_token_may_read(
    secured: Secured, queue: str
) -> None:
    admin, _ = secured.token("admin:*")
    await secured.client(admin).add(queue, "job", {})
    await secured.client(admin).add(queue + "-hidden", "job", {})
    mine, _ = secured.token(f"read:{queue}")
    names = [q.name for q in await secured.client(mine).queues()]
    assert queue in names
    assert queue + "-hidden" not in names
    await secured.client(admin).obliterate(queue + "-hidden", force=True)


async def test_health_needs_no_token(secured: Secured) -> None:
    channel = grpc.aio.insecure_channel(secured.address)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()


async def lease(address: str, token: str, queue: str, worker_id: str) -> W.LeasedJob:
    channel = grpc.aio.insecure_channel(address)
    try:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        reply = await stub.Lease(
            W.LeaseRequest(queue=queue, worker_id=worker_id, wait_ms=2_000),
            metadata=[("authorization", f"Bearer {token}")],
        )
        [job] = reply.jobs
        return job
    finally:
        await channel.close()


async def test_a_lease_can_only_be_completed_by_the_token_that_took_it(
    secured: Secured, queue: str
) -> None:
    producer, _ = secured.token(f"producer:{queue}")
    first, _ = secured.token(f"worker:{queue}", name="first")
    second, _ = secured.token(f"worker:{queue}", name="second")
    added = await secured.client(producer).add(queue, "job", {})
    job = await lease(secured.address, first, queue, "w1")
    channel = grpc.aio.insecure_channel(secured.address)
    stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
    try:
        request = W.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Complete(request, metadata=[("authorization", f"Bearer {second}")])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "another token" in (caught.value.details() or "")
        # Nor on the worker stream: the item is refused, the stream goes on.
        call = stub.ReportProgress(metadata=[("authorization", f"Bearer {second}")])
        await call.write(
            W.ReportProgressRequest(
                worker_id="w2",
                seq=1,
                queues=[queue],
                outcomes=[W.Outcome(complete=request)],
            )
        )
        reply = await call.read()
        assert reply.outcomes[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        await call.done_writing()
        # The taker completes it.
        done = await stub.Complete(request, metadata=[("authorization", f"Bearer {first}")])
        assert done.state != 0
    finally:
        await channel.close()
    assert (
        await secured.client(producer).get_status(queue, added.job_id)
    ).state.name == "COMPLETED"


async def test_revoking_a_token_refuses_it_and_ends_its_open_streams(
    secured: Secured, queue: str
) -> None:
    admin, _ = secured.token(f"producer:{queue}")
    reader, reader_id = secured.token(f"read:{queue}", name="reader")
    added = await secured.client(admin).add(queue, "job", {})
    client = secured.client(reader)
    assert (await client.get_status(queue, added.job_id)).id == added.job_id

    async def follow() -> list[object]:
        return [item async for item in client.stream_progress(queue, added.job_id)]

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # the stream is open and waiting
    assert not following.done()
    secured.revoke(reader_id)
    # The file watch notices within a second; the stream ends on its own.
    with pytest.raises(Unauthenticated) as caught:
        await asyncio.wait_for(following, 5)
    assert caught.value.reason in ("TOKEN_REVOKED", "TOKEN_UNKNOWN")
    with pytest.raises(Unauthenticated):
        await client.get_status(queue, added.job_id)


async def read_to_end(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


async def test_revoking_a_worker_token_ends_its_worker_stream(secured: Secured, queue: str) -> None:
    worker, worker_id = secured.token(f"worker:{queue}")
    channel = grpc.aio.insecure_channel(secured.address)
    try:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        call = stub.ReportProgress(metadata=[("authorization", f"Bearer {worker}")])
        await call.write(W.ReportProgressRequest(worker_id="w1", seq=1, queues=[queue]))
        assert (await call.read()).seq == 1
        secured.revoke(worker_id)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(read_to_end(call), 5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (caught.value.details() or "")
    finally:
        await channel.close()


async def test_the_worker_sdk_runs_jobs_with_a_token(secured: Secured, queue: str) -> None:
    from jobbroker import JobContext, Worker

    producer, _ = secured.token(f"producer:{queue}")
    worker_token, _ = secured.token(f"worker:{queue}")
    worker = Worker(queue, address=secured.address, token=worker_token, wait=1)

    @worker.handler("double")
    async def double(job: JobContext) -> int:
        return int(job.data["n"]) * 2

    client = secured.client(producer)
    added = await client.add(queue, "double", {"n": 21})
    async with worker:
        done = await client.wait(queue, added.job_id, timeout=10)
    assert done == 42
