"""Every ``jobbroker`` job command against a real broker: output, ``--json`` and exit codes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from jobbroker import Client

from .helpers import Cli, StubWorker, ThreadedBroker, free_address


def test_add_prints_the_job_and_status_shows_it(cli: Cli, queue: str) -> None:
    added = cli.ok("add", queue, "resize", "--data", '{"w": 10}', "--json").json()
    assert added == {"job_id": added["job_id"], "state": "waiting", "duplicate": False}

    job = cli.ok("status", queue, added["job_id"], "--json").json()
    assert job["id"] == added["job_id"]
    assert job["queue"] == queue
    assert (job["name"], job["state"], job["data"]) == ("resize", "waiting", {"w": 10})
    assert (job["attempts_made"], job["max_attempts"]) == (0, 1)
    assert job["created_at"].endswith("Z")

    human = cli.ok("status", queue, added["job_id"])
    assert "resize" in human.stdout
    assert "waiting" in human.stdout


def test_add_passes_every_option(cli: Cli, queue: str) -> None:
    job_id = cli.add(
        queue,
        "report",
        "--data",
        "[1, 2]",
        "--job-id",
        "report-7",
        "--priority",
        "5",
        "--delay",
        "1h",
        "--attempts",
        "4",
        "--backoff",
        "exponential:5s",
        "--backoff-jitter",
        "0.5",
        "--backoff-max",
        "1m",
        "--timeout",
        "90s",
        "--lifespan",
        "2h",
        "--remove-on-complete",
        "100,1d",
        "--remove-on-fail",
        "true",
        "--lifo",
    )
    assert job_id == "report-7"
    job = cli.ok("status", queue, job_id, "--json").json()
    assert job["state"] == "delayed"
    assert job["max_attempts"] == 4

    again = cli.ok("add", queue, "report", "--data", "[1, 2]", "--job-id", "report-7", "--json")
    assert again.json()["duplicate"] is True

    conflict = cli("add", queue, "report", "--data", "[3]", "--job-id", "report-7")
    assert conflict.exit_code == 5
    assert "JOB_ID_CONFLICT" in conflict.stderr


def test_data_from_a_file_and_from_stdin(cli: Cli, queue: str, tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{"from": "file"}')
    from_file = cli.add(queue, "job", "--data", f"@{path}")
    from_stdin = cli.ok("add", queue, "job", "--data", "-", "--json", input='{"from": "stdin"}')
    assert cli.ok("status", queue, from_file, "--json").json()["data"] == {"from": "file"}
    job_id = from_stdin.json()["job_id"]
    assert cli.ok("status", queue, job_id, "--json").json()["data"] == {"from": "stdin"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{nope"], "--data: not valid JSON"),
        (["--delay", "soon"], "--delay: 'soon' is not a duration"),
        (["--backoff", "linear:5s"], "--backoff"),
        (["--remove-on-complete", "sometimes"], "--remove-on-complete"),
        (["--priority", "high"], "priority"),
        (["--priority", "-1"], "--priority"),
        (["--priority", "1000001"], "--priority"),
        (["--attempts", "-1"], "--attempts"),
        (["--attempts", "0"], "--attempts"),
        (["--backoff-jitter", "-0.5"], "--backoff-jitter"),
        (["--timeout", "0"], "--timeout: must be at least 1 ms"),
        (["--lifespan", "0.0001"], "--lifespan: must be at least 1 ms"),
        (["--backoff", "fixed:1s", "--backoff-max", "0"], "--backoff-max: must be at least 1 ms"),
        (["--remove-on-fail", "10,0s"], "--remove-on-fail: must be at least 1 ms"),
    ],
)
def test_bad_options_are_usage_errors(cli: Cli, queue: str, args: list[str], message: str) -> None:
    # A traceback would surface here as the exception (Cli re-raises anything but an exit).
    result = cli("add", queue, "job", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--priority", "-1"], "--priority"), (["--attempts", "0"], "--attempts")],
)
def test_bad_schedule_options_are_usage_errors(
    cli: Cli, queue: str, args: list[str], option: str
) -> None:
    result = cli("schedules", "add", queue, "nightly", "job", "--every", "1h", *args)
    assert result.exit_code == 2
    assert option in result.stderr


def test_an_option_the_broker_rejects_is_a_usage_error(cli: Cli, queue: str) -> None:
    result = cli("add", queue, "job", "--group", "has space")
    assert result.exit_code == 2
    assert "group" in result.stderr


def test_unknown_job_exits_3(cli: Cli, queue: str) -> None:
    for command in ("status", "watch", "cancel", "logs", "retry", "promote", "remove"):
        result = cli(command, queue, "no-such-job")
        assert result.exit_code == 3, (command, result.stdout, result.stderr)
        assert "no-such-job" in result.stderr or "not found" in result.stderr.lower()


def test_unreachable_broker_exits_4(cli: Cli, queue: str) -> None:
    address = free_address()
    for args in (["status", queue, "1"], ["jobs", queue], ["add", queue, "job"]):
        result = cli(*args, "--address", address, address=False)
        assert result.exit_code == 4, (args, result.stdout, result.stderr)
        assert address in result.stderr


def test_jobs_lists_a_state_page_by_page(cli: Cli, queue: str) -> None:
    ids = [cli.add(queue, f"job-{n}", "--data", str(n)) for n in range(3)]
    delayed = cli.add(queue, "later", "--delay", "1h")

    first = cli.ok("jobs", queue, "--state", "waiting", "--limit", "2", "--json").json()
    assert [job["id"] for job in first["jobs"]] == ids[:2]
    assert first["total"] == 3
    assert first["next_page_token"]
    second = cli.ok(
        "jobs", queue, "--limit", "2", "--page-token", first["next_page_token"], "--json"
    ).json()
    assert [job["id"] for job in second["jobs"]] == ids[2:]
    assert second["next_page_token"] == ""

    listed = cli.ok("jobs", queue, "-s", "delayed", "--json").json()
    assert [job["id"] for job in listed["jobs"]] == [delayed]

    table = cli.ok("jobs", queue)
    assert "job-0" in table.stdout
    assert "3 waiting" in table.stdout

    bad = cli("jobs", queue, "--state", "sleeping")
    assert bad.exit_code == 2


def test_cancel_retry_promote_remove(cli: Cli, queue: str) -> None:
    job_id = cli.add(queue, "job", "--delay", "1h")
    assert cli.ok("promote", queue, job_id, "--json").json() == {
        "queue": queue,
        "job_id": job_id,
        "state": "waiting",
    }
    cancelled = cli.ok("cancel", queue, job_id, "--reason", "not needed", "--json").json()
    assert cancelled["state"] == "cancelled"
    job = cli.ok("status", queue, job_id, "--json").json()
    assert job["cancel_reason"] == "not needed"

    again = cli("cancel", queue, job_id)
    assert again.exit_code == 5
    assert "JOB_FINISHED" in again.stderr

    assert cli.ok("retry", queue, job_id, "--json").json()["state"] == "waiting"
    removed = cli.ok("remove", queue, job_id)
    assert job_id in removed.stdout
    assert cli("status", queue, job_id).exit_code == 3


def test_watch_a_job_that_completes(cli: Cli, stub_worker: StubWorker, queue: str) -> None:
    job_id = cli.add(queue, "job", "--data", '{"n": 1}')

    def work() -> None:
        time.sleep(0.3)
        job = stub_worker.lease(queue)
        stub_worker.complete(job, {"answer": 42})

    worker = threading.Thread(target=work)
    worker.start()
    result = cli("watch", queue, job_id, "--json")
    worker.join()
    assert result.exit_code == 0, result.stderr
    lines = result.json_lines()
    snapshot = lines[0]["snapshot"]
    events = [line["event"] for line in lines[1:]]
    if snapshot["state"] == "waiting":  # the usual case: the stream opened before the lease
        assert [e["type"] for e in events] == ["active", "completed"]
        assert events[-1]["result"] == {"answer": 42}
    else:  # a slow machine: the job was leased (or done) before the stream opened
        assert (events[-1] if events else snapshot).get("result") == {"answer": 42}

    # A finished job: its snapshot, then the end; the human form shows the result.
    human = cli("watch", queue, job_id)
    assert human.exit_code == 0
    assert "completed" in human.stdout
    assert '{"answer":42}' in human.stdout


def test_add_watch_exits_1_when_the_job_fails(
    cli: Cli, stub_worker: StubWorker, queue: str
) -> None:
    def work() -> None:
        for _ in range(2):
            job = stub_worker.lease(queue, wait_ms=5000)
            stub_worker.fail(job, "boom")

    worker = threading.Thread(target=work)
    worker.start()
    result = cli("add", queue, "job", "--attempts", "2", "--watch")
    worker.join()
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "failed" in result.stdout
    assert "boom" in result.stdout


def test_watch_exits_1_when_the_job_is_cancelled(cli: Cli, queue: str) -> None:
    job_id = cli.add(queue, "job", "--delay", "1h")
    # Not through the CLI: CliRunner swaps sys.stdout, so two cannot run at once.
    with Client(cli.address) as client:
        threading.Timer(0.3, lambda: client.cancel(queue, job_id)).start()
        result = cli("watch", queue, job_id, "--json")
    assert result.exit_code == 1
    last = result.json_lines()[-1]
    # The cancel usually lands while the stream is open; on a slow machine, before it opens.
    assert last.get("event", {}).get("type") == "cancelled" or (
        last["snapshot"]["state"] == "cancelled"
    )


def test_logs_of_a_job_without_logs(cli: Cli, queue: str) -> None:
    job_id = cli.add(queue)
    assert cli.ok("logs", queue, job_id, "--json").json() == {"lines": [], "total": 0}


def test_help_and_usage(cli: Cli, cli_broker: ThreadedBroker) -> None:
    assert cli("--help", address=False).exit_code == 0
    for command in ("serve", "work", "add", "status", "watch", "cancel", "jobs", "logs"):
        help_text = cli(command, "--help", address=False)
        assert help_text.exit_code == 0, command
    assert cli("status", address=False).exit_code == 2
    assert cli("frobnicate", address=False).exit_code == 2
