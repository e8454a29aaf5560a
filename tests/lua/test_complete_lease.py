"""complete_lease.lua: complete.lua's completions, then lease.lua's leases, in one call."""

from __future__ import annotations

from jobbroker_broker.storage.contracts.leases import PAUSED

from .helpers import JobSpec, LuaQueue, ids


def test_completes_then_leases_the_next_jobs(lua: LuaQueue) -> None:
    lua.add_all(JobSpec(id="a"), JobSpec(id="b"), JobSpec(id="c"))
    first = lua.lease_one()
    last = lua.last_event_id()

    done, leased = lua.complete_lease(("a", first.token, '"r"', ""), max_jobs=5, worker="w2")

    assert [(row.reason, row.state) for row in done] == [("", "completed")]
    assert done[0].run_ms >= 0
    assert lua.job("a")["res"] == '"r"'
    assert lua.where("a") == ["completed"]
    assert ids(leased) == ["b", "c"]
    assert [(job.attempt, job.fence) for job in leased] == [(1, 1), (1, 1)]
    assert lua.held == 0
    for job in leased:
        assert lua.where(job.id) == ["active"]
        assert lua.job(job.id)["tok"] == job.token
        assert lua.job(job.id)["w"] == "w2"
    # complete.lua's event first, then lease.lua's, as two calls would have emitted them.
    events = [(event.type, event.job) for event in lua.events(after=last)]
    assert events == [("completed", "a"), ("active", "b"), ("active", "c"), ("drained", "")]


def test_a_stale_completion_changes_nothing_and_the_lease_still_runs(lua: LuaQueue) -> None:
    lua.add_all(JobSpec(id="a"), JobSpec(id="b"))
    old = lua.lease_one()
    lua.release("a", old.token)
    new = lua.lease_one()  # a again, fence 2
    assert new.id == "a"
    before = lua.job("a")

    done, leased = lua.complete_lease(("a", old.token, "1", ""), ("a", "9-forged", "1", ""))

    assert [(row.reason, row.state, row.run_ms) for row in done] == [
        ("LEASE_SUPERSEDED", "active", 0),
        ("INVALID_FIELD", "active", 0),
    ]
    assert lua.job("a") == before
    assert ids(leased) == ["b"]
    done, leased = lua.complete_lease(("a", new.token, "1", ""), max_jobs=1)
    assert [(row.reason, row.state) for row in done] == [("", "completed")]
    assert leased == []


def test_the_fence_grows_across_leases_of_both_scripts(lua: LuaQueue) -> None:
    lua.add_all(JobSpec(id="a"), JobSpec(id="b"))
    a = lua.lease_one()
    b = lua.lease_one()
    lua.release("b", b.token)

    _, (again,) = lua.complete_lease(("a", a.token, "", ""), max_jobs=1)

    assert (again.id, again.fence) == ("b", 2)
    assert again.token.startswith("2-")
    assert again.token != b.token
    assert lua.complete("b", b.token) == ("LEASE_SUPERSEDED", "active")
    assert lua.complete("b", again.token) == ("", "completed")


def test_completions_free_room_under_the_concurrency_limit(lua: LuaQueue) -> None:
    lua.r.hset(lua.keys.key("meta"), "conc", 1)
    lua.add_all(JobSpec(id="a"), JobSpec(id="b"))
    a = lua.lease_one()
    assert lua.lease() == []  # full

    _, leased = lua.complete_lease(("a", a.token, "", ""), max_jobs=5)

    assert ids(leased) == ["b"]
    assert lua.members("active") == ["b"]


def test_a_paused_queue_completes_and_leases_nothing(lua: LuaQueue) -> None:
    lua.add_all(JobSpec(id="a"), JobSpec(id="b"))
    a = lua.lease_one()
    lua.pause()

    done, leased = lua.complete_lease(("a", a.token, "", ""), max_jobs=5)

    assert [(row.reason, row.state) for row in done] == [("", "completed")]
    assert leased == []
    assert lua.held == PAUSED
    assert lua.where("b") == ["waiting"]


def test_nothing_to_complete_is_a_lease(lua: LuaQueue) -> None:
    lua.add(id="a", attempts=3)

    done, leased = lua.complete_lease(max_jobs=2, lease_ms=5_000)

    assert done == []
    (job,) = leased
    assert (job.id, job.attempt, job.max_attempts, job.fence) == ("a", 1, 3, 1)
    assert job.lease_expires_at - lua.now_ms() <= 5_000
