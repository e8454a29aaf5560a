"""Thousands of StreamProgress calls opened at once on one connection are all answered.

grpc.aio accepts one call per turn of its event loop, so a burst waits in gRPC core's queue of
calls not yet accepted; past that queue's default bound (1,000 to 3,000 calls) core failed the
excess with a bare CANCELLED that never reached the broker (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from conftest import Running
from helpers import add_id
from jobbroker.v1 import job_service_pb2

BURST = 5_000
DEADLINE = 120.0
"""Seconds the whole burst may take to be answered: generous, for a loaded 2-core machine."""


async def first_answer(broker: Running, queue: str, job_id: str) -> str:
    """What a new stream gets first: 'snapshot', or the status it ended with."""
    call = broker.jobs.StreamProgress(
        job_service_pb2.StreamProgressRequest(queue=queue, job_id=job_id)
    )
    try:
        item = await call.read()
        if item is grpc.aio.EOF:
            return f"ended {(await call.code()).name}"
        return "snapshot" if item.HasField("snapshot") else "event"
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name}: {error.details()}"
    finally:
        call.cancel()


async def test_a_burst_of_streams_on_one_connection_all_get_their_snapshot(
    broker: Running, queue: str
) -> None:
    """Each stream gets its snapshot: none is refused by gRPC core unseen (a bare CANCELLED,
    2,267 of 5,000 before), none finds Redis' connections exhausted (the burst's reads of one
    job share Redis calls, storage/coalesce.py) and none hangs."""
    job_id = await add_id(broker, queue, {"n": 1})
    async with asyncio.timeout(DEADLINE):
        answers = await asyncio.gather(*(first_answer(broker, queue, job_id) for _ in range(BURST)))
    assert Counter(answers) == {"snapshot": BURST}
