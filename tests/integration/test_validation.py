"""Bad input, field by field, in every RPC: the status code and the ErrorInfo a caller decodes.

Every refusal must carry a ``google.rpc.ErrorInfo`` (domain "jobbroker.v1"): INVALID_FIELD with
metadata "field" naming the field (the path a caller would write, like ``jobs[1].data.body``),
LIMIT_EXCEEDED with metadata "limit" naming the limit, JOB_NOT_FOUND for unknown jobs.
"""

from __future__ import annotations

import base64
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from conftest import Running, start_broker, stop_broker
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from jobbroker.v1 import job_pb2, job_service_pb2, worker_service_pb2

DOMAIN = "jobbroker.v1"
TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000
TOKEN = "1-0123456789abcdef"  # well-formed, names no lease
SMALL_PAYLOAD = 1024
SMALL_BULK = 3

js = job_service_pb2
ws = worker_service_pb2
Build = Callable[[str], Message]


# --- helpers --------------------------------------------------------------------------------


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call, from its grpc-status-details-bin trailer."""
    raw = [v for k, v in err.trailing_metadata() or () if k == "grpc-status-details-bin"]
    assert raw, f"no grpc-status-details-bin on {err.code()}: {err.details()}"
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == err.code().value[0]
    assert status.message == err.details()
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo, got {status.details}"
    assert infos[0].domain == DOMAIN
    return infos[0]


async def invoke(running: Running, method: str, request: Message) -> Any:
    """Call ``Service.Method``; a server stream is read to its end."""
    service, name = method.split(".")
    stub = running.jobs if service == "JobService" else running.workers
    call = getattr(stub, name)(request, timeout=10)
    if name == "StreamProgress":
        return [message async for message in call]
    return await call


async def rejected(running: Running, method: str, request: Message) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await invoke(running, method, request)
    return caught.value


def assert_invalid_field(err: grpc.aio.AioRpcError, field: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert info.reason == "INVALID_FIELD"
    assert info.metadata["field"] == field
    assert field in (err.details() or "")


def assert_limit(err: grpc.aio.AioRpcError, limit: str, field: str) -> None:
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    info = error_info(err)
    assert info.reason == "LIMIT_EXCEEDED"
    assert info.metadata["limit"] == limit
    assert field in (err.details() or "")


def json_payload(body: bytes = b"{}", content_type: str = "") -> job_pb2.Payload:
    return job_pb2.Payload(body=body, content_type=content_type)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def page_token(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.fixture(scope="module")
async def small(redis_url: str) -> AsyncIterator[Running]:
    """A broker with tiny limits, shared by this module's limit tests."""
    running = await start_broker(
        redis_url, max_payload_bytes=SMALL_PAYLOAD, max_bulk_jobs=SMALL_BULK
    )
    yield running
    await stop_broker(running)


# --- one valid request per RPC, to spoil one field at a time -------------------------------

VALID: dict[str, Build] = {
    "JobService.Add": lambda q: js.AddRequest(queue=q, name="job", data=json_payload()),
    "JobService.AddBulk": lambda q: js.AddBulkRequest(queue=q, jobs=[js.BulkJob(name="job")]),
    "JobService.GetStatus": lambda q: js.GetStatusRequest(queue=q, job_id="1"),
    "JobService.Cancel": lambda q: js.CancelRequest(queue=q, job_id="1"),
    "JobService.StreamProgress": lambda q: js.StreamProgressRequest(queue=q, job_id="1"),
    "JobService.ListJobs": lambda q: js.ListJobsRequest(queue=q, state=job_pb2.JOB_STATE_WAITING),
    "JobService.Retry": lambda q: js.RetryRequest(queue=q, job_id="1"),
    "JobService.Promote": lambda q: js.PromoteRequest(queue=q, job_id="1"),
    "JobService.Remove": lambda q: js.RemoveRequest(queue=q, job_id="1"),
    "JobService.GetLogs": lambda q: js.GetLogsRequest(queue=q, job_id="1"),
    "WorkerService.Lease": lambda q: ws.LeaseRequest(queue=q, worker_id="worker-1"),
    "WorkerService.Complete": lambda q: ws.CompleteRequest(queue=q, job_id="1", token=TOKEN),
    "WorkerService.Fail": lambda q: ws.FailRequest(queue=q, job_id="1", token=TOKEN),
    "WorkerService.Release": lambda q: ws.ReleaseRequest(queue=q, job_id="1", token=TOKEN),
}
WITH_JOB_ID = [m for m in VALID if m.split(".")[1] not in ("Add", "AddBulk", "ListJobs", "Lease")]

BAD_QUEUES = {
    "missing": "",
    "braces": "a{b}",
    "space": "a b",
    "too-long": "q" * 129,
    "slash": "a/b",
    "non-ascii": "qué",
    "trailing-newline": "queue\n",
    "control": "a\x00b",
}
BAD_JOB_IDS = {
    "missing": "",
    "space": "a b",
    "braces": "{x}",
    "too-long": "j" * 257,
    "control": "a\x00b",
    "c1-control": "a\x85b",
}


def spoiled(method: str, field: str, value: object) -> Build:
    def build(queue: str) -> Message:
        request = VALID[method](queue)
        setattr(request, field, value)
        return request

    return build


@pytest.mark.parametrize("method", list(VALID))
async def test_valid_template_passes_validation(broker: Running, queue: str, method: str) -> None:
    # The templates below are only meaningful if the unspoiled request gets past validation.
    try:
        await invoke(broker, method, VALID[method](queue))
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        code = err.code()
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("method", list(VALID))
@pytest.mark.parametrize("bad", list(BAD_QUEUES.values()), ids=list(BAD_QUEUES))
async def test_bad_queue_name(broker: Running, method: str, bad: str) -> None:
    err = await rejected(broker, method, spoiled(method, "queue", bad)(""))
    assert_invalid_field(err, "queue")


@pytest.mark.parametrize("method", WITH_JOB_ID)
@pytest.mark.parametrize("bad", list(BAD_JOB_IDS.values()), ids=list(BAD_JOB_IDS))
async def test_bad_job_id(broker: Running, queue: str, method: str, bad: str) -> None:
    err = await rejected(broker, method, spoiled(method, "job_id", bad)(queue))
    assert_invalid_field(err, "job_id")


@pytest.mark.parametrize("method", WITH_JOB_ID)
async def test_unknown_job_is_not_found(broker: Running, queue: str, method: str) -> None:
    err = await rejected(broker, method, spoiled(method, "job_id", "no-such-job")(queue))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    assert error_info(err).reason == "JOB_NOT_FOUND"


# --- Add ----------------------------------------------------------------------------------


def add(
    queue: str,
    *,
    name: str = "job",
    body: bytes = b"{}",
    content_type: str = "",
    **options: Any,
) -> js.AddRequest:
    return js.AddRequest(
        queue=queue,
        name=name,
        data=json_payload(body, content_type),
        options=job_pb2.JobOptions(**options),
    )


def backoff(**fields: Any) -> job_pb2.Backoff:
    return job_pb2.Backoff(**fields)


def retention(**fields: Any) -> job_pb2.RetentionPolicy:
    return job_pb2.RetentionPolicy(**fields)


FIXED = job_pb2.BACKOFF_TYPE_FIXED

# (id, Add keyword arguments, the field the error must name)
ADD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("name-missing", {"name": ""}, "name"),
    ("name-too-long", {"name": "n" * 129}, "name"),
    ("name-control", {"name": "a\tb"}, "name"),
    ("name-newline", {"name": "a\nb"}, "name"),
    ("name-c1-control", {"name": "a\u0085b"}, "name"),
    ("data-invalid-json", {"body": b"{not json"}, "data.body"),
    ("data-trailing-garbage", {"body": b"{} x"}, "data.body"),
    ("data-single-quotes", {"body": b"{'a': 1}"}, "data.body"),
    ("data-nan", {"body": b"NaN"}, "data.body"),
    ("data-invalid-utf8", {"body": b'"\xff"'}, "data.body"),
    ("data-explicit-json-invalid", {"body": b"{", "content_type": "application/json"}, "data.body"),
    ("data-array-depth-33", {"body": nested(33)}, "data.body"),
    ("data-object-depth-33", {"body": nested_objects(33)}, "data.body"),
    ("data-depth-100", {"body": nested(100)}, "data.body"),
    ("content-type-control", {"body": b"x", "content_type": "text/plain\n"}, "data.content_type"),
    (
        "content-type-too-long",
        {"body": b"x", "content_type": "a/" + "b" * 127},
        "data.content_type",
    ),
    ("job-id-all-digits", {"job_id": "123"}, "options.job_id"),
    ("job-id-zero", {"job_id": "0"}, "options.job_id"),
    ("job-id-space", {"job_id": "a b"}, "options.job_id"),
    ("job-id-braces", {"job_id": "{a}"}, "options.job_id"),
    ("job-id-too-long", {"job_id": "j" * 257}, "options.job_id"),
    ("priority-over-max", {"priority": 1_000_001}, "options.priority"),
    ("priority-uint32-max", {"priority": 2**32 - 1}, "options.priority"),
    ("attempts-over-max", {"attempts": 10_001}, "options.attempts"),
    ("delay-over-ten-years", {"delay_ms": TEN_YEARS_MS + 1}, "options.delay_ms"),
    ("timeout-over-ten-years", {"timeout_ms": TEN_YEARS_MS + 1}, "options.timeout_ms"),
    ("lifespan-over-ten-years", {"lifespan_ms": 2**64 - 1}, "options.lifespan_ms"),
    ("backoff-type-unknown", {"backoff": backoff(type=7, delay_ms=10)}, "options.backoff.type"),
    ("backoff-delay-without-type", {"backoff": backoff(delay_ms=10)}, "options.backoff.type"),
    ("jitter-negative", {"backoff": backoff(type=FIXED, jitter=-0.1)}, "options.backoff.jitter"),
    ("jitter-over-one", {"backoff": backoff(type=FIXED, jitter=1.5)}, "options.backoff.jitter"),
    ("jitter-nan", {"backoff": backoff(type=FIXED, jitter=math.nan)}, "options.backoff.jitter"),
    ("jitter-inf", {"backoff": backoff(type=FIXED, jitter=math.inf)}, "options.backoff.jitter"),
    (
        "backoff-delay-over-ten-years",
        {"backoff": backoff(type=FIXED, delay_ms=TEN_YEARS_MS + 1)},
        "options.backoff.delay_ms",
    ),
    (
        "backoff-max-delay-over-ten-years",
        {"backoff": backoff(type=FIXED, delay_ms=1, max_delay_ms=TEN_YEARS_MS + 1)},
        "options.backoff.max_delay_ms",
    ),
    (
        "remove-on-complete-age",
        {"remove_on_complete": retention(keep_age_ms=TEN_YEARS_MS + 1)},
        "options.remove_on_complete.keep_age_ms",
    ),
    (
        "remove-on-fail-age",
        {"remove_on_fail": retention(keep_last=1, keep_age_ms=TEN_YEARS_MS + 1)},
        "options.remove_on_fail.keep_age_ms",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "field"), [c[1:] for c in ADD_CASES], ids=[c[0] for c in ADD_CASES]
)
async def test_add_rejects(
    broker: Running, queue: str, r: Any, kwargs: dict[str, Any], field: str
) -> None:
    err = await rejected(broker, "JobService.Add", add(queue, **kwargs))
    assert_invalid_field(err, field)
    assert not r.exists(f"jb:{{{queue}}}:waiting", f"jb:{{{queue}}}:delayed")


# (id, Add keyword arguments) that are on the edge but valid
ADD_ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("priority-max", {"priority": 1_000_000}),
    ("priority-min", {"priority": 1}),
    ("jitter-zero", {"backoff": backoff(type=FIXED, delay_ms=10, jitter=0.0)}),
    ("jitter-one", {"backoff": backoff(type=FIXED, delay_ms=10, jitter=1.0)}),
    ("name-128", {"name": "n" * 128}),
    ("name-unicode", {"name": "résumé-📄"}),
    ("job-id-mixed", {"job_id": "order-007"}),
    ("job-id-256", {"job_id": "j" * 256}),
    ("data-depth-32", {"body": nested(32)}),
    ("data-objects-depth-32", {"body": nested_objects(32)}),
    ("data-brackets-in-string", {"body": b'{"a": "' + b"[{" * 50 + b'"}'}),
    ("data-empty", {"body": b""}),
    ("data-scalar", {"body": b"42"}),
    ("delay-ten-years", {"delay_ms": TEN_YEARS_MS}),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in ADD_ACCEPTED], ids=[c[0] for c in ADD_ACCEPTED])
async def test_add_accepts_edge(broker: Running, queue: str, kwargs: dict[str, Any]) -> None:
    reply = await broker.jobs.Add(add(queue, **kwargs))
    assert reply.job_id


async def test_add_accepts_queue_name_of_128_characters(broker: Running, queue: str) -> None:
    name = (queue + "-" + "q" * 128)[:128]
    reply = await broker.jobs.Add(add(name))
    status = await broker.jobs.GetStatus(js.GetStatusRequest(queue=name, job_id=reply.job_id))
    assert status.job.queue == name


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", b"\xff\xfe\x00\x01 not json"),
        ("text/plain", b"{not json"),
        ("application/x-msgpack", b"\x81\xa1a\x01"),
        ("application/xml", b"<a>" * 40 + b"[" * 40),
        ("application/octet-stream", b""),
    ],
)
async def test_non_json_content_types_are_opaque_bytes(
    broker: Running, queue: str, content_type: str, body: bytes
) -> None:
    reply = await broker.jobs.Add(add(queue, body=body, content_type=content_type))
    job = (await broker.jobs.GetStatus(js.GetStatusRequest(queue=queue, job_id=reply.job_id))).job
    assert job.data.body == body
    assert job.data.content_type == content_type


# --- payload and bulk limits ---------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["", "application/octet-stream"])
async def test_data_over_max_payload_bytes(small: Running, queue: str, content_type: str) -> None:
    body = b'"' + b"x" * (SMALL_PAYLOAD - 1) + b'"'  # valid JSON, one byte over
    err = await rejected(small, "JobService.Add", add(queue, body=body, content_type=content_type))
    assert_limit(err, "max_payload_bytes", "data")


async def test_data_of_exactly_max_payload_bytes_is_accepted(small: Running, queue: str) -> None:
    body = b'"' + b"x" * (SMALL_PAYLOAD - 2) + b'"'
    assert len(body) == SMALL_PAYLOAD
    assert (await small.jobs.Add(add(queue, body=body))).job_id


async def test_result_over_max_payload_bytes(small: Running, queue: str) -> None:
    request = ws.CompleteRequest(
        queue=queue, job_id="1", token=TOKEN, result=json_payload(b"1" * (SMALL_PAYLOAD + 1))
    )
    err = await rejected(small, "WorkerService.Complete", request)
    assert_limit(err, "max_payload_bytes", "result")


async def test_add_bulk_over_max_bulk_jobs(small: Running, queue: str, r: Any) -> None:
    jobs = [js.BulkJob(name="job") for _ in range(SMALL_BULK + 1)]
    err = await rejected(small, "JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    assert_limit(err, "max_bulk_jobs", "jobs")
    assert not r.exists(f"jb:{{{queue}}}:waiting")
    reply = await small.jobs.AddBulk(js.AddBulkRequest(queue=queue, jobs=jobs[:SMALL_BULK]))
    assert len(reply.results) == SMALL_BULK


async def test_add_bulk_over_default_limit_of_1000(broker: Running, queue: str) -> None:
    jobs = [js.BulkJob(name="j") for _ in range(1001)]
    err = await rejected(broker, "JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    assert_limit(err, "max_bulk_jobs", "jobs")


async def test_add_bulk_payload_limit_names_the_job(small: Running, queue: str) -> None:
    jobs = [
        js.BulkJob(name="ok"),
        js.BulkJob(name="big", data=json_payload(b"1" * (SMALL_PAYLOAD + 1))),
    ]
    err = await rejected(small, "JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    assert_limit(err, "max_payload_bytes", "jobs[1].data")


# --- AddBulk: jobs[i] field paths, and all-or-nothing -------------------------------------


def bulk_job(**kwargs: Any) -> js.BulkJob:
    body = kwargs.pop("body", b"{}")
    name = kwargs.pop("name", "job")
    return js.BulkJob(name=name, data=json_payload(body), options=job_pb2.JobOptions(**kwargs))


BULK_CASES: list[tuple[str, int, dict[str, Any], str]] = [
    ("name-missing", 1, {"name": ""}, "jobs[1].name"),
    ("data-invalid", 2, {"body": b"[1,"}, "jobs[2].data.body"),
    ("data-too-deep", 0, {"body": nested(33)}, "jobs[0].data.body"),
    ("job-id-digits", 2, {"job_id": "42"}, "jobs[2].options.job_id"),
    ("priority", 1, {"priority": 1_000_001}, "jobs[1].options.priority"),
    (
        "jitter",
        2,
        {"backoff": backoff(type=FIXED, jitter=2.0)},
        "jobs[2].options.backoff.jitter",
    ),
    ("delay", 0, {"delay_ms": TEN_YEARS_MS + 1}, "jobs[0].options.delay_ms"),
]


@pytest.mark.parametrize(
    ("index", "kwargs", "field"), [c[1:] for c in BULK_CASES], ids=[c[0] for c in BULK_CASES]
)
async def test_add_bulk_names_the_bad_job_and_adds_none(
    broker: Running, queue: str, r: Any, index: int, kwargs: dict[str, Any], field: str
) -> None:
    jobs = [bulk_job(), bulk_job(), bulk_job()]
    jobs[index].CopyFrom(bulk_job(**kwargs))
    err = await rejected(broker, "JobService.AddBulk", js.AddBulkRequest(queue=queue, jobs=jobs))
    assert_invalid_field(err, field)
    listed = await broker.jobs.ListJobs(
        js.ListJobsRequest(queue=queue, state=job_pb2.JOB_STATE_WAITING)
    )
    assert listed.total == 0
    assert not r.exists(f"jb:{{{queue}}}:waiting")


# --- the other JobService fields -----------------------------------------------------------


def listing(queue: str, **fields: Any) -> js.ListJobsRequest:
    """A ListJobs request of the waiting jobs unless `fields` say otherwise."""
    return js.ListJobsRequest(queue=queue, **{"state": job_pb2.JOB_STATE_WAITING, **fields})


OTHER_JOB_CASES: list[tuple[str, str, Callable[[str], Message], str]] = [
    ("cancel-reason-too-long", "JobService.Cancel",
     lambda q: js.CancelRequest(queue=q, job_id="1", reason="r" * 1025), "reason"),
    ("stream-after-not-an-id", "JobService.StreamProgress",
     lambda q: js.StreamProgressRequest(queue=q, job_id="1", after_event_id="abc"),
     "after_event_id"),
    ("stream-after-bad-seq", "JobService.StreamProgress",
     lambda q: js.StreamProgressRequest(queue=q, job_id="1", after_event_id="1-x"),
     "after_event_id"),
    ("stream-after-dash", "JobService.StreamProgress",
     lambda q: js.StreamProgressRequest(queue=q, job_id="1", after_event_id="-"),
     "after_event_id"),
    ("list-state-missing", "JobService.ListJobs",
     lambda q: js.ListJobsRequest(queue=q), "state"),
    ("list-state-unknown", "JobService.ListJobs",
     lambda q: js.ListJobsRequest(queue=q, state=99), "state"),  # type: ignore[arg-type]
    ("list-page-size", "JobService.ListJobs",
     lambda q: listing(q, page_size=1001), "page_size"),
    ("list-token-garbage", "JobService.ListJobs",
     lambda q: listing(q, page_token="not a token!"), "page_token"),
    ("list-token-negative", "JobService.ListJobs",
     lambda q: listing(q, page_token=page_token(b"o:-1")),
     "page_token"),
    ("list-token-wrong-kind", "JobService.ListJobs",
     lambda q: listing(q, page_token=page_token(b"x:5")),
     "page_token"),
    ("list-token-not-utf8", "JobService.ListJobs",
     lambda q: listing(q, page_token=page_token(b"\xff\xfe")),
     "page_token"),
    ("logs-limit", "JobService.GetLogs",
     lambda q: js.GetLogsRequest(queue=q, job_id="1", limit=1001), "limit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "build", "field"),
    [c[1:] for c in OTHER_JOB_CASES],
    ids=[c[0] for c in OTHER_JOB_CASES],
)
async def test_job_service_rejects(
    broker: Running, queue: str, method: str, build: Build, field: str
) -> None:
    # The job exists, so only the field under test can be wrong.
    await broker.jobs.Add(add(queue))
    err = await rejected(broker, method, build(queue))
    assert_invalid_field(err, field)


async def test_list_jobs_page_token_round_trips(broker: Running, queue: str) -> None:
    await broker.jobs.AddBulk(js.AddBulkRequest(queue=queue, jobs=[bulk_job() for _ in range(3)]))
    request = js.ListJobsRequest(queue=queue, state=job_pb2.JOB_STATE_WAITING, page_size=2)
    first = await broker.jobs.ListJobs(request)
    assert first.next_page_token
    request.page_token = first.next_page_token
    second = await broker.jobs.ListJobs(request)
    assert [j.id for j in [*first.jobs, *second.jobs]] == ["1", "2", "3"]


# --- WorkerService unary calls -------------------------------------------------------------


def lease(queue: str, **fields: Any) -> ws.LeaseRequest:
    return ws.LeaseRequest(queue=queue, **{"worker_id": "worker-1", **fields})


def complete(queue: str, **fields: Any) -> ws.CompleteRequest:
    return ws.CompleteRequest(queue=queue, **{"job_id": "1", "token": TOKEN, **fields})


def fail(queue: str, **fields: Any) -> ws.FailRequest:
    return ws.FailRequest(queue=queue, **{"job_id": "1", "token": TOKEN, **fields})


def release(queue: str, **fields: Any) -> ws.ReleaseRequest:
    return ws.ReleaseRequest(queue=queue, **{"job_id": "1", "token": TOKEN, **fields})


WORKER_CASES: list[tuple[str, str, Callable[[str], Message], str]] = [
    ("lease-worker-missing", "Lease", lambda q: lease(q, worker_id=""), "worker_id"),
    ("lease-worker-space", "Lease", lambda q: lease(q, worker_id="host 1"), "worker_id"),
    ("lease-worker-too-long", "Lease", lambda q: lease(q, worker_id="w" * 257), "worker_id"),
    ("lease-max-jobs", "Lease", lambda q: lease(q, max_jobs=1001), "max_jobs"),
    ("lease-wait", "Lease", lambda q: lease(q, wait_ms=300_001), "wait_ms"),
    ("lease-ms-short", "Lease", lambda q: lease(q, lease_ms=999), "lease_ms"),
    ("lease-ms-long", "Lease", lambda q: lease(q, lease_ms=3_600_001), "lease_ms"),
    ("complete-token-missing", "Complete", lambda q: complete(q, token=""), "token"),
    ("complete-token-too-long", "Complete", lambda q: complete(q, token="1-" + "a" * 63), "token"),
    ("complete-result-json", "Complete",
     lambda q: complete(q, result=json_payload(b"{oops")), "result.body"),
    ("complete-result-depth", "Complete",
     lambda q: complete(q, result=json_payload(nested(33))), "result.body"),
    ("complete-result-type", "Complete",
     lambda q: complete(q, result=json_payload(b"x", "a\x01b")), "result.content_type"),
    ("fail-token-missing", "Fail", lambda q: fail(q, token=""), "token"),
    ("fail-message", "Fail", lambda q: fail(q, message="m" * 65_537), "message"),
    ("fail-error-type", "Fail", lambda q: fail(q, error_type="E" * 257), "error_type"),
    ("fail-stack", "Fail", lambda q: fail(q, stack="s" * 262_145), "stack"),
    ("release-token-missing", "Release", lambda q: release(q, token=""), "token"),
    ("release-delay", "Release", lambda q: release(q, delay_ms=TEN_YEARS_MS + 1), "delay_ms"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "build", "field"),
    [c[1:] for c in WORKER_CASES],
    ids=[c[0] for c in WORKER_CASES],
)
async def test_worker_service_rejects(
    broker: Running, queue: str, method: str, build: Build, field: str
) -> None:
    err = await rejected(broker, f"WorkerService.{method}", build(queue))
    assert_invalid_field(err, field)


async def test_lease_accepts_range_edges(broker: Running, queue: str) -> None:
    await broker.jobs.Add(add(queue))
    reply = await broker.workers.Lease(lease(queue, max_jobs=1000, lease_ms=1000, wait_ms=0))
    assert len(reply.jobs) == 1
    reply = await broker.workers.Lease(lease(queue, lease_ms=3_600_000, wait_ms=1))
    assert not reply.jobs


async def test_bad_result_does_not_touch_the_lease(broker: Running, queue: str) -> None:
    await broker.jobs.Add(add(queue))
    [job] = (await broker.workers.Lease(lease(queue))).jobs
    request = complete(queue, job_id=job.job_id, token=job.token, result=json_payload(b"{"))
    assert_invalid_field(await rejected(broker, "WorkerService.Complete", request), "result.body")
    request.result.body = b'{"ok": true}'
    assert (await broker.workers.Complete(request)).state == job_pb2.JOB_STATE_COMPLETED


# --- ReportProgress ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def worker_stream(running: Running) -> AsyncIterator[Any]:
    """A ReportProgress call, cancelled on the way out whatever happened."""
    call = running.workers.ReportProgress(timeout=10)
    try:
        yield call
    finally:
        call.cancel()


async def stream_refused(running: Running, message: ws.ReportProgressRequest) -> Any:
    """Send `message` as a stream's first message; the error that ends the stream."""
    async with worker_stream(running) as call:
        await call.write(message)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    return caught.value


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (ws.ReportProgressRequest(seq=1, queues=["ok"]), "worker_id"),
        (ws.ReportProgressRequest(worker_id="a b", seq=1, queues=["ok"]), "worker_id"),
        (ws.ReportProgressRequest(worker_id="w", seq=1), "queues"),
        (ws.ReportProgressRequest(worker_id="w", seq=1, queues=["ok", "a{b}"]), "queues[1]"),
    ],
    ids=["worker-id-missing", "worker-id-space", "queues-missing", "queue-braces"],
)
async def test_report_progress_aborts_on_bad_first_message(
    broker: Running, message: ws.ReportProgressRequest, field: str
) -> None:
    assert_invalid_field(await stream_refused(broker, message), field)


def update(job: ws.LeasedJob, **fields: Any) -> ws.LeaseUpdate:
    base: dict[str, Any] = {"queue": job.queue, "job_id": job.job_id, "token": job.token}
    return ws.LeaseUpdate(**{**base, **fields})


def value(body: bytes) -> job_pb2.Payload:
    return json_payload(body)


# (id, the bad update's fields over a valid one, the field its ItemError must name)
BAD_UPDATES: list[tuple[str, dict[str, Any], str]] = [
    ("queue", {"queue": "a b"}, "updates[0].queue"),
    ("job-id", {"job_id": ""}, "updates[0].job_id"),
    ("token-missing", {"token": ""}, "updates[0].token"),
    ("token-too-long", {"token": "1-" + "a" * 63}, "updates[0].token"),
    ("lease-ms-short", {"lease_ms": 999}, "updates[0].lease_ms"),
    ("lease-ms-long", {"lease_ms": 3_600_001}, "updates[0].lease_ms"),
    ("percent-negative", {"percent": -1.0}, "updates[0].percent"),
    ("percent-over-100", {"percent": 100.5}, "updates[0].percent"),
    ("percent-nan", {"percent": math.nan}, "updates[0].percent"),
    ("value-json", {"value": value(b"{x")}, "updates[0].value.body"),
    ("value-depth", {"value": value(nested(40))}, "updates[0].value.body"),
    ("log-line-too-long", {"log_lines": ["ok", "l" * 16_385]}, "updates[0].log_lines"),
]


async def leased(running: Running, queue: str, count: int) -> list[ws.LeasedJob]:
    await running.jobs.AddBulk(
        js.AddBulkRequest(queue=queue, jobs=[bulk_job() for _ in range(count)])
    )
    reply = await running.workers.Lease(lease(queue, max_jobs=count, lease_ms=30_000))
    assert len(reply.jobs) == count
    return list(reply.jobs)


async def exchange(
    running: Running, message: ws.ReportProgressRequest
) -> ws.ReportProgressResponse:
    """Send one message on a fresh worker stream and return its acknowledgement."""
    async with worker_stream(running) as call:
        await call.write(message)
        while True:
            reply: ws.ReportProgressResponse = await call.read()
            if reply.seq == message.seq:
                return reply


def assert_item_error(error: ws.ItemError, field: str, code: int = 3) -> None:
    assert error.code == code, error
    assert error.reason == ("INVALID_FIELD" if code == 3 else "LIMIT_EXCEEDED")
    assert error.message.startswith(field), error.message


@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in BAD_UPDATES], ids=[c[0] for c in BAD_UPDATES]
)
async def test_report_progress_bad_update_is_an_item_error(
    broker: Running, queue: str, fields: dict[str, Any], field: str
) -> None:
    [job] = await leased(broker, queue, 1)
    message = ws.ReportProgressRequest(
        worker_id="worker-1",
        seq=7,
        queues=[queue],
        updates=[update(job, **fields), update(job, percent=40.0, log_lines=["half way"])],
    )
    reply = await exchange(broker, message)
    bad, good = reply.leases
    assert_item_error(bad.error, field)
    assert bad.lease_expires_at_ms == 0
    assert not good.HasField("error")
    assert good.lease_expires_at_ms > 0
    status = await broker.jobs.GetStatus(js.GetStatusRequest(queue=queue, job_id=job.job_id))
    assert status.job.progress.percent == 40.0
    assert status.job.log_count == 1  # the bad update's lines were not appended


def outcome(kind: str, job: ws.LeasedJob, **fields: Any) -> ws.Outcome:
    base: dict[str, Any] = {"queue": job.queue, "job_id": job.job_id, "token": job.token}
    request_type = {"complete": complete, "fail": fail, "release": release}[kind]
    return ws.Outcome(**{kind: request_type(**{**base, **fields})})


BAD_OUTCOMES: list[tuple[str, str, dict[str, Any], str]] = [
    ("complete-queue", "complete", {"queue": "a{b}"}, "outcomes[0].complete.queue"),
    ("complete-job-id", "complete", {"job_id": "a b"}, "outcomes[0].complete.job_id"),
    ("complete-token", "complete", {"token": ""}, "outcomes[0].complete.token"),
    ("complete-result", "complete", {"result": value(b"[1,]")}, "outcomes[0].complete.result.body"),
    ("fail-message", "fail", {"message": "m" * 65_537}, "outcomes[0].fail.message"),
    ("fail-error-type", "fail", {"error_type": "E" * 257}, "outcomes[0].fail.error_type"),
    ("fail-stack", "fail", {"stack": "s" * 262_145}, "outcomes[0].fail.stack"),
    ("release-delay", "release", {"delay_ms": TEN_YEARS_MS + 1}, "outcomes[0].release.delay_ms"),
]


@pytest.mark.parametrize(
    ("kind", "fields", "field"), [c[1:] for c in BAD_OUTCOMES], ids=[c[0] for c in BAD_OUTCOMES]
)
async def test_report_progress_bad_outcome_is_an_item_error(
    broker: Running, queue: str, kind: str, fields: dict[str, Any], field: str
) -> None:
    first, second = await leased(broker, queue, 2)
    message = ws.ReportProgressRequest(
        worker_id="worker-1",
        seq=3,
        queues=[queue],
        outcomes=[outcome(kind, first, **fields), outcome("complete", second)],
    )
    reply = await exchange(broker, message)
    bad, good = reply.outcomes
    assert_item_error(bad.error, field)
    assert not good.HasField("error")
    assert good.state == job_pb2.JOB_STATE_COMPLETED
    states = [
        (await broker.jobs.GetStatus(js.GetStatusRequest(queue=queue, job_id=j.job_id))).job.state
        for j in (first, second)
    ]
    assert states == [job_pb2.JOB_STATE_ACTIVE, job_pb2.JOB_STATE_COMPLETED]


async def test_report_progress_outcome_without_kind(broker: Running, queue: str) -> None:
    [job] = await leased(broker, queue, 1)
    message = ws.ReportProgressRequest(
        worker_id="worker-1",
        seq=1,
        queues=[queue],
        outcomes=[ws.Outcome(), outcome("complete", job)],
    )
    bad, good = (await exchange(broker, message)).outcomes
    assert_item_error(bad.error, "outcomes[0]")
    assert good.state == job_pb2.JOB_STATE_COMPLETED


async def test_report_progress_value_over_limit_is_an_item_error(
    small: Running, queue: str
) -> None:
    [job] = await leased(small, queue, 1)
    message = ws.ReportProgressRequest(
        worker_id="worker-1",
        seq=1,
        queues=[queue],
        updates=[update(job, value=value(b"1" * (SMALL_PAYLOAD + 1))), update(job, percent=5.0)],
    )
    bad, good = (await exchange(small, message)).leases
    assert_item_error(bad.error, "updates[0].value", code=8)
    assert good.lease_expires_at_ms > 0


async def test_report_progress_later_message_needs_no_worker_id(
    broker: Running, queue: str
) -> None:
    [job] = await leased(broker, queue, 1)
    async with worker_stream(broker) as call:
        await call.write(ws.ReportProgressRequest(worker_id="worker-1", seq=1, queues=[queue]))
        assert (await call.read()).seq == 1
        await call.write(ws.ReportProgressRequest(seq=2, updates=[update(job, percent=1.0)]))
        reply = await call.read()
    assert reply.seq == 2
    assert not reply.leases[0].HasField("error")
