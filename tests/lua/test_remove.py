"""remove.lua: remove a job that is not active, with its logs."""

from __future__ import annotations

import pytest

from .helpers import JobSpec, LuaQueue


def make(lua: LuaQueue, state: str) -> None:
    """Job "j" in ``state``, with a log line."""
    if state == "delayed":
        lua.add(JobSpec(id="j", delay_ms=60_000, lifespan_ms=120_000))
    else:
        lua.add(JobSpec(id="j", lifespan_ms=60_000))
    lua.r.rpush(lua.keys.logs("j"), "a line")
    if state in ("completed", "failed"):
        leased = lua.lease_one()
        if state == "completed":
            lua.complete("j", leased.token)
        else:
            lua.fail("j", leased.token)
    elif state == "cancelled":
        lua.cancel("j")
    assert lua.state("j") == state


@pytest.mark.parametrize("state", ["waiting", "delayed", "completed", "failed", "cancelled"])
def test_remove_deletes_the_job_from_every_state(lua: LuaQueue, state: str) -> None:
    make(lua, state)
    assert lua.remove("j") == ("", state)
    assert lua.job("j") == {}
    assert lua.logs("j") == []
    assert lua.where("j") == []
    removed = lua.events("j")[-1]
    assert (removed.type, removed.fields) == ("removed", {"s": state})
    assert lua.remove("j") == ("JOB_NOT_FOUND", "")


def test_active_job_cannot_be_removed(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    last = lua.last_event_id()
    assert lua.remove("j") == ("JOB_ACTIVE", "active")
    assert lua.where("j") == ["active"]
    assert lua.events(after=last) == []
    assert lua.complete("j", leased.token) == ("", "completed")


def test_remove_leaves_other_jobs_alone(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    lua.add(JobSpec(id="k"))
    lua.remove("j")
    assert lua.members("waiting") == ["k"]
    assert lua.state("k") == "waiting"


def test_remove_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.remove("nope") == ("JOB_NOT_FOUND", "")
    assert lua.events() == []
