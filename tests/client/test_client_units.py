"""The client's own logic, without a broker: addresses, options, retry timing, lifecycle."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from jobbroker import AsyncClient, Client, JobOptions, JobState
from jobbroker._calls import bulk_request, job_options, state_arg
from jobbroker._transport import RetryBackoff, retry_delay
from jobbroker.client import OptionFields
from jobbroker.connection import target

from .conftest import ClientFactory, RunningBroker
from .support import stream_opened


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("brokers.internal:50051", "brokers.internal:50051"),
        ("dns:///brokers.internal:50051", "dns:///brokers.internal:50051"),
        (["10.0.0.1:50051"], "10.0.0.1:50051"),
        (["10.0.0.1:50051", "10.0.0.2:50052"], "ipv4:10.0.0.1:50051,10.0.0.2:50052"),
        ("10.0.0.1:1, 10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
        (("[::1]:50051", "[fe80::2]:50051"), "ipv6:[::1]:50051,[fe80::2]:50051"),
        ("ipv4:10.0.0.1:1,10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    ],
)
def test_addresses_become_one_grpc_target(address: str | list[str], expected: str) -> None:
    assert target(address) == expected


@pytest.mark.parametrize(
    "address",
    [[], ["a.example:1", "b.example:1"], ["10.0.0.1:1", "[::1]:1"], ["10.0.0.1", "10.0.0.2:1"]],
)
def test_address_lists_must_be_ip_and_port(address: list[str]) -> None:
    with pytest.raises(ValueError, match="address"):
        target(address)


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    for attempt, full in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        delays = [retry_delay(attempt, 0.1, 1.0) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not fixed


def test_retry_delays_stay_at_the_cap_however_many_attempts_failed() -> None:
    """Streams and workers reconnect for as long as it takes: thousands of failed attempts
    must still give the capped delay (2**1100 overflows a float)."""
    backoff = RetryBackoff(first=0.05, cap=1.0)
    backoff.failures = 5_000
    for delay in (retry_delay(5_000, 0.1, 1.0), backoff.next_delay()):
        assert 0.5 <= delay <= 1.0


def test_keyword_options_build_job_options() -> None:
    fields: OptionFields = {"priority": 2, "attempt_timeout": 30, "job_id": "x"}
    assert job_options(None, fields) == JobOptions(priority=2, timeout=30, job_id="x")
    base = JobOptions(attempts=3, timeout=5)
    assert job_options(base, {}) is base
    assert job_options(base, {"attempts": 4}) == JobOptions(attempts=4, timeout=5)
    with pytest.raises(TypeError):
        job_options(None, {"prority": 1})  # type: ignore[typeddict-unknown-key]


def test_a_bulk_add_is_idempotent_only_when_every_job_has_an_id() -> None:
    with_ids = [("a", 1, JobOptions(job_id="a-1")), ("b", 2, JobOptions(job_id="b-1"))]
    request, idempotent = bulk_request("q", with_ids)
    assert idempotent
    assert [j.options.job_id for j in request.jobs] == ["a-1", "b-1"]

    assert not bulk_request("q", [*with_ids, ("c", 3)])[1]
    assert not bulk_request("q", [*with_ids, ("c", 3, None)])[1]
    assert not bulk_request("q", [])[1]
    with pytest.raises(TypeError, match="add_bulk"):
        bulk_request("q", [("a",)])  # type: ignore[list-item]


def test_states_are_given_by_enum_or_name() -> None:
    assert state_arg(JobState.FAILED) is JobState.FAILED
    assert state_arg("Delayed") is JobState.DELAYED
    with pytest.raises(ValueError, match="waiting, delayed"):
        state_arg("done")


def test_client_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        AsyncClient(timeout=0)
    with pytest.raises(ValueError, match="retries"):
        AsyncClient(retries=-1)


async def test_clients_close_with_their_context_and_refuse_calls_after(
    broker: RunningBroker, queue: str
) -> None:
    async with AsyncClient(broker.address) as client:
        await client.add(queue, "job")
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_status(queue, "1")
    await client.close()  # again: nothing happens

    def use_sync() -> None:
        with Client(broker.address) as sync:
            assert sync.list(queue, "waiting").total == 1
        with pytest.raises(RuntimeError, match="closed"):
            sync.get_status(queue, "1")
        sync.close()

    await asyncio.to_thread(use_sync)


async def test_one_sync_client_serves_many_threads(broker: RunningBroker, queue: str) -> None:
    def run() -> list[str]:
        with Client(broker.address) as client, ThreadPoolExecutor(8) as pool:
            added = list(pool.map(lambda i: client.add(queue, "job", {"i": i}), range(40)))
            jobs = list(pool.map(lambda a: client.get_status(queue, a.job_id), added))
            return [str(job.data["i"]) for job in jobs]

    assert await asyncio.to_thread(run) == [str(i) for i in range(40)]


async def test_closing_a_client_ends_the_calls_in_flight(
    make_client: ClientFactory, broker: RunningBroker, queue: str
) -> None:
    client = make_client(broker.address)
    added = await client.add(queue, "nobody-runs-this")
    opened = await stream_opened(client)
    waiting = asyncio.ensure_future(client.wait(queue, added.job_id))
    assert await asyncio.to_thread(opened.wait, 5)

    await client.close()
    with pytest.raises(RuntimeError, match="closed during the call"):
        await asyncio.wait_for(waiting, 5)
