"""JobService's error mapping, served by grpc_testing: each refusal's status code, details and
ErrorInfo (reason and metadata in ``grpc-status-details-bin``), as the broker sends them."""

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


def add(queue: str, body: bytes = b"{}", name: str = "job", **options: Any) -> js.AddRequest:
    return js.AddRequest(
        queue=queue,
        name=name,
        data=job_pb2.Payload(body=body),
        options=job_pb2.JobOptions(**options),
    )


def added(served: Caller, queue: str, **options: Any) -> str:
    response: js.AddResponse = served.call("JobService.Add", add(queue, **options)).response
    return response.job_id


def waiting(served: Caller, queue: str) -> int:
    request = js.ListJobsRequest(queue=queue, state=job_pb2.JOB_STATE_WAITING)
    response: js.ListJobsResponse = served.call("JobService.ListJobs", request).response
    return response.total


# (id, Add fields, the field the refusal names)
BAD_ADDS: list[tuple[str, dict[str, Any], str]] = [
    ("queue-missing", {"queue": ""}, "queue"),
    ("queue-braces", {"queue": "a{b}"}, "queue"),
    ("name-missing", {"name": ""}, "name"),
    ("data-not-json", {"body": b"{not json"}, "data.body"),
    ("job-id-all-digits", {"job_id": "123"}, "options.job_id"),
    ("priority-over-max", {"priority": 1_000_001}, "options.priority"),
    ("backoff-without-type", {"backoff": job_pb2.Backoff(delay_ms=10)}, "options.backoff.type"),
]


@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in BAD_ADDS], ids=[c[0] for c in BAD_ADDS]
)
def test_add_with_a_bad_field_is_invalid_argument_naming_it(
    served: Caller, queue: str, fields: dict[str, Any], field: str
) -> None:
    request = add(**{"queue": queue, **fields})
    ended = served.call("JobService.Add", request)
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": field}
    assert ended.details().startswith(f"{field}: ")
    assert waiting(served, queue) == 0


def test_add_bulk_names_the_bad_job_and_adds_none(served: Caller, queue: str) -> None:
    jobs = [js.BulkJob(name="job"), js.BulkJob(name="")]
    ended = served.call("JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": "jobs[1].name"}
    assert waiting(served, queue) == 0


def test_add_bulk_over_its_limit_is_resource_exhausted(served: Caller, queue: str) -> None:
    jobs = [js.BulkJob(name="job")] * 1_001
    ended = served.call("JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    metadata = refused(ended, grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED")
    assert metadata == {"limit": "max_bulk_jobs", "field": "jobs"}
    assert ended.details() == "jobs has 1001 entries, over 1000 (limit max_bulk_jobs)"


def test_a_custom_id_with_other_data_is_already_exists(served: Caller, queue: str) -> None:
    added(served, queue, job_id="report-7")
    ended = served.call("JobService.Add", add(queue, body=b'{"v": 2}', job_id="report-7"))
    refused(ended, grpc.StatusCode.ALREADY_EXISTS, "JOB_ID_CONFLICT")
    assert waiting(served, queue) == 1


def test_list_jobs_without_a_state_is_invalid(served: Caller, queue: str) -> None:
    ended = served.call("JobService.ListJobs", js.ListJobsRequest(queue=queue))
    assert refused(ended, INVALID, "INVALID_FIELD") == {"field": "state"}
    assert ended.details() == "state: is required"


UNKNOWN_JOB: dict[str, Any] = {
    "GetStatus": js.GetStatusRequest,
    "Cancel": js.CancelRequest,
    "Retry": js.RetryRequest,
    "Promote": js.PromoteRequest,
    "Remove": js.RemoveRequest,
    "GetLogs": js.GetLogsRequest,
    "StreamProgress": js.StreamProgressRequest,  # a server stream, refused before it yields
}


@pytest.mark.parametrize("method", UNKNOWN_JOB)
def test_an_unknown_job_is_not_found(served: Caller, queue: str, method: str) -> None:
    ended = served.call(f"JobService.{method}", UNKNOWN_JOB[method](queue=queue, job_id="nope"))
    metadata = refused(ended, grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert metadata == {"queue": queue, "job_id": "nope"}
    assert ended.details() == f"job nope not found in queue {queue}"


def test_a_job_in_the_wrong_state_is_failed_precondition(served: Caller, queue: str) -> None:
    job_id = added(served, queue)
    for method, request, reason in [
        ("Retry", js.RetryRequest(queue=queue, job_id=job_id), "JOB_NOT_RETRYABLE"),
        ("Promote", js.PromoteRequest(queue=queue, job_id=job_id), "JOB_NOT_DELAYED"),
    ]:
        ended = served.call(f"JobService.{method}", request)
        assert refused(ended, PRECONDITION, reason) == {"queue": queue, "job_id": job_id}
    lease = ws.LeaseRequest(queue=queue, worker_id="worker-1")
    assert served.call("WorkerService.Lease", lease).response.jobs[0].job_id == job_id
    ended = served.call("JobService.Remove", js.RemoveRequest(queue=queue, job_id=job_id))
    refused(ended, PRECONDITION, "JOB_ACTIVE")
    assert ended.details() == f"job {job_id} is active; cancel it first"


def test_a_request_that_does_not_parse_is_invalid(served: Caller) -> None:
    # Bytes no AddRequest parses from (field 1 says 5 bytes follow; none do): the gate's
    # deserializer refuses them, as it does what comes off the wire.
    ended = served.call("JobService.Add", b"\x0a\x05")
    metadata = refused(ended, INVALID, "INVALID_FIELD")
    assert metadata == {"field": "request", "method": "jobbroker.v1.JobService/Add"}


def test_the_python_client_decodes_the_refusals_to_its_exceptions(
    served: Caller, queue: str
) -> None:
    bad = from_rpc_error(served.call("JobService.Add", add(queue, name="")))  # type: ignore[arg-type]
    assert isinstance(bad, jobbroker.InvalidArgument)
    assert bad.field == "name"
    request = js.GetStatusRequest(queue=queue, job_id="nope")
    missing = from_rpc_error(served.call("JobService.GetStatus", request))  # type: ignore[arg-type]
    assert isinstance(missing, jobbroker.JobNotFound)
    assert missing.metadata == {"queue": queue, "job_id": "nope"}
