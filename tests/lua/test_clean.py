"""clean.lua: jobs of one state that entered it before a cutoff are removed for good, a bounded
batch per call; finished jobs oldest first, waiting and delayed ones scanned from a cursor and
judged by creation time. The last call emits one `cleaned` event with the total."""

from __future__ import annotations

import time

import pytest

from .helpers import JobSpec, LuaQueue, ids

GRACE_MS = 100


def wait_until(lua: LuaQueue, at_ms: int) -> None:
    """Poll Redis' clock (the scripts' one) until it reads ``at_ms`` or later."""
    while lua.now_ms() < at_ms:
        time.sleep(0.005)


def finish(lua: LuaQueue, job_id: str, state: str) -> None:
    """Add job ``job_id`` and bring it to a finished ``state``."""
    lua.add(JobSpec(id=job_id))
    if state == "cancelled":
        lua.cancel(job_id)
        return
    leased = lua.lease_one()
    assert leased.id == job_id
    if state == "completed":
        lua.complete(job_id, leased.token)
    else:
        lua.fail(job_id, leased.token, no_retry=True)
    assert lua.state(job_id) == state


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
def test_clean_removes_finished_jobs_older_than_the_grace(lua: LuaQueue, state: str) -> None:
    finish(lua, "old", state)
    wait_until(lua, int(lua.job("old")["fa"]) + GRACE_MS)
    finish(lua, "new", state)
    last = lua.last_event_id()

    assert lua.clean(state, grace_ms=GRACE_MS) == (-1, ["old"])
    assert lua.job("old") == {}
    assert lua.logs("old") == []
    assert lua.members(state) == ["new"]
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [
        ("cleaned", "", {"s": state, "c": "1"})
    ]


def test_clean_takes_the_oldest_first_and_stops_at_the_limit(lua: LuaQueue) -> None:
    for job_id in ("a", "b", "c"):
        finish(lua, job_id, "completed")
    last = lua.last_event_id()

    cursor, first = lua.clean("completed", limit=2)
    assert (cursor, first) == (0, ["a", "b"]), "a full batch: the caller asks again"
    assert lua.events(after=last) == [], "not the caller's last call: no event yet"
    assert lua.clean("completed", limit=2, before=2) == (-1, ["c"])
    assert lua.members("completed") == []
    assert [(e.type, e.fields) for e in lua.events(after=last)] == [
        ("cleaned", {"s": "completed", "c": "3"})
    ]


def test_the_call_reaching_the_callers_limit_emits_the_event(lua: LuaQueue) -> None:
    for job_id in ("a", "b", "c"):
        finish(lua, job_id, "failed")
    last = lua.last_event_id()
    assert lua.clean("failed", limit=2, before=5, last=True) == (0, ["a", "b"])
    assert [(e.type, e.fields) for e in lua.events(after=last)] == [
        ("cleaned", {"s": "failed", "c": "7"})
    ]
    assert lua.members("failed") == ["c"]


def test_clean_of_waiting_jobs_judges_them_by_creation_time(lua: LuaQueue) -> None:
    # "old" is created first but waits behind "young", which has a better priority.
    lua.add(JobSpec(id="old", priority=5, lifespan_ms=60_000))
    wait_until(lua, int(lua.job("old")["ct"]) + GRACE_MS)
    lua.add(JobSpec(id="young", priority=1))
    last = lua.last_event_id()

    assert lua.clean("waiting", grace_ms=GRACE_MS, limit=1) == (1, ["old"]), (
        "the cursor skips the kept job"
    )
    assert lua.job("old") == {}
    assert lua.members("expiring") == []
    assert lua.members("waiting") == ["young"]
    assert lua.events(after=last) == []
    assert lua.clean("waiting", grace_ms=GRACE_MS, limit=1, before=1, cursor=1) == (-1, [])
    assert [(e.type, e.fields) for e in lua.events(after=last)] == [
        ("cleaned", {"s": "waiting", "c": "1"})
    ]
    assert ids(lua.lease()) == ["young"]


def test_clean_of_delayed_jobs(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="d1", delay_ms=60_000, lifespan_ms=120_000))
    lua.add(JobSpec(id="d2", delay_ms=30_000))
    lua.add(JobSpec(id="now"))

    assert lua.clean("delayed") == (-1, ["d2", "d1"])
    assert lua.members("delayed") == []
    assert lua.members("expiring") == []
    assert lua.job("d1") == {}
    assert lua.where("now") == ["waiting"]
    assert lua.events()[-1].fields == {"s": "delayed", "c": "2"}


def test_clean_with_a_long_grace_removes_nothing(lua: LuaQueue) -> None:
    finish(lua, "done", "completed")
    lua.add(JobSpec(id="w"))
    assert lua.clean("completed", grace_ms=60_000) == (-1, [])
    assert lua.clean("waiting", grace_ms=60_000) == (-1, [])
    assert lua.where("done") == ["completed"]
    assert lua.where("w") == ["waiting"]
    assert [(e.type, e.fields) for e in lua.events()[-2:]] == [
        ("cleaned", {"s": "completed", "c": "0"}),
        ("cleaned", {"s": "waiting", "c": "0"}),
    ]
