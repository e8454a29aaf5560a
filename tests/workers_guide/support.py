"""``jobbroker-worker`` as a real subprocess, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jobbroker import AsyncClient

DEADLINE_S = 30.0


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = DEADLINE_S) -> Any:
    """Await ``check()`` until it returns something true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class ServiceProcess:
    """``jobbroker-worker`` in a process of its own; its stderr goes to ``log``."""

    def __init__(self, address: str, log: Path, *args: str, **env: str) -> None:
        self.log = log
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "JOBBROKER_"))
        }
        environ.update(env)
        command = [sys.executable, "-m", "jobbroker_worker.service", "--address", address, *args]
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._out, stderr=subprocess.STDOUT, env=environ
        )

    async def ready(self, client: AsyncClient, queues: tuple[str, ...]) -> None:
        """Wait until the worker registered its schemas on every queue (it is connected)."""
        for queue in queues:

            async def registered(queue: str = queue) -> bool:
                assert self.process.poll() is None, self.output()
                return bool(await client.job_schemas(queue))

            await until(registered, f"jobbroker-worker to register its {queue} schemas")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()
        return self.process.returncode
