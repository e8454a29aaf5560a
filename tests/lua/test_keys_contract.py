"""Every script's ``Keys:`` header line matches the KEYS its source really uses.

A script that reads a KEYS index its header does not name would touch a key the caller never
passed (a Redis Cluster error at best, a nil key at worst); a named key the source never uses is
a stale header. Local names bound to KEYS[n] must also be the n-th key of the header.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jobbroker_broker import scripts as scripts_module
from jobbroker_broker.keys import QUEUE_KEY_NAMES, QueueKeys
from jobbroker_broker.scripts import SCRIPT_NAMES, Script

from .helpers import script

KEY_INDEX = re.compile(r"\bKEYS\[(\d+)\]")
LUA_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
# `local a, b, c = KEYS[1], KEYS[2], ARGV[1]` (one statement on one line)
LOCAL_ASSIGN = re.compile(r"^[ \t]*local[ \t]+([\w \t,]+?)[ \t]*=[ \t]*(.+)$", re.MULTILINE)
# `{name = KEYS[n], ...}`: a table constructor, and a field bound to a key in it
TABLE = re.compile(r"\{[^{}]*\}")
FIELD_ASSIGN = re.compile(r"(\w+)\s*=\s*KEYS\[(\d+)\]")


def code_of(loaded: Script) -> str:
    """The expanded source without comments (headers mention KEYS[...] in prose)."""
    return LUA_COMMENT.sub("", loaded.source)


def test_every_script_is_checked() -> None:
    lua_dir = Path(scripts_module.__file__).parent / "lua"
    assert {path.stem for path in lua_dir.glob("*.lua")} == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_highest_key_index_is_the_number_of_named_keys(name: str) -> None:
    loaded = script(name)
    used = {int(n) for n in KEY_INDEX.findall(code_of(loaded))}
    assert used, f"{name}.lua uses no KEYS"
    assert max(used) == len(loaded.key_names), (name, sorted(used), loaded.key_names)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_named_key_is_a_queue_key(name: str) -> None:
    loaded = script(name)
    assert loaded.key_names[0] == "prefix", "KEYS[1] is the queue prefix every job key hangs off"
    assert len(set(loaded.key_names)) == len(loaded.key_names), loaded.key_names
    assert set(loaded.key_names) <= QUEUE_KEY_NAMES | {"prefix"}
    keys = loaded.keys(QueueKeys("q"))
    assert keys[0] == "jb:{q}:"
    assert all(key.startswith("jb:{q}:") for key in keys), "one hash tag for every key"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_names_bound_to_keys_match_the_header(name: str) -> None:
    loaded = script(name)
    code = code_of(loaded)
    known = QUEUE_KEY_NAMES | {"prefix"}
    bindings: list[tuple[str, int]] = []
    for match in LOCAL_ASSIGN.finditer(code):
        names = [n.strip() for n in match.group(1).split(",")]
        values = [v.strip() for v in match.group(2).split(",")]
        if len(names) != len(values):
            continue
        for local, value in zip(names, values, strict=True):
            key = re.fullmatch(r"KEYS\[(\d+)\]", value)
            if key:
                bindings.append((local, int(key.group(1))))
    for table in TABLE.findall(code):
        bindings.extend((field, int(n)) for field, n in FIELD_ASSIGN.findall(table))
    assert bindings, f"{name}.lua binds no KEYS to names"
    for local, index in bindings:
        if local in known:
            assert loaded.key_names[index - 1] == local, (name, local, index, loaded.key_names)
