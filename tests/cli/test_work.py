"""``jobbroker work MODULE:WORKER``: loading a worker from the current directory, running it
until SIGTERM, and the demo worker's jobs."""

from __future__ import annotations

import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from jobbroker import Client, Event, EventType, JobCancelled, JobFailed

from .helpers import Cli, ThreadedBroker, child_env, free_address, jobbroker_command, terminate

APP = """
from jobbroker import Worker

worker = Worker({queue!r})

@worker.handler("double")
def double(ctx):
    ctx.log("doubling")
    return ctx.data * 2


def make_worker():
    return worker

not_a_worker = 42
"""


@pytest.fixture
def app_dir(tmp_path: Path, queue: str) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format(queue=queue)))
    return tmp_path


def test_work_runs_a_worker_from_the_current_directory(
    app_dir: Path, cli_broker: ThreadedBroker, queue: str
) -> None:
    worker = subprocess.Popen(
        [*jobbroker_command(), "work", "app:make_worker", "--address", cli_broker.address],
        cwd=app_dir,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with Client(cli_broker.address) as client:
            added = client.add(queue, "double", 21)
            assert client.wait(queue, added.job_id, timeout=20) == 42
            assert client.logs(queue, added.job_id).lines == ["doubling"]
    finally:
        code = terminate(worker)
        stderr = worker.stderr.read().decode() if worker.stderr else ""
    assert code == 0, stderr
    assert "serving" in stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module", "cannot import 'no_such_module'"),
        ("app:missing", "'app' has no attribute 'missing'; its Workers: worker"),
        ("app:not_a_worker", "is a int, not a jobbroker.Worker"),
        ("app:", "is not MODULE or MODULE:WORKER"),
    ],
)
def test_work_refuses_what_is_not_a_worker(
    cli: Cli, app_dir: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    monkeypatch.chdir(app_dir)
    monkeypatch.syspath_prepend(str(app_dir))
    result = cli("work", target, address=False)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_the_demo_worker(cli_broker: ThreadedBroker, queue: str) -> None:
    worker = subprocess.Popen(
        [*jobbroker_command(), "work", "jobbroker_worker.demo", "-a", cli_broker.address],
        env=child_env(JOBBROKER_DEMO_QUEUE=queue),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with Client(cli_broker.address) as client:

            def run(name: str, data: object = None, **options: object) -> object:
                added = client.add(queue, name, data, **options)  # type: ignore[arg-type]
                return client.wait(queue, added.job_id, timeout=20)

            assert run("echo", {"a": [1, 2]}) == {"a": [1, 2]}
            assert run("sleep", {"seconds": 0.2}) == {"slept": 0.2}
            assert run("tokens", {"text": "a b c", "delay": 0.01}) == {"text": "a b c"}
            assert run("flaky", {"failures": 1}, attempts=2) == {"succeeded_on_attempt": 2}
            with pytest.raises(JobFailed) as failed:
                run("fail", {"message": "as planned"}, attempts=2)
            assert failed.value.job.failure.message == "as planned"
            assert failed.value.job.attempts_made == 2
            with pytest.raises(JobFailed) as unknown:
                run("nope", attempts=3)
            assert "no job named 'nope'" in unknown.value.job.failure.message
            assert unknown.value.job.attempts_made == 1
            with pytest.raises(JobFailed) as bad:
                run("sleep", {"seconds": "long"}, attempts=3)
            assert "data.seconds must be a float" in bad.value.job.failure.message

            long_nap = client.add(queue, "sleep", {"seconds": 30})
            for item in client.stream_progress(queue, long_nap.job_id):
                if isinstance(item, Event) and item.type is EventType.PROGRESS:
                    break  # running: the cancel reaches the worker
            client.cancel(queue, long_nap.job_id)
            with pytest.raises(JobCancelled):
                client.wait(queue, long_nap.job_id, timeout=10)
    finally:
        code = terminate(worker)
        stderr = worker.stderr.read().decode() if worker.stderr else ""
    assert code == 0, stderr


def test_work_finds_the_broker_in_the_environment_and_serves_metrics(
    app_dir: Path, cli_broker: ThreadedBroker, queue: str
) -> None:
    port = free_address().rsplit(":", 1)[1]
    worker = subprocess.Popen(
        [*jobbroker_command(), "work", "app", "--metrics-port", port],
        cwd=app_dir,
        env=child_env(JOBBROKER_ADDRESS=cli_broker.address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with Client(cli_broker.address) as client:
            added = client.add(queue, "double", 4)
            assert client.wait(queue, added.job_id, timeout=20) == 8
        text = _scrape(f"http://127.0.0.1:{port}/metrics", within=10)
        assert "jobbroker_worker_concurrency 10.0" in text
        assert 'jobbroker_worker_handlers{state="abandoned"} 0.0' in text
        assert "jobbroker_worker_jobs_leased_total 1.0" in text
    finally:
        code = terminate(worker)
        stderr = worker.stderr.read().decode() if worker.stderr else ""
    assert code == 0, stderr
    assert cli_broker.address in stderr  # "serving [...] at <address>"


def _scrape(url: str, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
