"""``jobbroker-worker``'s settings: flags over environment over TOML file over defaults; bad
values refused at start with the setting and its source named (exit 2, no traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from jobbroker_worker.config import Config, ConfigError, load, smtp


def test_precedence(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        'queues = ["email"]\nmodel = "from-file"\nconcurrency = 3\n'
        'smtp-url = "smtps://u%40x:p%3Ass@mail.example.com"\n'
    )
    environ = {"JOBBROKER_AI_MODEL": "from-env", "JOBBROKER_WORKER_CONFIG": str(path)}
    config = load({"concurrency": "7", "model": None}, environ)
    assert config.queues == ("email",)
    assert config.model == "from-env"
    assert config.concurrency == 7
    server = smtp(config.smtp_url)
    assert (server.host, server.port, server.use_tls) == ("mail.example.com", 465, True)
    assert (server.username, server.password) == ("u@x", "p:ss")
    assert load({}, {}) == Config()


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"queues": "ai-tasks,emails"}, {}, "queues (--queues)"),
        ({}, {"JOBBROKER_WORKER_CONCURRENCY": "0"}, "$JOBBROKER_WORKER_CONCURRENCY"),
        ({"lease": "0.5"}, {}, "lease (--lease): must be between 1 and 3600"),
        ({"smtp_url": "http://mail"}, {}, "smtp_url"),
        ({"smtp_url": "smtp://mail?starttls=maybe"}, {}, "starttls"),
        ({"config": "/nonexistent/worker.toml"}, {}, "cannot read"),
    ],
)
def test_bad_values(flags: dict[str, str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(dict(flags), environ)


def test_unknown_file_setting(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'modle'"):
        load({"config": str(path)}, {})


def test_the_command_refuses_bad_settings_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobbroker_worker.service", "--queues", "sms"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "queues (--queues)" in done.stderr
    assert "Traceback" not in done.stderr
    templates = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobbroker_worker.service",
            "--queues",
            "email",
            "--templates",
            str(tmp_path / "none"),
            "--address",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert templates.returncode == 2, templates.stderr
    assert "is not a directory" in templates.stderr
    assert "Traceback" not in templates.stderr
