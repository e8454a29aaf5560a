"""Every script's header, its source and its Python contract
(jobbroker_broker.storage.contracts) say the same: the KEYS, the ARGV by name and the shape of
the reply.

A script that reads a KEYS index its header does not name would touch a key the caller never
passed (a Redis Cluster error at best, a nil key at worst); a named key the source never uses is
a stale header. Local names bound to KEYS[n] or ARGV[n] must be the n-th name of the header. The
contract must name what the header names, in the same order: the broker builds arguments and
reads replies through it, so a field moved in the script but not in Python fails here instead
of silently. The reply's shape is also checked against real replies by every other test here,
which call the scripts through the same contracts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jobbroker_broker.storage import scripts as scripts_module
from jobbroker_broker.storage.contracts import CONTRACTS
from jobbroker_broker.storage.keys import QUEUE_KEY_NAMES, QueueKeys
from jobbroker_broker.storage.scripts import SCRIPT_NAMES, Script

from . import headers
from .helpers import script

KEY_INDEX = re.compile(r"\bKEYS\[(\d+)\]")
ARG_INDEX = re.compile(r"\bARGV\[(\d+)\]")
LUA_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
# `local a, b, c = KEYS[1], KEYS[2], ARGV[1]` (one statement on one line)
LOCAL_ASSIGN = re.compile(r"^[ \t]*local[ \t]+([\w \t,]+?)[ \t]*=[ \t]*(.+)$", re.MULTILINE)
# `{name = KEYS[n], ...}`: a table constructor, and a field bound to a key in it
TABLE = re.compile(r"\{[^{}]*\}")
FIELD_ASSIGN = re.compile(r"(\w+)\s*=\s*KEYS\[(\d+)\]")
# `local b = 3 + i * 4`: where a batch script's i-th item starts, and its width; or
# `local b = first_item + i * 4` in a loop of lib/, with the script's `local first_item = 3`
ITEM_START = re.compile(r"local b = (\d+|first_item) \+ i \* (\d+)")
FIRST_ITEM = re.compile(r"^local first_item = (\d+)$", re.MULTILINE)
# `b = b + 9 + nlogs`: the next item after one with a counted tail
NEXT_ITEM = re.compile(r"\bb = b \+ (\d+) \+ \w+")


def code_of(loaded: Script) -> str:
    """The expanded source without comments (headers mention KEYS[...] in prose)."""
    return LUA_COMMENT.sub("", loaded.source)


def bindings(code: str, table: str) -> list[tuple[str, int]]:
    """(local name, n) for each local bound to ``table[n]`` (KEYS or ARGV), maybe through
    tonumber()."""
    found: list[tuple[str, int]] = []
    for match in LOCAL_ASSIGN.finditer(code):
        names = [n.strip() for n in match.group(1).split(",")]
        values = [v.strip() for v in match.group(2).split(",")]
        if len(names) != len(values):
            continue
        for local, value in zip(names, values, strict=True):
            bound = re.fullmatch(rf"(?:tonumber\()?{table}\[(\d+)\]\)?", value)
            if bound:
                found.append((local, int(bound.group(1))))
    return found


def test_every_script_is_checked() -> None:
    lua_dir = Path(scripts_module.__file__).parent / "lua"
    assert {path.stem for path in lua_dir.glob("*.lua")} == set(SCRIPT_NAMES) == set(CONTRACTS)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_contract_names_the_headers_keys(name: str) -> None:
    assert CONTRACTS[name].keys == headers.parse(name).keys


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_highest_key_index_is_the_number_of_named_keys(name: str) -> None:
    loaded = script(name)
    used = {int(n) for n in KEY_INDEX.findall(code_of(loaded))}
    assert used, f"{name}.lua uses no KEYS"
    assert max(used) == len(loaded.contract.keys), (name, sorted(used), loaded.contract.keys)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_named_key_is_a_queue_key(name: str) -> None:
    key_names = CONTRACTS[name].keys
    assert key_names[0] == "prefix", "KEYS[1] is the queue prefix every job key hangs off"
    assert len(set(key_names)) == len(key_names), key_names
    assert set(key_names) <= QUEUE_KEY_NAMES | {"prefix"}
    keys = script(name).keys(QueueKeys("q"))
    assert keys[0] == "jb:{q}:"
    assert all(key.startswith("jb:{q}:") for key in keys), "one hash tag for every key"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_names_bound_to_keys_match_the_header(name: str) -> None:
    code = code_of(script(name))
    key_names = headers.parse(name).keys
    known = QUEUE_KEY_NAMES | {"prefix"}
    bound = bindings(code, "KEYS")
    for table in TABLE.findall(code):
        bound.extend((field, int(n)) for field, n in FIELD_ASSIGN.findall(table))
    assert bound, f"{name}.lua binds no KEYS to names"
    for local, index in bound:
        if local in known:
            assert key_names[index - 1] == local, (name, local, index, key_names)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_contract_names_the_headers_arguments(name: str) -> None:
    header, contract = headers.parse(name), CONTRACTS[name]
    assert contract.arg_names == header.args
    assert contract.per == header.per
    assert contract.item_names == header.item


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_source_reads_the_arguments_the_header_names(name: str) -> None:
    header = headers.parse(name)
    code = code_of(script(name))
    used = {int(n) for n in ARG_INDEX.findall(code)}
    assert max(used) == len(header.args), (name, sorted(used), header.args)
    for local, index in bindings(code, "ARGV"):
        if local in header.args:
            assert header.args[index - 1] == local, (name, local, index, header.args)


@pytest.mark.parametrize("name", [n for n in SCRIPT_NAMES if CONTRACTS[n].item is not None])
def test_the_source_steps_through_items_as_wide_as_the_contracts(name: str) -> None:
    contract = CONTRACTS[name]
    code = code_of(script(name))
    first = len(contract.arg_names) + 1
    if contract.counted_tail:
        # `local b = <first>`, then past the values before the tail, its count and the tail
        assert re.search(rf"\blocal b = {first}\n", code), name
        assert [int(n) for n in NEXT_ITEM.findall(code)] == [len(contract.item_names)], name
    else:
        starts = [
            (FIRST_ITEM.findall(code) if start == "first_item" else [start], width)
            for start, width in ITEM_START.findall(code)
        ]
        assert starts == [([str(first)], str(len(contract.item_names)))], name


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_contract_decodes_the_reply_the_header_names(name: str) -> None:
    assert CONTRACTS[name].layout == headers.parse(name).layout
