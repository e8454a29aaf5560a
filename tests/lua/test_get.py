"""get.lua: a job's fields, its log count and the queue's newest event id, atomically."""

from __future__ import annotations

from jobbroker_broker.storage.contracts.jobs import Snapshot

from .helpers import JobSpec, LuaQueue, Update


def test_get_returns_fields_log_count_and_last_event_id(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", name="resize", data='{"w": 1}', attempts=3))
    leased = lua.lease_one()
    lua.report(Update("j", leased.token, percent=30, logs=["one", "two"]))
    lua.add(JobSpec(id="other"))

    snap = lua.get("j")
    assert snap.mapping() == lua.job("j")
    assert snap.mapping()["pp"] == "30"
    assert snap.log_count == 2
    assert snap.last_event_id == lua.last_event_id()
    assert lua.events()[-1].job == "other", "the newest event of the queue, whatever its job"


def test_get_of_a_freshly_added_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    snap = lua.get("j")
    assert snap.mapping()["st"] == "waiting"
    assert snap.log_count == 0
    assert snap.last_event_id == lua.events()[0].id


def test_get_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.get("nope") == Snapshot([], 0, "")
    lua.add(JobSpec(id="j"))
    assert lua.get("nope") == Snapshot([], 0, lua.last_event_id())
