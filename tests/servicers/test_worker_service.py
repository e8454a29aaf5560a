"""WorkerService's error mapping, served by grpc_testing: bad leases, stale and forged lease
tokens, finished jobs, and the worker stream's refusal of a bad first message."""

from __future__ import annotations

from typing import Any

import grpc
import jobbroker
import pytest
from jobbroker.errors import from_rpc_error
from jobbroker.v1 import job_pb2
from jobbroker.v1 import job_service_pb2 as js
from jobbroker.v1 import worker_service_pb2 as ws

from .calls import Caller, refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def add(served: Caller, queue: str) -> str:
    request = js.AddRequest(queue=queue, name="job", data=job_pb2.Payload(body=b"{}"))
    response: js.AddResponse = served.call("JobService.Add", request).response
    return response.job_id


def lease(served: Caller, queue: str) -> ws.LeasedJob:
    request = ws.LeaseRequest(queue=queue, worker_id="worker-1", lease_ms=30_000)
    [job] = served.call("WorkerService.Lease", request).response.jobs
    return job  # type: ignore[no-any-return]


def state(served: Caller, queue: str, job_id: str) -> int:
    request = js.GetStatusRequest(queue=queue, job_id=job_id)
    return served.call("JobService.GetStatus", request).response.job.state  # type: ignore[no-any-return]


# Each finishing call on a lease, built from the leased job (token overridable).
FINISH: dict[str, Any] = {
    "Complete": lambda job, token: ws.CompleteRequest(
        queue=job.queue, job_id=job.job_id, token=token
    ),
    "Fail": lambda job, token: ws.FailRequest(
        queue=job.queue, job_id=job.job_id, token=token, message="boom"
    ),
    "Release": lambda job, token: ws.ReleaseRequest(
        queue=job.queue, job_id=job.job_id, token=token
    ),
}

# (id, LeaseRequest fields over a valid one, the field the refusal names)
BAD_LEASES: list[tuple[str, dict[str, Any], str]] = [
    ("queue-missing", {"queue": ""}, "queue"),
    ("worker-id-missing", {"worker_id": ""}, "worker_id"),
    ("worker-id-space", {"worker_id": "host 1"}, "worker_id"),
    ("max-jobs-over-limit", {"max_jobs": 1_001}, "max_jobs"),
    ("lease-ms-under-limit", {"lease_ms": 999}, "lease_ms"),
    ("lease-ms-over-limit", {"lease_ms": 3_600_001}, "lease_ms"),
    ("wait-ms-over-limit", {"wait_ms": 300_001}, "wait_ms"),
    ("more-queues-braces", {"more_queues": ["a{b}"]}, "more_queues"),
]


@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in BAD_LEASES], ids=[c[0] for c in BAD_LEASES]
)
def test_a_lease_over_its_limits_is_invalid_and_leases_nothing(
    served: Caller, queue: str, fields: dict[str, Any], field: str
) -> None:
    job_id = add(served, queue)
    request = ws.LeaseRequest(**{"queue": queue, "worker_id": "worker-1", **fields})
    ended = served.call("WorkerService.Lease", request)
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": field}
    assert ended.details().startswith(f"{field}: ")
    assert state(served, queue, job_id) == job_pb2.JOB_STATE_WAITING


@pytest.mark.parametrize("method", FINISH)
def test_the_token_of_an_older_lease_is_superseded(served: Caller, queue: str, method: str) -> None:
    add(served, queue)
    old = lease(served, queue)
    served.call("WorkerService.Release", FINISH["Release"](old, old.token)).response  # noqa: B018
    new = lease(served, queue)
    ended = served.call(f"WorkerService.{method}", FINISH[method](old, old.token))
    metadata = refused(ended, PRECONDITION, "LEASE_SUPERSEDED")
    assert metadata == {"queue": queue, "job_id": old.job_id}
    assert ended.details() == (
        f"job {old.job_id} was leased again since this lease was given (job is active)"
    )
    assert isinstance(from_rpc_error(ended), jobbroker.LeaseSuperseded)  # type: ignore[arg-type]
    # The live lease is untouched and still finishes the job.
    done = served.call("WorkerService.Complete", FINISH["Complete"](new, new.token)).response
    assert done.state == job_pb2.JOB_STATE_COMPLETED


@pytest.mark.parametrize("method", FINISH)
def test_a_token_never_issued_is_invalid_naming_the_token(
    served: Caller, queue: str, method: str
) -> None:
    job_id = add(served, queue)
    job = lease(served, queue)
    forged = f"{job.fence}-0000000000000000"
    ended = served.call(f"WorkerService.{method}", FINISH[method](job, forged))
    metadata = refused(ended, INVALID, "INVALID_FIELD")
    assert metadata == {"field": "token", "queue": queue, "job_id": job_id}
    assert state(served, queue, job_id) == job_pb2.JOB_STATE_ACTIVE


@pytest.mark.parametrize("method", FINISH)
def test_a_missing_token_is_invalid(served: Caller, queue: str, method: str) -> None:
    job = ws.LeasedJob(queue=queue, job_id="1")
    ended = served.call(f"WorkerService.{method}", FINISH[method](job, ""))
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": "token"}


@pytest.mark.parametrize("method", FINISH)
def test_finishing_an_unknown_job_is_not_found(served: Caller, queue: str, method: str) -> None:
    job = ws.LeasedJob(queue=queue, job_id="nope")
    ended = served.call(f"WorkerService.{method}", FINISH[method](job, "1-0123456789abcdef"))
    metadata = refused(ended, grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert metadata == {"queue": queue, "job_id": "nope"}


def test_a_lease_on_a_finished_job_is_expired(served: Caller, queue: str) -> None:
    add(served, queue)
    job = lease(served, queue)
    served.call("WorkerService.Complete", FINISH["Complete"](job, job.token)).response  # noqa: B018
    ended = served.call("WorkerService.Fail", FINISH["Fail"](job, job.token))
    metadata = refused(ended, PRECONDITION, "LEASE_EXPIRED")
    assert metadata == {"queue": queue, "job_id": job.job_id}
    assert ended.details() == (
        f"the lease on job {job.job_id} is no longer valid (job is completed)"
    )


def test_a_fail_message_over_its_limit_is_invalid(served: Caller, queue: str) -> None:
    request = ws.FailRequest(queue=queue, job_id="1", token="1-0123456789abcdef")
    request.message = "m" * 65_537
    ended = served.call("WorkerService.Fail", request)
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": "message"}


@pytest.mark.parametrize(
    ("first", "field"),
    [
        (ws.ReportProgressRequest(seq=1, queues=["ok"]), "worker_id"),
        (ws.ReportProgressRequest(worker_id="w", seq=1), "queues"),
        (ws.ReportProgressRequest(worker_id="w", seq=1, queues=["ok", "a{b}"]), "queues[1]"),
    ],
    ids=["worker-id-missing", "queues-missing", "queue-braces"],
)
def test_the_worker_stream_ends_on_a_bad_first_message(
    served: Caller, first: ws.ReportProgressRequest, field: str
) -> None:
    ended = served.bidi("WorkerService.ReportProgress", [first])
    assert refused(ended, INVALID, "INVALID_FIELD")["field"] == field
