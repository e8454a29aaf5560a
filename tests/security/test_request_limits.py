"""The gate's limits: message size, open streams per caller, request rate; each answered with
RESOURCE_EXHAUSTED naming the limit, and a flood from one caller does not stall the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from jobbroker import AsyncClient, LimitExceeded

from .conftest import Secured, start_secured


@pytest.fixture
async def limited(redis_url: str, tmp_path: Path) -> object:
    running = await start_secured(
        redis_url,
        tmp_path / "tokens.toml",
        max_message_bytes=4096,
        max_streams_per_token=2,
        rate_limit=50,
        rate_limit_burst=50,
    )
    yield running
    for client in running.clients:
        await client.close()
    await running.broker.stop(0.5)


async def test_a_message_over_max_message_bytes_is_refused_naming_the_limit(
    limited: Secured, queue: str
) -> None:
    token, _ = limited.token(f"producer:{queue}")
    client = limited.client(token)
    with pytest.raises(LimitExceeded) as caught:
        await client.add(queue, "job", {"blob": "x" * 5000})
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.limit == "max_message_bytes"
    assert "max_message_bytes" in caught.value.message
    await client.add(queue, "job", {"blob": "x" * 1000})  # under it: fine


async def test_streams_over_max_streams_per_token_are_refused(limited: Secured, queue: str) -> None:
    token, _ = limited.token(f"producer:{queue}")
    client = limited.client(token)
    added = await client.add(queue, "job", {})

    async def follow() -> None:
        async for _ in client.stream_progress(queue, added.job_id):
            pass

    open_streams = [asyncio.create_task(follow()) for _ in range(2)]
    await asyncio.sleep(0.3)
    with pytest.raises(LimitExceeded) as caught:
        await follow()
    assert caught.value.limit == "max_streams_per_token"
    # Another token has its own allowance.
    other, _ = limited.token(f"read:{queue}", name="other")
    other_client = limited.client(other)
    third = asyncio.create_task(_first_item(other_client, queue, added.job_id))
    await asyncio.wait_for(third, 5)
    for task in open_streams:
        task.cancel()
    await asyncio.gather(*open_streams, return_exceptions=True)


async def _first_item(client: AsyncClient, queue: str, job_id: str) -> object:
    async for item in client.stream_progress(queue, job_id):
        return item
    return None


async def test_calls_over_the_rate_limit_are_refused_naming_it(
    limited: Secured, queue: str
) -> None:
    token, _ = limited.token(f"producer:{queue}")
    client = limited.client(token)
    results = await asyncio.gather(
        *(client.queue(queue) for _ in range(200)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert refused, "200 calls at once exceed a burst of 50"
    assert all(r.limit == "rate_limit" for r in refused)
    assert len(results) - len(refused) >= 50
    assert not [r for r in results if isinstance(r, Exception) and r not in refused]


async def test_a_flood_from_one_token_does_not_stall_another(limited: Secured, queue: str) -> None:
    flood_token, _ = limited.token(f"producer:{queue}", name="flood")
    calm_token, _ = limited.token(f"producer:{queue}", name="calm")
    flooder = limited.client(flood_token)
    calm = limited.client(calm_token)
    stop = asyncio.Event()
    refused = 0

    async def flood() -> None:
        # One RPC per call: concurrent adds would travel together as one AddBulk, and on a
        # slow machine 100 of them might stay under the request rate.
        nonlocal refused
        while not stop.is_set():
            try:
                await flooder.queue(queue)
            except LimitExceeded:
                refused += 1

    flooders = [asyncio.create_task(flood()) for _ in range(100)]
    try:
        await asyncio.sleep(0.5)
        slowest = 0.0
        for _ in range(20):  # well under the calm token's own rate
            started = time.perf_counter()
            await calm.add(queue, "calm", {})
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*flooders, return_exceptions=True)
    assert refused > 0, "the flood was limited"
    # Liveness, not speed: every calm call went through while the flood went on.
    assert slowest < 2.0
