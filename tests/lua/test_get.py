"""get.lua: a job's fields, its log count and the queue's newest event id, atomically."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue, Update


def as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_get_returns_fields_log_count_and_last_event_id(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j", name="resize", data='{"w": 1}', attempts=3))
    leased = lua.lease_one()
    lua.report(Update("j", leased.token, percent=30, logs=["one", "two"]))
    lua.add(JobSpec(id="other"))

    fields, log_count, last_id = lua.get("j")
    assert as_dict(fields) == lua.job("j")
    assert as_dict(fields)["pp"] == "30"
    assert log_count == 2
    assert last_id == lua.last_event_id()
    assert lua.events()[-1].job == "other", "the newest event of the queue, whatever its job"


def test_get_of_a_freshly_added_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="j"))
    fields, log_count, last_id = lua.get("j")
    assert as_dict(fields)["st"] == "waiting"
    assert log_count == 0
    assert last_id == lua.events()[0].id


def test_get_of_an_unknown_job(lua: LuaQueue) -> None:
    assert lua.get("nope") == [[], 0, ""]
    lua.add(JobSpec(id="j"))
    assert lua.get("nope") == [[], 0, lua.last_event_id()]
