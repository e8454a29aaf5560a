"""Auth refusals, served by grpc_testing behind the broker's own gate (its interceptor's
``wrap_handler`` around each method, a token file read the way the broker reloads it):
UNAUTHENTICATED without a valid token, PERMISSION_DENIED outside the token's grants."""

from __future__ import annotations

import grpc
import jobbroker
import pytest
from jobbroker.errors import from_rpc_error
from jobbroker.v1 import job_pb2
from jobbroker.v1 import job_service_pb2 as js
from jobbroker.v1 import worker_service_pb2 as ws

from .calls import bearer, refused
from .conftest import Secured

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def add(queue: str) -> js.AddRequest:
    return js.AddRequest(queue=queue, name="job", data=job_pb2.Payload(body=b"{}"))


def waiting(secured: Secured, queue: str) -> int:
    admin = secured.token("admin:*", name="admin")
    request = js.ListJobsRequest(queue=queue, state=job_pb2.JOB_STATE_WAITING)
    return secured.call("JobService.ListJobs", request, admin).response.total  # type: ignore[no-any-return]


def test_a_call_without_a_token_is_unauthenticated(secured: Secured, queue: str) -> None:
    ended = secured.call("JobService.Add", add(queue), None)
    assert refused(ended, UNAUTHENTICATED, "TOKEN_MISSING") == {}
    assert ended.details() == (
        "missing authorization metadata: send 'authorization: Bearer <token>'"
    )
    assert isinstance(from_rpc_error(ended), jobbroker.Unauthenticated)
    assert waiting(secured, queue) == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "TOKEN_MALFORMED"),
        ("Bearer not-a-token", "TOKEN_MALFORMED"),
        ("Bearer jbt_0123abcd_" + "A" * 43, "TOKEN_UNKNOWN"),
    ],
)
def test_a_malformed_or_unknown_token_is_unauthenticated(
    secured: Secured, queue: str, header: str, reason: str
) -> None:
    ended = secured.caller.call("JobService.Add", add(queue), [("authorization", header)])
    refused(ended, UNAUTHENTICATED, reason)


def test_a_token_with_a_wrong_secret_is_unknown(secured: Secured, queue: str) -> None:
    token = secured.token(f"producer:{queue}")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused(secured.call("JobService.Add", add(queue), forged), UNAUTHENTICATED, "TOKEN_UNKNOWN")


def test_a_revoked_token_is_unknown_from_the_reload_on(secured: Secured, queue: str) -> None:
    token = secured.token(f"producer:{queue}")
    assert secured.call("JobService.Add", add(queue), token).response.job_id
    secured.revoke(token)
    refused(secured.call("JobService.Add", add(queue), token), UNAUTHENTICATED, "TOKEN_UNKNOWN")


def test_a_read_token_may_not_add(secured: Secured, queue: str) -> None:
    token = secured.token(f"read:{queue}")
    ended = secured.call("JobService.Add", add(queue), token)
    assert refused(ended, DENIED, "PERMISSION_DENIED") == {"queue": queue, "permission": "produce"}
    assert ended.details() == f"token 'test' may not produce on queue '{queue}' (queue)"
    assert isinstance(from_rpc_error(ended), jobbroker.PermissionDenied)
    assert waiting(secured, queue) == 0


def test_a_producer_may_add_only_on_its_queues(secured: Secured, queue: str) -> None:
    token = secured.token(f"producer:{queue}")
    assert secured.call("JobService.Add", add(queue), token).response.job_id
    ended = secured.call("JobService.Add", add(f"other-{queue}"), token)
    metadata = refused(ended, DENIED, "PERMISSION_DENIED")
    assert metadata == {"queue": f"other-{queue}", "permission": "produce"}


def test_a_producer_may_not_lease_nor_do_what_admins_do(secured: Secured, queue: str) -> None:
    token = secured.token(f"producer:{queue}")
    for method, request, permission in [
        ("WorkerService.Lease", ws.LeaseRequest(queue=queue, worker_id="w1"), "work"),
        ("JobService.Retry", js.RetryRequest(queue=queue, job_id="1"), "admin"),
    ]:
        ended = secured.call(method, request, token)
        metadata = refused(ended, DENIED, "PERMISSION_DENIED")
        assert metadata == {"queue": queue, "permission": permission}


def test_a_stream_is_refused_before_it_opens(secured: Secured, queue: str) -> None:
    request = js.StreamProgressRequest(queue=queue, job_id="1")
    refused(
        secured.call("JobService.StreamProgress", request, None), UNAUTHENTICATED, "TOKEN_MISSING"
    )
    worker = secured.token(f"worker:{queue}")
    ended = secured.call("JobService.StreamProgress", request, worker)
    assert refused(ended, DENIED, "PERMISSION_DENIED") == {"queue": queue, "permission": "read"}


def test_the_worker_stream_needs_a_token_and_the_work_permission(
    secured: Secured, queue: str
) -> None:
    first = ws.ReportProgressRequest(worker_id="w1", seq=1, queues=[queue])
    ended = secured.caller.bidi("WorkerService.ReportProgress", [first])
    refused(ended, UNAUTHENTICATED, "TOKEN_MISSING")
    reader = secured.token(f"read:{queue}")
    ended = secured.caller.bidi("WorkerService.ReportProgress", [first], bearer(reader))
    metadata = refused(ended, DENIED, "PERMISSION_DENIED")
    assert metadata == {"queue": queue, "permission": "work"}


def test_only_the_token_that_took_a_lease_may_finish_it(secured: Secured, queue: str) -> None:
    producer = secured.token(f"producer:{queue}", name="producer")
    first = secured.token(f"worker:{queue}", name="first")
    second = secured.token(f"worker:{queue}", name="second")
    secured.call("JobService.Add", add(queue), producer).response  # noqa: B018
    lease = ws.LeaseRequest(queue=queue, worker_id="w1")
    [job] = secured.call("WorkerService.Lease", lease, first).response.jobs
    complete = ws.CompleteRequest(queue=queue, job_id=job.job_id, token=job.token)
    ended = secured.call("WorkerService.Complete", complete, second)
    assert refused(ended, DENIED, "PERMISSION_DENIED") == {"field": "token"}
    assert "another token" in ended.details()
    done = secured.call("WorkerService.Complete", complete, first).response
    assert done.state == job_pb2.JOB_STATE_COMPLETED


def test_revoking_a_token_ends_its_open_stream(secured: Secured, queue: str) -> None:
    producer = secured.token(f"producer:{queue}")
    job_id = secured.call("JobService.Add", add(queue), producer).response.job_id
    reader = secured.token(f"read:{queue}", name="reader")
    request = js.StreamProgressRequest(queue=queue, job_id=job_id)
    stream = secured.caller.open_stream("JobService.StreamProgress", request, bearer(reader))
    assert stream.take_response().snapshot.id == job_id  # open: the snapshot came
    secured.revoke(reader)
    ended = secured.caller.rest(stream)
    assert refused(ended, UNAUTHENTICATED, "TOKEN_REVOKED") == {}
    assert ended.details() == "the token was revoked"
