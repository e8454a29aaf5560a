"""drain.lua: waiting jobs (and delayed ones when asked) are removed for good, a bounded batch
per call; the call that finds fewer than a batch emits one `purged` event with the total."""

from __future__ import annotations

from .helpers import JobSpec, LuaQueue, Update, ids


def drain_all(lua: LuaQueue, batch: int, delayed: bool = False) -> list[int]:
    """Repeat drain.lua the way queue_store.py does; each call's output."""
    outputs: list[int] = []
    while True:
        removed = lua.drain(batch, delayed, sum(outputs))
        outputs.append(removed)
        if removed < batch:
            return outputs


def test_drain_removes_waiting_jobs_and_their_keys(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="busy"))
    assert lua.lease_one().id == "busy"
    lua.add(JobSpec(id="logged"))
    logged = lua.lease_one()
    lua.report(Update("logged", logged.token, logs=["line"]))
    lua.release("logged", logged.token)
    assert lua.logs("logged") == ["line"]
    lua.add(JobSpec(id="short", lifespan_ms=60_000))
    lua.add(JobSpec(id="later", delay_ms=60_000))
    last = lua.last_event_id()

    assert lua.drain() == 2
    for job_id in ("logged", "short"):
        assert lua.job(job_id) == {}
        assert lua.where(job_id) == []
        assert lua.logs(job_id) == []
    assert lua.where("later") == ["delayed"], "delayed jobs stay unless asked"
    assert lua.where("busy") == ["active"], "active jobs are not drained"
    assert [(e.type, e.job, e.fields) for e in lua.events(after=last)] == [
        ("purged", "", {"c": "2"})
    ]


def test_drain_with_delayed_removes_them_too(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="now"))
    lua.add(JobSpec(id="later", delay_ms=60_000, lifespan_ms=120_000))
    assert lua.members("expiring") == ["later"]

    assert lua.drain(delayed=True) == 2
    assert lua.job("later") == {}
    assert lua.members("delayed") == []
    assert lua.members("expiring") == []
    assert lua.events()[-1].fields == {"c": "2"}


def test_drain_is_bounded_and_emits_one_event_with_the_total(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"j{i}") for i in range(5)))
    last = lua.last_event_id()

    assert drain_all(lua, batch=2) == [2, 2, 1]
    assert lua.members("waiting") == []
    assert [(e.type, e.fields) for e in lua.events(after=last)] == [("purged", {"c": "5"})]


def test_drain_of_a_multiple_of_the_batch_ends_with_an_empty_call(lua: LuaQueue) -> None:
    lua.add_all(*(JobSpec(id=f"j{i}") for i in range(4)))
    last = lua.last_event_id()
    assert drain_all(lua, batch=2) == [2, 2, 0]
    assert [(e.type, e.fields) for e in lua.events(after=last)] == [("purged", {"c": "4"})]


def test_drain_takes_the_jobs_that_would_be_leased_first(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="low", priority=5))
    lua.add(JobSpec(id="high", priority=1))
    assert lua.drain(batch=1) == 1
    assert lua.job("high") == {}
    assert ids(lua.lease()) == ["low"]


def test_drain_of_an_empty_queue(lua: LuaQueue) -> None:
    assert lua.drain(delayed=True) == 0
    assert [(e.type, e.fields) for e in lua.events()] == [("purged", {"c": "0"})]
