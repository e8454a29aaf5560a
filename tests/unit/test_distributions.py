"""The project builds two distributions: ``jobbroker`` (pyproject.toml: the client, the Worker
SDK, the CLI, the guide's workers and the dashboard) and ``jobbroker-broker``
(broker/pyproject.toml: the broker), because an extra can add dependencies but not files. Their
metadata must agree: one version, the ``broker`` extra naming the broker's distribution at it,
the broker's package, files, commands and dependencies in the broker's distribution only, and
the extras that install the broker's dependencies for ./scripts/test and ./scripts/run listing
all of them (so the lock pins them).

tests/e2e/test_wheel.py builds both wheels and installs them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "broker"
TOP: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
BROKER_TOML: dict[str, Any] = tomllib.loads((BROKER / "pyproject.toml").read_text())


def third_party(requirements: list[str]) -> set[str]:
    """``requirements`` without the two distributions of this project, normalised."""
    ours = {"jobbroker", "jobbroker-broker"}
    return {
        str(Requirement(r))
        for r in requirements
        if canonicalize_name(Requirement(r).name) not in ours
    }


def test_both_distributions_have_one_version_and_pin_each_other_at_it() -> None:
    top, broker = TOP["project"], BROKER_TOML["project"]
    assert (top["name"], broker["name"]) == ("jobbroker", "jobbroker-broker")
    assert broker["version"] == top["version"]
    assert broker["requires-python"] == top["requires-python"]
    assert top["optional-dependencies"]["broker"] == [f"jobbroker-broker=={top['version']}"]
    assert f"jobbroker=={top['version']}" in broker["dependencies"]


def test_the_extras_that_stand_in_for_the_broker_list_all_its_dependencies() -> None:
    """./scripts/test and ./scripts/run install the broker from broker/ beside ``test`` or
    ``demo``; those extras list the broker's dependencies out, so the lock pins each."""
    needed = third_party(BROKER_TOML["project"]["dependencies"])
    assert needed
    for extra in ("test", "demo"):
        listed = third_party(TOP["project"]["optional-dependencies"][extra])
        assert needed - listed == set(), extra


def test_the_broker_ships_only_in_its_own_distribution() -> None:
    where = TOP["tool"]["setuptools"]["packages"]["find"]["where"]
    assert "broker" not in where
    assert (ROOT / "clients" / "python" / "jobbroker").is_dir()
    assert not any((ROOT / folder / "jobbroker_broker").exists() for folder in where)
    assert "jobbroker_broker" not in TOP["tool"]["setuptools"]["package-data"]
    found = BROKER_TOML["tool"]["setuptools"]["packages"]["find"]
    assert found["include"] == ["jobbroker_broker", "jobbroker_broker.*"]
    assert (BROKER / found["where"][0] / "jobbroker_broker" / "__init__.py").is_file()


def test_the_broker_distribution_declares_every_file_of_its_package() -> None:
    """Each file of jobbroker_broker that is not Python (the Lua scripts, py.typed) matches a
    package-data pattern: a new Lua folder not declared would be missing from the wheel."""
    package = BROKER / "jobbroker_broker"
    patterns = BROKER_TOML["tool"]["setuptools"]["package-data"]["jobbroker_broker"]
    declared = {path for pattern in patterns for path in package.glob(pattern)}
    data = {
        path for path in package.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")
    }
    assert any(path.suffix == ".lua" for path in data)
    assert sorted(data - declared) == []


def entry_points(pyproject: dict[str, Any]) -> dict[str, str]:
    project = pyproject["project"]
    points = {f"scripts:{name}": value for name, value in project.get("scripts", {}).items()}
    for group, named in project.get("entry-points", {}).items():
        points.update({f"{group}:{name}": value for name, value in named.items()})
    return points


def test_the_broker_commands_and_plugin_come_with_the_broker() -> None:
    top, broker = entry_points(TOP), entry_points(BROKER_TOML)
    assert [key for key, value in top.items() if value.startswith("jobbroker_broker")] == []
    assert broker == {
        "scripts:jobbroker-broker": "jobbroker_broker.__main__:main",
        "jobbroker.cli:broker": "jobbroker_broker.cli:register",
        "pytest11:jobbroker_broker": "jobbroker_broker.testing",
    }
    assert top["scripts:jobbroker"] == "jobbroker.cli:main"
