"""Every broker error reaches the caller as the jobbroker.errors exception of its reason,
never as a raw grpc.RpcError; a deadline bounds every call."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest
from jobbroker import JobOptions, errors

from .conftest import ClientFactory
from .support import Api, FakeWorker, Timer


def _is_ours(error: BaseException, code: grpc.StatusCode, reason: str) -> None:
    assert not isinstance(error, grpc.RpcError)
    assert isinstance(error, errors.JobBrokerError)
    assert (error.code, error.reason) == (code, reason)


async def test_unknown_job_is_job_not_found(client: Api, queue: str) -> None:
    for call in (
        client.get_status(queue, "nope"),
        client.cancel(queue, "nope"),
        client.retry(queue, "nope"),
        client.promote(queue, "nope"),
        client.remove(queue, "nope"),
        client.logs(queue, "nope"),
        client.wait(queue, "nope", timeout=5),
    ):
        with pytest.raises(errors.JobNotFound) as caught:
            await call
        _is_ours(caught.value, grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")


async def test_bad_input_is_invalid_argument_naming_the_field(client: Api, queue: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        await client.add(queue, "job", priority=2_000_000)
    _is_ours(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert caught.value.field == "options.priority"

    with pytest.raises(errors.InvalidArgument) as caught:
        await client.add_bulk(queue, [("ok", 1), ("bad", 2, JobOptions(job_id="123"))])
    assert caught.value.field == "jobs[1].options.job_id"

    with pytest.raises(errors.InvalidArgument) as caught:
        await client.get_status("no spaces allowed", "1")
    assert caught.value.field == "queue"

    with pytest.raises(errors.InvalidArgument) as caught:
        await client.logs(queue, "1", limit=5000)
    assert caught.value.field == "limit"


async def test_same_job_id_with_other_data_is_a_conflict(client: Api, queue: str) -> None:
    await client.add(queue, "email", {"to": "a"}, job_id="mail-1")

    with pytest.raises(errors.JobIdConflict) as caught:
        await client.add(queue, "email", {"to": "b"}, job_id="mail-1")
    _is_ours(caught.value, grpc.StatusCode.ALREADY_EXISTS, "JOB_ID_CONFLICT")


async def test_calls_on_jobs_in_the_wrong_state(
    client: Api, queue: str, worker: FakeWorker
) -> None:
    running = await client.add(queue, "a")
    waiting = await client.add(queue, "b")
    leased = await worker.lease()

    with pytest.raises(errors.JobNotDelayed) as not_delayed:
        await client.promote(queue, waiting.job_id)
    _is_ours(not_delayed.value, grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_DELAYED")
    with pytest.raises(errors.JobNotRetryable):
        await client.retry(queue, waiting.job_id)
    with pytest.raises(errors.JobActive):
        await client.remove(queue, running.job_id)

    await worker.complete(leased, "done")
    with pytest.raises(errors.JobFinished) as finished:
        await client.cancel(queue, running.job_id)
    assert isinstance(finished.value, errors.JobStateError)


async def test_an_oversized_payload_is_limit_exceeded(client: Api, queue: str) -> None:
    with pytest.raises(errors.LimitExceeded) as caught:
        await client.add(queue, "big", "x" * (1024 * 1024 + 1))
    _is_ours(caught.value, grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED")
    assert caught.value.limit == "max_payload_bytes"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_every_call_has_a_deadline(
    make_client: ClientFactory, silent_port: int, queue: str
) -> None:
    client = make_client(f"127.0.0.1:{silent_port}", timeout=0.3)

    with Timer() as default, pytest.raises(errors.DeadlineExceeded) as caught:
        await client.get_status(queue, "1")
    _is_ours(caught.value, grpc.StatusCode.DEADLINE_EXCEEDED, "")
    with Timer() as own, pytest.raises(errors.DeadlineExceeded):
        await client.add(queue, "job", job_id="x-1", timeout=0.1)

    assert 0.25 <= default.elapsed < 2
    assert 0.05 <= own.elapsed < default.elapsed


async def test_wait_gives_up_with_timeout_error(client: Api, queue: str) -> None:
    added = await client.add(queue, "nobody-works-on-this")

    with Timer() as timer, pytest.raises(TimeoutError):
        await client.wait(queue, added.job_id, timeout=0.3)
    assert 0.25 <= timer.elapsed < 2
