"""add.lua: add jobs all or none; idempotent custom ids; the waiting order it sets up."""

from __future__ import annotations

from .helpers import EXPONENTIAL, Added, JobSpec, LuaQueue, ids, retention


def test_add_generates_increasing_ids_and_makes_jobs_waiting(lua: LuaQueue) -> None:
    before = lua.now_ms()
    first = lua.add(name="resize", data='{"w": 1}')
    second = lua.add(name="resize", data='{"w": 2}')
    after = lua.now_ms()

    assert first == Added("1", "waiting", duplicate=False)
    assert second == Added("2", "waiting", duplicate=False)
    job = lua.job("1")
    assert job["name"] == "resize"
    assert job["data"] == '{"w": 1}'
    assert job["st"] == "waiting"
    assert before <= int(job["ct"]) <= after
    assert lua.members("waiting") == ["1", "2"]
    assert lua.where("1") == ["waiting"]


def test_add_emits_added_events_in_order(lua: LuaQueue) -> None:
    lua.add(name="a")
    lua.add(name="b", delay_ms=60_000)

    added = lua.events()
    assert [(e.type, e.job) for e in added] == [("added", "1"), ("added", "2")]
    assert added[0].fields == {"s": "waiting", "n": "a"}
    assert added[1].fields["s"] == "delayed"
    assert added[1].fields["n"] == "b"
    assert added[1].fields["ra"] == lua.job("2")["ra"]


def test_add_stores_options_and_omits_unset_ones(lua: LuaQueue) -> None:
    spec = JobSpec(
        name="n",
        data="raw bytes",
        content_type="application/octet-stream",
        priority=7,
        lifo=True,
        attempts=5,
        backoff_type=EXPONENTIAL,
        backoff_ms=5000,
        jitter=0.25,
        backoff_max_ms=30_000,
        timeout_ms=1500,
        lifespan_ms=60_000,
        on_complete=retention(remove=True),
        on_fail=retention(keep_last=10, keep_age_ms=3600_000),
    )
    job_id = lua.add(spec).id
    job = lua.job(job_id)
    assert job["dct"] == "application/octet-stream"
    assert job["pri"] == "7"
    assert job["lifo"] == "1"
    assert job["atm"] == "5"
    assert (job["bt"], job["bd"], job["bj"], job["bx"]) == ("2", "5000", "0.25", "30000")
    assert job["tmo"] == "1500"
    assert job["lsp"] == "60000"
    assert job["rc"] == "1,0,0"
    assert job["rf"] == "0,10,3600000"

    plain = lua.job(lua.add(name="plain").id)
    assert set(plain) == {"name", "data", "ct", "st"}


def test_add_with_delay_makes_the_job_delayed_until_now_plus_delay(lua: LuaQueue) -> None:
    before = lua.now_ms()
    added = lua.add(delay_ms=5000)
    after = lua.now_ms()

    assert added.state == "delayed"
    run_at = int(lua.job(added.id)["ra"])
    assert before + 5000 <= run_at <= after + 5000
    assert lua.score("delayed", added.id) == run_at
    assert lua.where(added.id) == ["delayed"]


def test_add_with_lifespan_schedules_its_expiry(lua: LuaQueue) -> None:
    added = lua.add(lifespan_ms=10_000)
    created = int(lua.job(added.id)["ct"])
    assert lua.score("expiring", added.id) == created + 10_000
    assert lua.score("expiring", lua.add(delay_ms=100, lifespan_ms=500).id) is not None
    assert lua.score("expiring", lua.add().id) is None


def test_custom_id_with_same_name_and_data_returns_the_existing_job(lua: LuaQueue) -> None:
    spec = JobSpec(id="order-7", name="charge", data='{"cents": 100}')
    assert lua.add(spec) == Added("order-7", "waiting", duplicate=False)
    before = lua.job("order-7")
    last = lua.last_event_id()

    assert lua.add(spec) == Added("order-7", "waiting", duplicate=True)
    assert lua.job("order-7") == before
    assert lua.members("waiting") == ["order-7"]
    assert [(e.type, e.job) for e in lua.events(after=last)] == [("duplicated", "order-7")]


def test_duplicate_reports_the_existing_jobs_current_state(lua: LuaQueue) -> None:
    spec = JobSpec(id="later", delay_ms=60_000)
    lua.add(spec)
    assert lua.add(spec) == Added("later", "delayed", duplicate=True)

    lua.add(JobSpec(id="done"))
    leased = lua.lease_one()
    lua.complete(leased.id, leased.token)
    assert lua.add(JobSpec(id="done")) == Added("done", "completed", duplicate=True)


def test_custom_id_conflict_writes_nothing(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="x", name="charge", data='{"cents": 100}'))
    before_ids = lua.r.get(lua.keys.key("ids"))
    last = lua.last_event_id()

    for conflicting in (
        JobSpec(id="x", name="charge", data='{"cents": 200}'),
        JobSpec(id="x", name="refund", data='{"cents": 100}'),
        JobSpec(id="x", name="charge", data='{"cents": 100}', content_type="text/plain"),
    ):
        reply = lua.add_reply(JobSpec(name="innocent"), conflicting, JobSpec(id="y"))
        assert reply.rows == [Added("x", "JOB_ID_CONFLICT", 0)], "the conflict is the only row"
        assert reply.then.registered == 0

    assert lua.r.get(lua.keys.key("ids")) == before_ids
    assert lua.members("waiting") == ["x"]
    assert lua.job("y") == {}
    assert lua.events(after=last) == []
    assert lua.job("x")["data"] == '{"cents": 100}'


def test_same_custom_id_twice_in_one_batch(lua: LuaQueue) -> None:
    same = JobSpec(id="twin", data="{}")
    assert lua.add_all(same, same) == [
        Added("twin", "waiting", duplicate=False),
        Added("twin", "waiting", duplicate=True),
    ]
    assert lua.event_types() == ["added", "duplicated"]

    reply = lua.add_reply(JobSpec(id="pair", data="1"), JobSpec(id="pair", data="2"))
    assert reply.rows == [Added("pair", "JOB_ID_CONFLICT", 0)]
    assert lua.job("pair") == {}


def test_batch_is_added_in_order(lua: LuaQueue) -> None:
    added = lua.add_all(
        JobSpec(name="a"), JobSpec(id="custom", name="b"), JobSpec(name="c", delay_ms=1000)
    )
    assert added == [
        Added("1", "waiting", False),
        Added("custom", "waiting", False),
        Added("2", "delayed", False),
    ]


def drain_order(lua: LuaQueue) -> list[str]:
    """The order in which lease hands out every waiting job."""
    return ids(lua.lease(max_jobs=1000))


def test_fifo_within_one_priority(lua: LuaQueue) -> None:
    for n in range(5):
        lua.add(JobSpec(id=f"j{n}"))
    assert drain_order(lua) == ["j0", "j1", "j2", "j3", "j4"]


def test_unprioritized_first_then_priority_one_two_and_on(lua: LuaQueue) -> None:
    for job_id, priority in [
        ("p3", 3),
        ("none-a", 0),
        ("p1-a", 1),
        ("p1000000", 1_000_000),
        ("p2", 2),
        ("p1-b", 1),
        ("none-b", 0),
    ]:
        lua.add(JobSpec(id=job_id, priority=priority))
    assert drain_order(lua) == ["none-a", "none-b", "p1-a", "p1-b", "p2", "p3", "p1000000"]


def test_fifo_holds_in_the_lowest_priority_band(lua: LuaQueue) -> None:
    # Scores near 1e6 * 2^33 use all 53 bits of a double: the sequence must still count.
    for n in range(5):
        lua.add(JobSpec(id=f"low{n}", priority=1_000_000))
    lua.add(JobSpec(id="low-lifo", priority=1_000_000, lifo=True))
    assert drain_order(lua) == ["low-lifo", "low0", "low1", "low2", "low3", "low4"]


def test_lifo_jobs_go_first_within_their_priority_newest_first(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="fifo-1"))
    lua.add(JobSpec(id="lifo-1", lifo=True))
    lua.add(JobSpec(id="fifo-2"))
    lua.add(JobSpec(id="lifo-2", lifo=True))
    lua.add(JobSpec(id="p1-fifo", priority=1))
    lua.add(JobSpec(id="p1-lifo", priority=1, lifo=True))
    assert drain_order(lua) == ["lifo-2", "lifo-1", "fifo-1", "fifo-2", "p1-lifo", "p1-fifo"]


def test_order_is_kept_after_the_waiting_set_drains(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="a"))
    assert drain_order(lua) == ["a"]
    for job_id in ("b", "c", "d"):
        lua.add(JobSpec(id=job_id))
    lua.add(JobSpec(id="e", lifo=True))
    assert drain_order(lua) == ["e", "b", "c", "d"]


def test_each_on_its_own_a_conflict_fails_only_that_job(lua: LuaQueue) -> None:
    lua.add(JobSpec(id="x", name="charge", data='{"cents": 100}'))
    reply = lua.add_reply(
        JobSpec(name="innocent"),
        JobSpec(id="x", name="charge", data='{"cents": 200}'),
        JobSpec(id="x", name="charge", data='{"cents": 100}'),
        JobSpec(id="y", data="1"),
        JobSpec(id="y", data="2"),
        JobSpec(name="last", lifo=True),
        each=True,
    )
    assert reply.then.registered == 0
    assert reply.rows == [
        Added("1", "waiting", 0),
        Added("x", "JOB_ID_CONFLICT", 0),
        Added("x", "waiting", 1),
        Added("y", "waiting", 0),
        Added("y", "JOB_ID_CONFLICT", 0),
        Added("2", "waiting", 0),
    ]
    assert lua.job("x")["data"] == '{"cents": 100}'
    assert lua.job("y")["data"] == "1"
    assert lua.members("waiting") == ["2", "x", "1", "y"]
    assert lua.event_types() == ["added", "added", "duplicated", "added", "added"]
