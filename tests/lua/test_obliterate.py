"""obliterate.lua: every job and schedule of a queue is removed, then every key of the queue, a
bounded batch per call; refused while jobs are active unless forced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from .helpers import JobSpec, LuaQueue, Update


def obliterate_all(lua: LuaQueue, batch: int = 100, force: bool = False) -> list[int]:
    """Repeat obliterate.lua the way queue_store.py does; each call's output."""
    outputs = [lua.obliterate(batch, force)]
    while outputs[-1] > 0:
        outputs.append(lua.obliterate(batch, force))
    return outputs


def queue_keys(lua: LuaQueue) -> list[str]:
    pattern = lua.keys.prefix.replace("[", "\\[").replace("]", "\\]") + "*"
    return sorted(cast("bytes", k).decode() for k in lua.r.scan_iter(match=pattern, count=1_000))


@pytest.fixture
def other(lua: LuaQueue) -> Iterator[LuaQueue]:
    """A second queue of the same Redis, which obliterating ``lua`` must not touch."""
    driver = LuaQueue(lua.r, lua.name + "-other")
    yield driver
    driver.delete_all()


def a_bit_of_everything(lua: LuaQueue) -> None:
    """Jobs in every state, logs, events, signals, settings, a pause and two schedules."""
    lua.add(JobSpec(id="done"))
    leased = lua.lease_one()
    lua.report(Update("done", leased.token, logs=["line"]))
    lua.complete("done", leased.token)
    lua.add(JobSpec(id="bad"))
    lua.fail("bad", lua.lease_one().token, no_retry=True)
    lua.add(JobSpec(id="gone"))
    lua.cancel("gone")
    lua.add(JobSpec(id="busy"))
    busy = lua.lease_one()
    lua.cancel("busy")  # a signal for its worker
    assert busy.id == "busy"
    lua.add(JobSpec(id="w", lifespan_ms=60_000))
    lua.add(JobSpec(id="later", delay_ms=60_000))
    lua.add(JobSpec())  # a generated id: the ids counter
    lua.r.hset(lua.keys.key("meta"), "conc", 2)
    lua.pause()
    lua.r.set(lua.keys.key("limiter"), 1)
    lua.worker_seen("w1", lua.name)
    lua.put_schedule("every-minute", next_run=1_000)
    lua.put_schedule("ended", next_run=0)


def test_obliterate_is_refused_while_jobs_are_active(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="busy"))
    lua.add(JobSpec(id="w"))
    lua.lease_one()
    before = queue_keys(lua)

    assert lua.obliterate() == -1
    assert queue_keys(lua) == before
    assert lua.where("busy") == ["active"]
    assert lua.where("w") == ["waiting"]


def test_obliterate_removes_every_key_of_the_queue(lua: LuaQueue, other: LuaQueue) -> None:
    a_bit_of_everything(lua)
    other.add(JobSpec(id="kept"))
    other.put_schedule("kept")
    jobs = ["done", "bad", "gone", "busy", "w", "later", "1"]
    assert all(lua.job(job_id) for job_id in jobs)

    assert obliterate_all(lua, force=True) == [len(jobs) + 2, 0]
    assert queue_keys(lua) == []
    assert lua.where("kept") == []
    assert other.where("kept") == ["waiting"], "another queue is not touched"
    assert other.schedule("kept") != {}
    added = lua.add(JobSpec(id="new"))
    assert added.state == "waiting"
    assert lua.registered_now, "an obliterated queue registers again on its next add"


def test_obliterate_is_bounded(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"j{i}") for i in range(3)))
    lua.add(JobSpec(id="d", delay_ms=60_000))
    lua.put_schedule("s")

    assert lua.obliterate(batch=2) == 2
    assert lua.members("waiting") == ["j2"]
    assert lua.obliterate(batch=2) == 2, "the last waiting job, then the delayed one"
    assert lua.members("delayed") == []
    assert lua.schedule("s") != {}, "schedules go once the jobs are gone"
    assert lua.obliterate(batch=2) == 1
    assert lua.schedule("s") == {}
    assert lua.obliterate(batch=2) == 0
    assert queue_keys(lua) == []


def test_obliterate_of_an_empty_queue(lua: LuaQueue) -> None:
    assert lua.obliterate() == 0
    assert queue_keys(lua) == []
