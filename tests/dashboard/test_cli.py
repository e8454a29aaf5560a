"""``jobbroker dashboard``: attached through the ``jobbroker.cli`` entry point group, serving
pages and API as a process of its own, and saying what to install without the extra."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from client.conftest import RunningBroker
from ports import free_port

JOBBROKER = [sys.executable, "-m", "jobbroker.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBBROKER_")}
    env.update(extra)
    return env


def test_the_command_serves_the_pages_and_the_api(broker: RunningBroker, queue: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*JOBBROKER, "dashboard", "--address", broker.address, "--port", str(port)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                home = httpx.get(base + "/", follow_redirects=True, timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "jobbroker dashboard did not answer"
                time.sleep(0.1)
        assert home.status_code == 200
        assert str(home.url).endswith("/admin/queues/")
        added = httpx.post(f"{base}/api/queues/{queue}/jobs", json={"name": "x"})
        assert added.status_code == 201
        page = httpx.get(f"{base}/admin/queues/queues/{queue}/jobs")
        assert page.status_code == 200
        assert f'data-job="{added.json()["jobId"]}"' in page.text
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_command_is_listed_in_the_help() -> None:
    shown = subprocess.run(
        [*JOBBROKER, "--help"], env=_env(COLUMNS="200"), capture_output=True, text=True, check=True
    )
    assert "dashboard" in shown.stdout


def test_without_the_extra_it_says_what_to_install(tmp_path: Path) -> None:
    # A uvicorn that cannot be imported, as on a machine without the dashboard extra.
    (tmp_path / "uvicorn.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n"
    )
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [*JOBBROKER, "dashboard"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'jobbroker[dashboard]'" in result.stderr
    assert "uvicorn" in result.stderr


def test_a_command_that_fails_to_load_says_why_and_the_others_still_work(
    tmp_path: Path,
) -> None:
    # Another distribution declaring a jobbroker.cli command whose module is missing.
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jobbroker.cli]\nbroken = no_such_module:register\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    broken = subprocess.run(
        [*JOBBROKER, "broken", "--anything"], env=env, capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 2
    assert "jobbroker broken could not be loaded" in broken.stderr
    assert "no_such_module" in broken.stderr
    listed = subprocess.run(
        [*JOBBROKER, "--help"], env={**env, "COLUMNS": "200"}, capture_output=True, text=True
    )
    assert listed.returncode == 0
    assert "dashboard" in listed.stdout
