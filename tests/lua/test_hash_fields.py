"""The fields the scripts read and write in a job's hash and a queue's meta hash are the ones
contracts/hashes.py declares, and every declared field is used.

The scan reads the hash commands of every script (HGET, HMGET, HSET, HSETNX, HDEL, HINCRBY and
check_lease) whose key is a job hash (``jkey``, ``job_key(...)``) or the meta hash (``meta``,
``k.meta`` in a lib/ loop given the keys as a table, the KEYS entry the contract names
``meta``), and takes their field names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from jobbroker_broker.storage.contracts import CONTRACTS
from jobbroker_broker.storage.contracts.hashes import JOB_FIELDS, META_FIELDS
from jobbroker_broker.storage.contracts.schedules import TEMPLATE_OPTIONS
from jobbroker_broker.storage.scripts import SCRIPT_NAMES

from .helpers import script
from .test_keys_contract import code_of

CALL = re.compile(r"(?<!function )\b(redis\.call|check_lease)\(")
LITERAL = re.compile(r"^'([^']*)'$")
# Where each command's field names are among the arguments after the key.
EVERY = "every"
FIELDS = {"HGET": EVERY, "HMGET": EVERY, "HDEL": EVERY, "HSET": "pairs", "HSETNX": "first"}
FIELDS["HINCRBY"] = "first"


def calls(code: str) -> Iterator[list[str]]:
    """The arguments of each redis.call(...) and check_lease(...), split at top-level commas
    (nested calls are scanned too)."""
    for match in CALL.finditer(code):
        depth, start, args = 1, match.end(), []
        i = start
        quoted = False
        while depth:
            char = code[i]
            if char == "'":
                quoted = not quoted
            elif not quoted and char in "({":
                depth += 1
            elif not quoted and char in ")}":
                depth -= 1
            elif not quoted and char == "," and depth == 1:
                args.append(code[start:i].strip())
                start = i + 1
            i += 1
        args.append(code[start : i - 1].strip())
        if match.group(1) == "check_lease":
            # check_lease(jkey, token, now, ...) reads st, tok, le and the fields after now
            yield ["'HMGET'", args[0], "'st'", "'tok'", "'le'", *args[3:]]
        else:
            yield args


def fields_of(args: list[str]) -> list[str]:
    rule = FIELDS[LITERAL.match(args[0]).group(1)]  # type: ignore[union-attr]
    after = args[2:]
    if rule == "first":
        after = after[:1]
    elif rule == "pairs":
        after = after[::2]
    names = []
    for arg in after:
        if arg.startswith("unpack(") or arg == "...":
            break  # a prepared list (lib/finish.lua's hset), or check_lease's own extra fields
        literal = LITERAL.match(arg)
        assert literal, f"a field name that is not a literal: {arg} in {args}"
        names.append(literal.group(1))
    return names


def used_fields(name: str) -> tuple[set[str], set[str]]:
    """(job hash fields, meta hash fields) the script's code names."""
    meta_keys = {"meta", "k.meta", "KEYS[1] .. 'meta'"}
    meta_keys.update(
        f"KEYS[{i}]" for i, key in enumerate(CONTRACTS[name].keys, start=1) if key == "meta"
    )
    job, meta = set(), set()
    for args in calls(code_of(script(name))):
        command = LITERAL.match(args[0])
        if command is None or command.group(1) not in FIELDS:
            continue
        key = args[1]
        if key == "jkey" or key.startswith("job_key("):
            job.update(fields_of(args))
        elif key in meta_keys:
            meta.update(fields_of(args))
    return job, meta


def lua_list(name: str, variable: str) -> list[str]:
    match = re.search(rf"local {variable} = \{{([^}}]*)\}}", code_of(script(name)))
    assert match, f"{name}.lua has no {variable}"
    return [LITERAL.match(item.strip()).group(1) for item in match.group(1).split(",")]  # type: ignore[union-attr]


def all_used() -> tuple[set[str], set[str]]:
    job, meta = set(), set()
    for name in SCRIPT_NAMES:
        more_job, more_meta = used_fields(name)
        job |= more_job
        meta |= more_meta
    return job, meta


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_use_only_declared_job_and_meta_fields(name: str) -> None:
    job, meta = used_fields(name)
    assert job <= {f.decode() for f in JOB_FIELDS}, sorted(job - {f.decode() for f in JOB_FIELDS})
    assert meta <= {f.decode() for f in META_FIELDS}, sorted(
        meta - {f.decode() for f in META_FIELDS}
    )


def test_every_declared_field_is_used_by_a_script() -> None:
    job, meta = all_used()
    # The options a schedule's template holds reach the job hash through write_job's pairs.
    job |= set(lua_list("fire_schedule", "TEMPLATE_OPTIONS"))
    assert {f.decode() for f in JOB_FIELDS} <= job, sorted({f.decode() for f in JOB_FIELDS} - job)
    assert {f.decode() for f in META_FIELDS} <= meta, sorted(
        {f.decode() for f in META_FIELDS} - meta
    )


def test_the_schedule_template_lists_the_options_in_the_same_order() -> None:
    assert lua_list("fire_schedule", "TEMPLATE_OPTIONS") == [f.decode() for f in TEMPLATE_OPTIONS]


def test_the_scan_finds_fields() -> None:
    # A scan that finds nothing would pass the tests above.
    job, meta = all_used()
    assert {"st", "tok", "le", "pri", "res"} <= job
    assert {"paused", "conc", "parked", "reg"} <= meta
