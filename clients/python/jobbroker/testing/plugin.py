"""pytest plugin (the ``pytest11`` entry point) for users' tests against a real broker:

- ``jobbroker_address``: the broker's address: ``JOBBROKER_TEST_ADDRESS`` when set, else the
  in-process broker of ``jobbroker_server`` (it comes with ``jobbroker[broker]``);
- ``jobbroker_client``: a :class:`~jobbroker.Client` of it;
- ``jobbroker_queue``: a queue name of the test's own (``test-<random>``);
- ``run_worker``: ``run_worker(worker, until="idle")`` serves a :class:`~jobbroker.Worker`
  on the test broker until its queues have no waiting and no active job, then stops it;
- ``jobbroker_clock``: a :class:`~jobbroker.testing.TestClock` of ``jobbroker_queue``: moves
  its time forward on the in-process broker, so delays, backoffs, leases and schedules come
  due without sleeping.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

from ..client import AsyncClient, Client
from ..worker import Worker
from ._clock import TestClock

ADDRESS_ENV = "JOBBROKER_TEST_ADDRESS"
"""A broker the tests use instead of an in-process one."""
POLL_S = 0.02
"""How often ``run_worker`` looks at the queues' counts."""

RunWorker = Callable[..., None]


@pytest.fixture
def jobbroker_address(request: pytest.FixtureRequest) -> str:
    given = os.environ.get(ADDRESS_ENV)
    if given:
        return given
    try:
        server = request.getfixturevalue("jobbroker_server")
    except pytest.FixtureLookupError:
        pytest.fail(
            f"no broker for the test: set {ADDRESS_ENV}, or install the broker "
            "(pip install 'jobbroker[broker]') for the in-process one"
        )
    address: str = server.address
    return address


@pytest.fixture
def jobbroker_clock(request: pytest.FixtureRequest, jobbroker_queue: str) -> TestClock:
    if os.environ.get(ADDRESS_ENV):
        pytest.fail(
            f"jobbroker_clock moves the time of the in-process broker only, and {ADDRESS_ENV} "
            "points the tests at another broker"
        )
    try:
        server = request.getfixturevalue("jobbroker_server")
    except pytest.FixtureLookupError:
        pytest.fail("jobbroker_clock needs the in-process broker: pip install 'jobbroker[broker]'")
    return TestClock(server.clock, [jobbroker_queue])


@pytest.fixture
def jobbroker_client(jobbroker_address: str) -> Iterator[Client]:
    with Client(jobbroker_address) as client:
        yield client


@pytest.fixture
def jobbroker_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def run_worker(jobbroker_address: str) -> RunWorker:
    def run(worker: Worker, until: Literal["idle"] = "idle", timeout: float = 30.0) -> None:
        """Serve ``worker`` on the test broker until it is idle; fail after ``timeout``."""
        if until != "idle":
            raise ValueError(f"run_worker: until must be 'idle' (got {until!r})")
        worker.connect_with(address=jobbroker_address)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                asyncio.run(
                    _serve_until_idle(worker, jobbroker_address, time.monotonic() + timeout)
                )
            except BaseException as exc:
                failure.append(exc)

        # A thread of its own: the test may be sync, or async with its loop busy awaiting this.
        thread = threading.Thread(target=serve, name="jobbroker-run-worker")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    return run


async def _serve_until_idle(worker: Worker, address: str, deadline: float) -> None:
    async with AsyncClient(address) as client:
        await worker.start()
        try:
            while not await _idle(client, worker):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run_worker: {worker.queues} did not get idle in time")
                await asyncio.sleep(POLL_S)
        finally:
            await worker.stop()


async def _idle(client: AsyncClient, worker: Worker) -> bool:
    if worker.active:
        return False
    for queue in worker.queues:
        counts = (await client.queue(queue)).counts
        if counts.waiting or counts.active:
            return False
    return True
