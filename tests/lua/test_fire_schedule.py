"""fire_schedule.lua: the job of one occurrence of a schedule is added and the schedule moves on,
exactly once however many replicas race on it (compare-and-set on version and next run)."""

from __future__ import annotations

from jobbroker_broker.storage.contracts.schedules import Fired

from .helpers import JobSpec, LuaQueue, ids, retention


def test_fire_adds_the_occurrences_job_and_moves_the_schedule_on(lua: LuaQueue) -> None:
    template = JobSpec(
        name="report",
        data='{"day": 1}',
        content_type="application/json",
        priority=2,
        attempts=3,
        timeout_ms=5_000,
        on_complete=retention(remove=True),
    )
    lua.put_schedule("daily", version=4, next_run=1_000, spec=template)
    before = lua.now_ms()

    assert lua.fire_schedule("daily", 4, 1_000, 2_000) == Fired(1, "sched:daily:1000", "waiting", 0)
    job = lua.job("sched:daily:1000")
    assert (job["name"], job["data"], job["dct"]) == ("report", '{"day": 1}', "application/json")
    assert (job["st"], job["pri"], job["atm"], job["tmo"]) == ("waiting", "2", "3", "5000")
    assert job["rc"] == "1,0,0"
    assert before <= int(job["ct"]) <= lua.now_ms()
    assert lua.where("sched:daily:1000") == ["waiting"]
    assert [(e.type, e.job, e.fields) for e in lua.events()] == [
        ("added", "sched:daily:1000", {"s": "waiting", "n": "report"})
    ]

    schedule = lua.schedule("daily")
    assert (schedule["v"], schedule["nr"], schedule["runs"]) == ("4", "2000", "1")
    assert lua.score("schedules", "daily") == 2_000
    assert ids(lua.lease()) == ["sched:daily:1000"]


def test_an_occurrence_fires_once_however_many_replicas_race(lua: LuaQueue) -> None:
    lua.put_schedule("s", version=1, next_run=1_000)
    assert lua.fire_schedule("s", 1, 1_000, 2_000).fired == 1
    last = lua.last_event_id()

    assert lua.fire_schedule("s", 1, 1_000, 2_000).fired == 0, "another replica fired it first"
    assert lua.schedule("s")["runs"] == "1"
    assert lua.schedule("s")["nr"] == "2000"
    assert lua.events(after=last) == []
    assert lua.members("waiting") == ["sched:s:1000"]


def test_a_schedule_changed_since_it_was_read_is_not_fired(lua: LuaQueue) -> None:
    lua.put_schedule("s", version=2, next_run=1_000)
    assert lua.fire_schedule("s", 1, 1_000, 2_000).fired == 0, "an upsert changed it"
    assert lua.schedule("s") == {**lua.schedule("s"), "v": "2", "nr": "1000", "runs": "0"}
    assert lua.score("schedules", "s") == 1_000
    assert lua.members("waiting") == []
    assert lua.events() == []


def test_a_removed_schedule_is_not_fired(lua: LuaQueue) -> None:
    assert lua.fire_schedule("gone", 1, 1_000, 2_000).fired == 0
    assert lua.schedule("gone") == {}
    assert lua.members("schedules") == []
    assert lua.members("waiting") == []


def test_the_last_occurrence_ends_the_schedule(lua: LuaQueue) -> None:
    lua.put_schedule("once", next_run=1_000)
    assert lua.fire_schedule("once", 1, 1_000, "") == Fired(1, "sched:once:1000", "waiting", 0)
    assert lua.schedule("once")["nr"] == "0"
    assert lua.score("schedules", "once") == float("inf")


def test_the_job_of_an_occurrence_is_added_at_most_once(lua: LuaQueue) -> None:
    lua.put_schedule("s", version=1, next_run=1_000, spec=JobSpec(name="new"))
    lua.add(JobSpec(id="sched:s:1000", name="old"))
    lua.lease_one()
    last = lua.last_event_id()

    assert lua.fire_schedule("s", 1, 1_000, 2_000) == Fired(1, "sched:s:1000", "active", 1)
    assert lua.job("sched:s:1000")["name"] == "old", "the job there is left as it is"
    assert lua.where("sched:s:1000") == ["active"]
    assert lua.events(after=last) == []
    assert (lua.schedule("s")["runs"], lua.schedule("s")["nr"]) == ("1", "2000")


def test_a_delayed_template_adds_a_delayed_job(lua: LuaQueue) -> None:
    lua.put_schedule("s", next_run=1_000, spec=JobSpec(delay_ms=60_000, lifespan_ms=120_000))
    before = lua.now_ms()
    assert lua.fire_schedule("s", 1, 1_000, 2_000) == Fired(1, "sched:s:1000", "delayed", 0)
    job = lua.job("sched:s:1000")
    created = int(job["ct"])
    assert before <= created <= lua.now_ms()
    assert lua.score("delayed", "sched:s:1000") == int(job["ra"]) == created + 60_000
    assert lua.score("expiring", "sched:s:1000") == created + 120_000
    (added,) = lua.events()
    assert added.fields == {"s": "delayed", "n": "job", "ra": job["ra"]}
