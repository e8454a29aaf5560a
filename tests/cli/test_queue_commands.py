"""The operators' commands (``queues``, ``queue ...``, ``events``, ``workers``,
``schedules ...``) against a real broker: output, ``--json`` and exit codes."""

from __future__ import annotations

import json
import subprocess

from .helpers import Cli, StubWorker, child_env, free_address, jobbroker_command, terminate


def test_queues_and_queue_info(cli: Cli, queue: str) -> None:
    cli.add(queue)
    cli.add(queue, "later", "--delay", "1h")

    info = cli.ok("queue", "info", queue, "--json").json()
    assert info["name"] == queue
    assert info["paused"] is False
    assert info["counts"] == {
        "waiting": 1,
        "delayed": 1,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert info["settings"] == {
        "rate_limit": None,
        "concurrency": 0,
        "group_rate_limit": None,
        "max_stalled": 0,
    }
    listed = {q["name"]: q for q in cli.ok("queues", "--json").json()["queues"]}
    assert listed[queue] == info
    assert queue in cli.ok("queues").stdout
    assert "1 waiting" in cli.ok("queue", "info", queue).stdout


def test_pause_resume(cli: Cli, queue: str) -> None:
    assert cli.ok("queue", "pause", queue, "--json").json() == {"queue": queue, "paused": True}
    assert cli.ok("queue", "info", queue, "--json").json()["paused"] is True
    assert "resumed" in cli.ok("queue", "resume", queue).stdout
    assert cli.ok("queue", "info", queue, "--json").json()["paused"] is False


def test_drain_clean_retry_failed_promote_delayed(
    cli: Cli, queue: str, stub_worker: StubWorker
) -> None:
    done = cli.add(queue)
    stub_worker.complete(stub_worker.lease(queue), {"ok": True})
    cli.add(queue)
    stub_worker.fail(stub_worker.lease(queue), "boom")
    cli.add(queue, "later", "--delay", "1h")
    cli.add(queue, "now")

    cleaned = cli.ok("queue", "clean", queue, "--state", "completed", "--json").json()
    assert cleaned == {"queue": queue, "state": "completed", "removed": 1, "job_ids": [done]}
    assert cli.ok("queue", "retry-failed", queue, "--json").json() == {
        "queue": queue,
        "retried": 1,
    }
    assert cli.ok("queue", "promote-delayed", queue, "--json").json() == {
        "queue": queue,
        "promoted": 1,
    }
    assert cli.ok("queue", "drain", queue, "--json").json() == {"queue": queue, "removed": 3}
    assert cli.ok("queue", "drain", queue, "--delayed").stdout.strip().endswith("0 removed")


def test_clean_rejects_bad_options(cli: Cli, queue: str) -> None:
    assert cli("queue", "clean", queue, "--state", "active").exit_code == 2
    assert cli("queue", "clean", queue, "--state", "nope").exit_code == 2
    assert cli("queue", "clean", queue, "--grace", "soon").exit_code == 2


def test_obliterate_asks_and_refuses_active_jobs(
    cli: Cli, queue: str, stub_worker: StubWorker
) -> None:
    cli.add(queue)
    cli.add(queue)
    stub_worker.lease(queue)

    assert cli("queue", "obliterate", queue, input="n\n").exit_code == 2
    refused = cli("queue", "obliterate", queue, "--yes")
    assert refused.exit_code == 5
    assert "JOB_ACTIVE" in refused.stderr
    done = cli.ok("queue", "obliterate", queue, "--yes", "--force", "--json").json()
    assert done == {"queue": queue, "removed": 2}


def test_settings_show_and_change_only_what_is_given(cli: Cli, queue: str) -> None:
    shown = cli.ok("queue", "settings", queue, "--json").json()
    assert shown["settings"]["rate_limit"] is None

    changed = cli.ok(
        "queue", "settings", queue, "--rate-limit", "10/1s", "--concurrency", "4", "--json"
    ).json()
    assert changed == {
        "queue": queue,
        "settings": {
            "rate_limit": {"max": 10, "per": 1.0},
            "concurrency": 4,
            "group_rate_limit": None,
            "max_stalled": 0,
        },
    }
    changed = cli.ok("queue", "settings", queue, "--max-stalled", "2", "--json").json()
    assert changed["settings"]["rate_limit"] == {"max": 10, "per": 1.0}
    assert changed["settings"]["max_stalled"] == 2
    cleared = cli.ok("queue", "settings", queue, "--rate-limit", "off", "--json").json()
    assert cleared["settings"]["rate_limit"] is None
    assert cleared["settings"]["concurrency"] == 4
    assert "max stalled       2" in cli.ok("queue", "settings", queue).stdout

    assert cli("queue", "settings", queue, "--rate-limit", "ten").exit_code == 2
    assert cli("queue", "settings", queue, "--rate-limit", "1/2d").exit_code == 2


def test_workers(cli: Cli, queue: str, stub_worker: StubWorker) -> None:
    cli.add(queue)
    stub_worker.lease(queue)
    [worker] = cli.ok("workers", queue, "--json").json()["workers"]
    assert worker["worker_id"] == "cli-test"
    assert worker["active_jobs"] == 1
    assert "cli-test" in cli.ok("workers", queue).stdout


def test_schedules_add_list_get_remove(cli: Cli, queue: str) -> None:
    added = cli.ok(
        "schedules", "add", queue, "nightly", "report", "--cron", "0 3 * * *",
        "--data", '{"kind": "daily"}', "--attempts", "3", "--json",
    ).json()  # fmt: skip
    assert (added["key"], added["queue"], added["name"]) == ("nightly", queue, "report")
    assert added["data"] == {"kind": "daily"}
    assert added["cron"] == "0 3 * * *"
    assert added["options"]["attempts"] == 3
    assert added["next_run_at"].endswith("Z")
    cli.ok("schedules", "add", queue, "tick", "ping", "--every", "1m")

    listed = cli.ok("schedules", "list", queue, "--json").json()["schedules"]
    assert {s["key"] for s in listed} == {"nightly", "tick"}
    assert cli.ok("schedules", "get", queue, "tick", "--json").json()["every"] == 60.0
    assert "nightly" in cli.ok("schedules", "list", queue).stdout

    removed = cli.ok("schedules", "remove", queue, "nightly", "--json").json()
    assert removed == {"queue": queue, "key": "nightly", "removed": True}
    assert cli("schedules", "get", queue, "nightly").exit_code == 3

    assert cli("schedules", "add", queue, "k", "job").exit_code == 2
    assert cli("schedules", "add", queue, "k", "job", "--cron", "x", "--every", "1m").exit_code == 2


def test_unreachable_broker_exits_4(cli: Cli, queue: str) -> None:
    result = cli("queue", "info", queue, "--address", free_address(), address=False)
    assert result.exit_code == 4


def test_events_streams_json_lines(cli: Cli, queue: str) -> None:
    """``events`` runs until interrupted: run it as a process from the queue's first event
    (``--after 0-0``, so no wait for its subscription), read, then stop it."""
    job_id = cli.add(queue)
    cli.ok("queue", "pause", queue)
    process = subprocess.Popen(
        [*jobbroker_command(), "events", queue, "--after", "0-0", "--json", "-a", cli.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
    finally:
        terminate(process)
    events = [json.loads(line)["event"] for line in lines]
    assert [e["type"] for e in events] == ["added", "paused"]
    assert events[0]["job_id"] == job_id
    assert events[0]["id"]
