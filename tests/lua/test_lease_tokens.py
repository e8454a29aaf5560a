"""check_lease (lib/base.lua), through every script that takes a lease token: a token the
broker never issued for the job is INVALID_FIELD (the token), only an older lease's token is
LEASE_SUPERSEDED, and neither changes anything."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .helpers import JobSpec, Leased, LuaQueue, Update

Check = Callable[[LuaQueue, str], tuple[str, str]]
"""Send ``token`` for job "j" through one script; its (reason, state)."""

SCRIPTS: dict[str, Check] = {
    "complete": lambda lua, token: lua.complete("j", token),
    "fail": lambda lua, token: lua.fail("j", token)[:2],
    "release": lambda lua, token: lua.release("j", token),
    "report": lambda lua, token: lua.report(Update("j", token, percent=50, logs=["x"]))[0],
}


def leased_twice(lua: LuaQueue) -> tuple[Leased, Leased]:
    """Job "j" leased, given back, and leased again: fences 1 and 2."""
    lua.add(JobSpec(id="j"))
    first = lua.lease_one()
    lua.release("j", first.token)
    second = lua.lease_one(rand="again")
    assert (first.fence, second.fence) == (1, 2)
    return first, second


def refuses_without_a_trace(lua: LuaQueue, check: Check, token: str) -> tuple[str, str]:
    before, last = lua.job("j"), lua.last_event_id()
    answer = check(lua, token)
    assert lua.job("j") == before
    assert lua.events(after=last) == []
    return answer


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "token",
    [
        "3-aaaa1",  # a fence above the newest lease's
        "2-aaaa1",  # the newest lease's fence, but not its token
        "garbage",  # no fence at all
        "0-aaaa1",  # fence 0: never given
    ],
)
def test_a_token_never_issued_is_not_issued(lua: LuaQueue, script: str, token: str) -> None:
    _, live = leased_twice(lua)
    assert refuses_without_a_trace(lua, SCRIPTS[script], token) == ("INVALID_FIELD", "active")
    assert lua.job("j")["tok"] == live.token


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_token_of_an_older_lease_is_superseded(lua: LuaQueue, script: str) -> None:
    old, _ = leased_twice(lua)
    answer = refuses_without_a_trace(lua, SCRIPTS[script], old.token)
    assert answer == ("LEASE_SUPERSEDED", "active")


@pytest.mark.parametrize("script", SCRIPTS)
def test_any_token_for_a_job_never_leased_is_not_issued(lua: LuaQueue, script: str) -> None:
    lua.add(JobSpec(id="j"))
    answer = refuses_without_a_trace(lua, SCRIPTS[script], "1-aaaa1")
    assert answer == ("INVALID_FIELD", "waiting")


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_live_token_after_its_job_finished_is_expired(lua: LuaQueue, script: str) -> None:
    lua.add(JobSpec(id="j"))
    leased = lua.lease_one()
    assert lua.complete("j", leased.token) == ("", "completed")
    answer = refuses_without_a_trace(lua, SCRIPTS[script], leased.token)
    assert answer == ("LEASE_EXPIRED", "completed")
