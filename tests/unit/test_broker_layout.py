"""The broker's modules are grouped by role, and the imports between the groups run one way:
server -> loops -> storage, with the shared foundations (settings, errors, metrics) below all
three. Read from the source (``ast``), not by importing: what is checked is what the code says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jobbroker_broker

PACKAGE = Path(jobbroker_broker.__file__).parent
NAME = "jobbroker_broker"

GROUPS = ("server", "loops", "storage")
"""From the top down: a group may import the groups after it, never one before it."""

FOUNDATIONS = {"settings", "errors", "metrics"}
"""Shared by every group, and importing no other module of the broker."""

ENTRIES = {"__main__", "config", "cli", "testing"}
"""The process, its commands (``jobbroker serve``, ``jobbroker token``) and the pytest
plugin (``jobbroker_server``): these may import any group, and no group imports them."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The broker's modules that module ``name`` imports, relative to the package."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    here = [part for part in here if part]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == NAME:
                module = node.module.split(".")[1:]
            else:
                continue
            names = [".".join([*module, alias.name]) for alias in node.names]
            found.update(name for name in names if name in MODULES)
            if not any(name in MODULES for name in names):
                found.add(".".join(module))
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix(f"{NAME}.")
                for alias in node.names
                if alias.name.startswith(f"{NAME}.")
            )
    return found


def group(name: str) -> str:
    return name.split(".")[0]


def test_every_module_sits_in_a_group_or_is_a_foundation_or_an_entry() -> None:
    top = {group(name) for name in MODULES} - {""}
    assert top == {*GROUPS, *FOUNDATIONS, *ENTRIES}
    assert {"storage.store", "storage.scripts", "loops.maintenance", "server.app"} <= set(MODULES)
    assert "storage.store" in imports("loops.maintenance")


def goes_up(mine: str, theirs: str) -> bool:
    """An import from group ``mine`` into group ``theirs`` that runs against the arrows."""
    if theirs in ENTRIES:
        return True
    if mine in FOUNDATIONS:
        return theirs != mine
    if mine in GROUPS and theirs in GROUPS:
        return GROUPS.index(theirs) < GROUPS.index(mine)
    return False


def test_imports_run_server_to_loops_to_storage() -> None:
    upward = [
        f"{name} -> {target}"
        for name in MODULES
        if name and group(name) not in ENTRIES
        for target in imports(name)
        if goes_up(group(name), group(target))
    ]
    assert upward == []


def test_the_lua_scripts_ship_beside_the_storage_code() -> None:
    lua = PACKAGE / "storage" / "lua"
    assert (lua / "complete.lua").is_file()
    assert not (PACKAGE / "lua").exists()
