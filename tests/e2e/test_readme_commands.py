"""The README's run command on a clean checkout: a fresh venv, the project installed from the
package index, a broker with its embedded Redis and the demo worker, a demo job run through the
CLI of that venv, then SIGTERM.

Slow (it installs every dependency into a new venv): marked ``slow``, skipped when
``JOBBROKER_SKIP_SLOW=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port
from serve_process import LISTENING, Children, clean_env

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 300.0
"""Seconds the first ./scripts/run may take to create the venv and install the project."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("JOBBROKER_SKIP_SLOW") == "1", reason="JOBBROKER_SKIP_SLOW=1"
    ),
    pytest.mark.timeout(INSTALL_TIMEOUT + 120),
]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path)
    try:
        yield spawned
    finally:
        spawned.close()


def checkout(into: Path) -> Path:
    """The repository's files (tracked, plus new ones git does not ignore) copied to ``into``."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.decode(errors='replace')}")
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def fresh_env() -> dict[str, str]:
    """No venv of ours on PATH, no PYTHONPATH, and the base interpreter as PYTHON."""
    env: dict[str, str] = clean_env()
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    ours = str(Path(sys.prefix).resolve())
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and not str(Path(entry).resolve()).startswith(ours)
    )
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    return env


def readme_commands(readme: str) -> list[str]:
    """The shell commands of the README's fenced ``sh`` blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def run_demo_job(command: str, bin_dir: Path, cwd: Path, env: dict[str, str]) -> None:
    """Run a ``jobbroker add demo sleep ... --watch`` command with the CLI of ``bin_dir``; it
    must see the job complete."""
    watched = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        env={**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    assert "completed" in watched.stdout


def test_the_readme_run_command_on_a_clean_checkout(tmp_path: Path, children: Children) -> None:
    repo = checkout(tmp_path / "jobbroker")
    commands = readme_commands((repo / "README.md").read_text())
    assert commands[:2] == ["./scripts/run", "./scripts/test"], commands[:2]
    env = fresh_env()
    port = free_port()

    serve = children.start("run", ["./scripts/run", "--port", str(port)], cwd=repo, env=env)
    listening = serve.expect(LISTENING, INSTALL_TIMEOUT)
    address = f"{listening.group(1)}:{listening.group(2)}"
    assert address == f"127.0.0.1:{port}"
    example = serve.expect(re.compile(r"^\s+(jobbroker add demo sleep .*)$"), 30)
    config = (repo / ".venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config

    # The example command as printed, run with the CLI of the new venv.
    command = example.group(1).replace('{"seconds": 3}', '{"seconds": 1}')
    run_demo_job(command, repo / ".venv" / "bin", repo, env)
    assert (repo / ".jobbroker" / "data" / "appendonly.aof").exists()

    assert serve.terminate() == 0, serve.stderr()


def test_the_dependency_ranges_install_and_run(tmp_path: Path, children: Children) -> None:
    """What a user's ``pip install 'jobbroker[broker]'`` gets: the newest releases
    pyproject.toml's ranges allow, not the lock's pins (./scripts/test and ./scripts/run install
    those). The broker, its embedded Redis, the demo worker and the CLI run a job on them."""
    repo = checkout(tmp_path / "jobbroker")
    env = fresh_env()
    venv = tmp_path / "venv"
    subprocess.run([env["PYTHON"], "-m", "venv", str(venv)], check=True, timeout=120)
    # the broker's distribution from its folder of the checkout, as the extra asks for it
    wanted = [f"{repo}[broker]", str(repo / "broker")]
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *wanted],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    port = free_port()
    serve = children.start(
        "serve",
        [str(venv / "bin" / "jobbroker"), "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
    )
    serve.expect(LISTENING, 60)
    command = "jobbroker add demo sleep --data '{\"seconds\": 1}' --watch"
    run_demo_job(command, venv / "bin", tmp_path, {**env, "JOBBROKER_ADDRESS": f"127.0.0.1:{port}"})
    assert serve.terminate() == 0, serve.stderr()
