"""``jobbroker`` commands as child processes, for the end-to-end tests of the one-command start.

(Imported by module name from the tests beside it: a conftest.py here would shadow the
integration tests' ``from conftest import ...``.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import pytest

LISTENING = re.compile(r"jobbroker listening on (\S+):(\d+)")
EMBEDDED = re.compile(r"embedded redis-server \(pid (\d+)\)")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any JOBBROKER_* setting (so the defaults are tested)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBBROKER_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Child:
    """A child process whose stdout is read line by line on a thread (reads can time out);
    stderr goes to a log file."""

    def __init__(
        self, args: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str]
    ) -> None:
        self.args = args
        self.log = log
        self._stderr = log.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.output: list[str] = []
        self._lines: Queue[str | None] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def expect(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Read stdout until a line matches; fail the test on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                pytest.fail(
                    f"{pattern.pattern!r} not printed within {timeout} s by {self.args}\n"
                    f"stdout:\n" + "\n".join(self.output) + f"\nstderr:\n{self.stderr()}"
                )
            if line is None:
                pytest.fail(
                    f"{self.args} exited ({self.popen.wait()}) before printing "
                    f"{pattern.pattern!r}\nstdout:\n"
                    + "\n".join(self.output)
                    + f"\nstderr:\n{self.stderr()}"
                )
            self.output.append(line)
            match = pattern.search(line)
            if match:
                return match

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit and return its code (SIGKILL and fail after timeout)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                pytest.fail(f"{self.args} did not stop within {timeout} s of SIGTERM")
        return self.popen.returncode

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


class Children:
    """Every child of a test, killed in teardown whatever happened."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Child] = []

    def start(
        self, name: str, args: list[str], *, cwd: Path | None = None, env: dict[str, str]
    ) -> Child:
        child = Child(args, self.directory / f"{name}-{len(self.started)}.log", cwd=cwd, env=env)
        self.started.append(child)
        return child

    def close(self) -> None:
        for child in reversed(self.started):
            child.close()
