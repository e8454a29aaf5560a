"""One error vocabulary: the ``ErrorReason`` enum of error_reason.proto.

The broker's error classes, the reasons its Lua scripts answer with, the Python client's map
and the docs' table all name exactly the reasons of the enum, so a reason added to the contract
that one of them misses (or a name spelled differently in one place) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from jobbroker import errors as client_errors
from jobbroker.v1 import error_reason_pb2 as er
from jobbroker_broker import errors
from jobbroker_broker.storage.scripts import SCRIPT_NAMES, load_script

ROOT = Path(__file__).resolve().parents[2]
ENUM = {
    name.removeprefix("ERROR_REASON_")
    for name in er.ErrorReason.DESCRIPTOR.values_by_name
    if name != "ERROR_REASON_UNSPECIFIED"
}
LUA_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
LUA_WORD = re.compile(r"'([A-Z][A-Z_]*)'")


def broker_classes() -> list[type[errors.BrokerError]]:
    found: list[type[errors.BrokerError]] = []
    pending = [errors.BrokerError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def lua_reasons() -> set[str]:
    """The all-caps words with an underscore in the scripts' code: Redis' own words (ZADD,
    BYSCORE) have none, every ErrorReason name has one."""
    words: set[str] = set()
    for name in SCRIPT_NAMES:
        code = LUA_COMMENT.sub("", load_script(name).source)
        words.update(w for w in LUA_WORD.findall(code) if "_" in w)
    return words


def test_every_reason_of_the_enum_has_an_underscore() -> None:
    # lua_reasons() tells reasons from Redis words by it.
    assert all("_" in name for name in ENUM)


def test_the_broker_has_one_error_class_per_reason_of_the_enum() -> None:
    concrete = [cls for cls in broker_classes() if "reason" in vars(cls) and cls.reason]
    reasons = [cls.reason for cls in concrete]
    assert sorted(reasons) == sorted(ENUM)
    assert errors.REASONS == ENUM


def test_abstract_broker_errors_carry_no_reason() -> None:
    for cls in (errors.BrokerError, errors.FailedPrecondition, errors.Unauthenticated):
        assert cls.reason == ""


def test_the_scripts_answer_only_with_reasons_of_the_enum() -> None:
    reasons = lua_reasons()
    assert reasons, "no reason found in the scripts: the scan is broken"
    assert reasons <= ENUM, sorted(reasons - ENUM)


@pytest.mark.parametrize("reason", sorted(lua_reasons() - {"JOB_ID_CONFLICT"}))
def test_every_script_reason_becomes_its_own_error_class(reason: str) -> None:
    # JOB_ID_CONFLICT is add.lua's, answered by the store as AlreadyExists (test_add).
    error = errors.item_error(reason, "q", "7", "active")
    assert error.reason == reason
    assert type(error).reason == reason, "one class per reason, not a class with another's"
    assert error.code == type(error).code, "the code is the class's, never overwritten"
    assert error.metadata["queue"] == "q"
    assert error.metadata["job_id"] == "7"


def test_a_script_refusal_keeps_its_status_code_and_message() -> None:
    expired = errors.item_error("LEASE_EXPIRED", "q", "7", "")
    assert isinstance(expired, errors.LeaseExpired)
    assert expired.code == grpc.StatusCode.FAILED_PRECONDITION
    assert expired.message == "the lease on job 7 is no longer valid (job is gone)"
    missing = errors.item_error("JOB_NOT_FOUND", "q", "7", "")
    assert isinstance(missing, errors.NotFound)
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert missing.message == "job 7 not found in queue q"
    forged = errors.item_error("INVALID_FIELD", "q", "7", "active")
    assert isinstance(forged, errors.InvalidArgument)
    assert forged.code == grpc.StatusCode.INVALID_ARGUMENT
    assert forged.metadata == {"field": "token", "queue": "q", "job_id": "7"}
    assert forged.message.startswith("token: no lease on job 7 was given with this token")


def client_class(reason: str) -> type[client_errors.JobBrokerError]:
    """The class the client raises for a reason, whatever the status code (UNKNOWN: only its
    reason map can tell)."""
    return type(client_errors.error_from_reason(grpc.StatusCode.UNKNOWN, reason, "m"))


@pytest.mark.parametrize("reason", sorted(ENUM))
def test_the_client_maps_every_reason_of_the_enum(reason: str) -> None:
    error = client_errors.error_from_reason(grpc.StatusCode.UNKNOWN, reason, "m")
    assert type(error) is not client_errors.JobBrokerError, f"{reason} is not in the client's map"
    assert error.reason == reason
    # A class named for one reason says so itself; a shared one (Unauthenticated for every
    # TOKEN_*) keeps the reason it was raised with.
    if sum(client_class(other) is type(error) for other in ENUM) == 1:
        assert type(error).reason == reason


@pytest.mark.parametrize("reason", sorted(ENUM))
def test_broker_and_client_agree_on_each_reasons_status_code(reason: str) -> None:
    (broker_cls,) = [c for c in broker_classes() if "reason" in vars(c) and c.reason == reason]
    assert client_class(reason).code == broker_cls.code


def test_the_docs_list_every_reason() -> None:
    text = (ROOT / "docs" / "jobs.md").read_text(encoding="utf-8")
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    named = {word for line in table for word in re.findall(r"`([A-Z][A-Z_]+)`", line)}
    assert named >= ENUM, sorted(ENUM - named)
