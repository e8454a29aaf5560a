"""Concurrent reads of one key share calls, each answer from a read sent after its caller
arrived (jobbroker_broker.storage.coalesce)."""

from __future__ import annotations

import asyncio

import pytest
from jobbroker_broker.storage.coalesce import Coalesced


class Source:
    """A read that counts its calls, answers the value current when it was sent, and can be
    held open until released."""

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def read(self, key: str) -> tuple[str, int]:
        self.calls += 1
        seen = self.value
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return key, seen


async def test_a_lone_read_is_sent_at_once() -> None:
    source = Source()
    read = Coalesced(source.read)
    assert await read("a") == ("a", 0)
    assert await read("a") == ("a", 0)
    assert source.calls == 2


async def test_callers_arriving_during_a_read_share_the_next_one_sent_after_them() -> None:
    source = Source()
    read = Coalesced(source.read)
    source.release.clear()
    first = asyncio.ensure_future(read("a"))
    await asyncio.sleep(0)
    source.value = 1  # changed after the first read was sent: later callers must see it
    later = [asyncio.ensure_future(read("a")) for _ in range(50)]
    await asyncio.sleep(0)
    source.release.set()
    assert await first == ("a", 0)
    assert await asyncio.gather(*later) == [("a", 1)] * 50
    assert source.calls == 2


async def test_keys_are_read_apart() -> None:
    source = Source()
    read = Coalesced(source.read)
    source.release.clear()
    calls = [asyncio.ensure_future(read(key)) for key in ("a", "b", "c")]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*calls) == [("a", 0), ("b", 0), ("c", 0)]
    assert source.calls == 3


async def test_a_failed_read_fails_every_caller_of_it_and_the_key_recovers() -> None:
    source = Source()
    read = Coalesced(source.read)
    source.release.clear()
    first = asyncio.ensure_future(read("a"))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(read("a")) for _ in range(3)]
    await asyncio.sleep(0)
    source.fail = RuntimeError("redis down")
    source.release.set()
    for call in (first, *waiting):
        with pytest.raises(RuntimeError, match="redis down"):
            await call
    source.fail = None
    assert await read("a") == ("a", 0)


async def test_a_caller_that_goes_away_does_not_stop_the_others() -> None:
    source = Source()
    read = Coalesced(source.read)
    source.release.clear()
    first = asyncio.ensure_future(read("a"))
    await asyncio.sleep(0)
    gone, staying = asyncio.ensure_future(read("a")), asyncio.ensure_future(read("a"))
    await asyncio.sleep(0)
    first.cancel()  # the lone reader leaves mid-read: the waiting callers still get theirs
    gone.cancel()
    source.release.set()
    assert await staying == ("a", 0)
    with pytest.raises(asyncio.CancelledError):
        await gone
