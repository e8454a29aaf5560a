"""pause.lua: a paused queue leases nothing, on every replica; resuming lets leasing go on."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue, ids


def test_pause_stops_leasing_and_emits_paused(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    last = lua.last_event_id()

    assert lua.pause() == 1
    assert lua.r.hget(lua.keys.key("meta"), "paused") == b"1"
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [("paused", "", {})]
    assert lua.lease() == []
    assert lua.held == -1, "leasing says the queue is paused"
    assert lua.where("j") == ["waiting"]


def test_pausing_a_paused_queue_changes_nothing(lua: LuaQueue) -> None:
    lua.pause()
    last = lua.last_event_id()
    assert lua.pause() == 0
    assert lua.r.hget(lua.keys.key("meta"), "paused") == b"1"
    assert lua.events(after=last) == []


def test_resume_lets_leasing_go_on_and_emits_resumed(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    lua.pause()
    last = lua.last_event_id()

    assert lua.pause(False) == 1
    assert lua.r.hexists(lua.keys.key("meta"), "paused") == 0
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [("resumed", "", {})]
    assert ids(lua.lease()) == ["j"]


def test_resuming_a_queue_that_is_not_paused_changes_nothing(lua: LuaQueue) -> None:
    assert lua.pause(False) == 0
    assert lua.r.exists(lua.keys.key("meta")) == 0
    assert lua.events() == []


def test_pause_keeps_the_queue_settings(lua: LuaQueue) -> None:
    lua.r.hset(lua.keys.key("meta"), mapping={"conc": 3, "reg": 1})
    lua.pause()
    lua.pause(False)
    assert lua.r.hgetall(lua.keys.key("meta")) == {b"conc": b"3", b"reg": b"1"}
