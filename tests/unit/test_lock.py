"""requirements/lock.txt, the pinned set ./scripts/test and ./scripts/run install, is in step with
the ranges of pyproject.toml and broker/pyproject.toml: every dependency of every extra is
pinned, at a version its range allows. (A dependency missing from the lock would be installed
at whatever is newest, which is how a new release broke a fresh clone once.) ./scripts/lock
refreshes the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pinned() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "broker" / "pyproject.toml")
"""The project's two distributions: jobbroker and the broker's (test_distributions.py)."""


def declared() -> list[Requirement]:
    """Every dependency of both distributions but the one on the other: those two are built
    here, not installed from the lock."""
    names: list[str] = []
    ours = set()
    for path in PYPROJECTS:
        project = tomllib.loads(path.read_text())["project"]
        ours.add(canonicalize_name(project["name"]))
        names += project["dependencies"]
        for extra in project.get("optional-dependencies", {}).values():
            names += extra
    requirements = [Requirement(name) for name in names]
    return [r for r in requirements if canonicalize_name(r.name) not in ours]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = pinned()
    problems = []
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: the lock pins {version}")
    assert problems == [], "run ./scripts/lock: " + "; ".join(problems)


def test_the_lock_pins_exact_versions_only() -> None:
    lines = [
        line
        for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines
    assert all(PIN.match(line) for line in lines), [line for line in lines if not PIN.match(line)]
