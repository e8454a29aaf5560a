"""With authentication on, a lease token the broker never issued is still answered as an invalid
token (INVALID_ARGUMENT naming it), not as a lease "taken with another token"."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from jobbroker.v1 import worker_service_pb2 as W
from jobbroker.v1 import worker_service_pb2_grpc

from .conftest import Secured


def field_of(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.metadata.get("field", "")
    return ""


async def test_tokens_never_issued_are_invalid_for_the_taker_too(
    secured: Secured, queue: str
) -> None:
    producer, _ = secured.token(f"producer:{queue}")
    worker, worker_id = secured.token(f"worker:{queue}", name="worker")
    await secured.client(producer).add(queue, "job", {})
    auth = [("authorization", f"Bearer {worker}")]
    async with grpc.aio.insecure_channel(secured.address) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        [job] = (
            await stub.Lease(
                W.LeaseRequest(queue=queue, worker_id="w1", wait_ms=2_000), metadata=auth
            )
        ).jobs
        assert job.token.startswith(f"{job.fence}-{worker_id}.")
        for token in ("garbage", f"{job.fence + 1}-{worker_id}.0000000000000000"):
            request = W.CompleteRequest(queue=queue, job_id=job.job_id, token=token)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Complete(request, metadata=auth)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
            assert field_of(caught.value) == "token"
        done = await stub.Complete(
            W.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token), metadata=auth
        )
        assert done.state != 0
