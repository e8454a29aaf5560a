"""What every part of the benchmark suite shares: stats, the JSON line protocol between the
runner and the peers' processes, starting and killing processes, and removing a run's keys.

Standard library only: the peers import it from their own venvs, which have none of the
project's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

T = TypeVar("T")

RESULT_FILE_ENV = "JBBENCH_RESULT_FILE"
"""Where a process writes its answer (JSON), when the runner sets it: a file, because a long
answer on stdout was seen cut short at a pipe-buffer boundary."""
RESULT_PREFIX = "RESULT "
"""Without RESULT_FILE_ENV, a process prints its answer as one line: this prefix, then JSON."""
READY = "READY"
"""A worker process prints this word once it is consuming, then the time (:data:`now`)."""

now = time.monotonic
"""The clock of every timestamp the suite compares across processes: CLOCK_MONOTONIC is one
clock for all processes of a Linux machine (Node's process.hrtime reads the same one)."""


# --- stats ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))  # 1-based
    return ordered[max(0, min(len(ordered), rank) - 1)]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds, and the sample count."""
    return {
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000 if seconds else float("nan"),
        "samples": len(seconds),
    }


# --- the peers' side of the protocol ------------------------------------------------------


def emit(result: dict[str, Any], out: TextIO | None = None) -> None:
    """Hand the process's answer to the runner (see RESULT_FILE_ENV)."""
    path = os.environ.get(RESULT_FILE_ENV)
    if path and out is None:
        Path(path + ".tmp").write_text(json.dumps(result))
        os.replace(path + ".tmp", path)
        return
    stream = out or sys.stdout
    stream.write(RESULT_PREFIX + json.dumps(result) + "\n")
    stream.flush()


def say_ready() -> None:
    sys.stdout.write(f"{READY} {now()}\n")
    sys.stdout.flush()


@dataclass
class Recorder:
    """Counts the jobs a worker ran and, when asked, when each one started; and the moments
    and CPU times every peer's processing figure is computed from, taken the same way for all.

    ``hit`` may be called from any thread; ``on_done`` runs once, in the thread of the hit that
    reached ``target``. A peer whose job is done only once its outcome is stored (jobbroker:
    acknowledged by the broker) calls :meth:`finish` again when that is so.
    """

    target: int
    record: bool = False
    on_done: Callable[[], None] | None = None
    done: int = 0
    starts: list[tuple[int, float]] = field(default_factory=list)
    loaded: float = field(default_factory=now)
    """When the worker's library was imported and the worker was about to be made ("ready")."""
    cpu_loaded: float = field(default_factory=time.process_time)
    """The process's CPU seconds by then (its start-up: interpreter, imports)."""
    first_at: float = 0.0
    """When the first job's handler started."""
    finished_at: float = 0.0
    finished_jobs: int = 0
    """Jobs done at :meth:`finish` (a worker may go on past the target until it stops)."""
    cpu_finished: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    reached: threading.Event = field(default_factory=threading.Event)

    def hit(self, data: Any) -> None:
        started = now()
        with self._lock:
            self.done += 1
            if self.done == 1:
                self.first_at = started
            if self.record:
                self.starts.append((int(data["i"]), started))
            last = self.done == self.target
        if last:
            self.finish()
            self.reached.set()
            if self.on_done is not None:
                self.on_done()

    def finish(self) -> None:
        """The last job is done: note when, and the CPU the process had used by then."""
        self.finished_at = now()
        self.finished_jobs = self.done
        self.cpu_finished = time.process_time()

    def result(self, started: float, ended: float | None = None) -> dict[str, Any]:
        """The worker's answer: jobs run, seconds from ``started`` to the last job (or to
        ``ended``), the start times when recorded, and the timing points and CPU seconds of
        :func:`processing_fields`."""
        if not self.reached.is_set():
            self.finish()
            self.finished_at = ended or self.finished_at
        return {
            "done": self.done,
            "finished_jobs": self.finished_jobs,
            "seconds": self.finished_at - started,
            "starts": self.starts,
            "loaded": self.loaded,
            "first_at": self.first_at,
            "finished_at": self.finished_at,
            "cpu_loaded": self.cpu_loaded,
            "cpu_finished": self.cpu_finished,
        }


def processing_fields(answer: dict[str, Any], spawned: float) -> dict[str, Any]:
    """The processing figures of a worker's answer, every peer's computed the same way:

    - ``from_start``: jobs / (last job done - the runner spawning the worker process), start-up
      of the interpreter and the library included;
    - ``from_ready``: jobs / (last job done - the library loaded, the worker about to be made);
    - ``steady``: (jobs - 1) / (last job done - first job's handler start);
    - the worker's CPU: µs per job from ready to the last job, and its start-up CPU.
    """
    done = int(answer["finished_jobs"])
    end = float(answer["finished_at"])
    loaded, first = float(answer["loaded"]), float(answer["first_at"])
    cpu_run = float(answer["cpu_finished"]) - float(answer["cpu_loaded"])
    return {
        "jobs": done,
        "from_start": done / max(end - spawned, 1e-9),
        "from_ready": done / max(end - loaded, 1e-9),
        "steady": (done - 1) / (end - first) if first and end > first else float("nan"),
        "start_s": loaded - spawned,
        "ready_to_first_s": first - loaded if first else float("nan"),
        "seconds_from_start": end - spawned,
        "seconds_from_ready": end - loaded,
        "worker_us_per_job": cpu_run / max(done, 1) * 1e6,
        "worker_core_pct": 100 * cpu_run / max(end - loaded, 1e-9),
        "worker_startup_cpu_s": float(answer["cpu_loaded"]),
    }


def job_data(i: int, pad: str = "") -> dict[str, Any]:
    """Every peer's job payload: its number and when it was sent (and ``pad``, to make it
    larger)."""
    if pad:
        return {"i": i, "t": now(), "p": pad}
    return {"i": i, "t": now()}


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (as the broker and ``Worker.run`` do)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


# --- the runner's side: processes -----------------------------------------------------------


class ProcessError(RuntimeError):
    """A benchmark process failed or gave no answer."""


class Output:
    """Everything a process prints on stdout, read by one thread from start to end (so the
    process never blocks on a full pipe), and when it said it was ready."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, _, when = line.strip().partition(" ")
            if word == READY and not self.ready.is_set():
                self.ready_at = float(when or now())
                self.ready.set()
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def text(self) -> str:
        with self.changed:
            return "".join(self.lines)


class Processes:
    """Every process the suite starts, each in its own process group, so that :meth:`kill_all`
    (on the way out, also after Ctrl-C or an error) ends it with all its children."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[str]] = []
        self._errors: dict[int, IO[str]] = {}
        self._outputs: dict[int, Output] = {}
        self._results: dict[int, str] = {}

    def start(
        self, command: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> subprocess.Popen[str]:
        # stderr goes to a file: a chatty process must never block on a full pipe.
        errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by forget)
        handle, result_path = tempfile.mkstemp(prefix="jbbench-", suffix=".json")
        os.close(handle)
        os.unlink(result_path)  # the process makes it when it answers
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {}), RESULT_FILE_ENV: result_path},
            cwd=cwd,
        )
        self._results[proc.pid] = result_path
        self._started.append(proc)
        self._errors[proc.pid] = errors
        self._outputs[proc.pid] = Output(proc)
        return proc

    def stderr(self, proc: subprocess.Popen[str]) -> str:
        """What the process wrote to stderr so far."""
        errors = self._errors.get(proc.pid)
        if errors is None:
            return ""
        errors.seek(0)
        return errors.read()

    def stop(self, proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
        """SIGTERM the process's group, SIGKILL it after ``timeout`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # A worker's pool children may outlive their parent: end the rest of the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self._started:
            self._started.remove(proc)

    def forget(self, proc: subprocess.Popen[str]) -> None:
        """Drop what was kept of a stopped process."""
        errors = self._errors.pop(proc.pid, None)
        if errors is not None:
            errors.close()
        self._outputs.pop(proc.pid, None)
        result_path = self._results.pop(proc.pid, None)
        if result_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(result_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(result_path + ".tmp")

    def kill_all(self) -> None:
        for proc in list(self._started):
            self.stop(proc, timeout=2.0)
            self.forget(proc)

    def start_server(
        self, command: Sequence[str], *, timeout: float = 30.0, cwd: str | None = None
    ) -> tuple[subprocess.Popen[str], str]:
        """Start a server that prints "listening on HOST:PORT"; return it and the address."""
        proc = self.start(command, cwd=cwd)
        output = self._outputs[proc.pid]
        deadline = now() + timeout
        with output.changed:
            while proc.poll() is None and now() < deadline:
                for line in output.lines:
                    if "listening on " in line:
                        return proc, line.split("listening on ", 1)[1].split()[0]
                output.changed.wait(0.1)
        self.stop(proc)
        err = self.stderr(proc)
        self.forget(proc)
        raise ProcessError(f"{_show(command)}: did not start\n{_tail(err)}")

    def run(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> dict[str, Any]:
        """Run a benchmark process to its end; return its answer."""
        return self.finish(self.start(command, env=env, cwd=cwd), command, timeout)

    def wait_ready(
        self, proc: subprocess.Popen[str], command: Sequence[str], timeout: float
    ) -> float:
        """Wait until the process says it is ready; return when it was (:data:`now`)."""
        output = self._outputs[proc.pid]
        deadline = now() + timeout
        while not output.ready.wait(0.1):
            if proc.poll() is not None or now() > deadline:
                self.stop(proc)
                err = self.stderr(proc)
                self.forget(proc)
                raise ProcessError(
                    f"{_show(command)}: not ready within {timeout:.0f} s\n{_tail(err)}"
                )
        return output.ready_at

    def finish(
        self, proc: subprocess.Popen[str], command: Sequence[str], timeout: float
    ) -> dict[str, Any]:
        """Wait for a started process's answer, then make sure it and its children are gone."""
        output = self._outputs[proc.pid]
        timed_out = False
        try:
            proc.wait(timeout)
            output.thread.join(10)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self.stop(proc)
            err = self.stderr(proc)
            out = output.text()
            result_path = Path(self._results.get(proc.pid, "/nonexistent"))
            written = result_path.read_text() if result_path.is_file() else ""
            self.forget(proc)
        if timed_out:
            raise ProcessError(f"{_show(command)}: no answer within {timeout:.0f} s\n{_tail(err)}")
        if written:
            out = RESULT_PREFIX + written + "\n"
        return answer(command, proc.returncode, out, err)


def answer(command: Sequence[str], code: int | None, out: str, err: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            except ValueError as exc:
                raise ProcessError(f"{_show(command)}: unreadable result ({exc})") from None
            return result
    raise ProcessError(f"{_show(command)}: exit {code}, no result\n{_tail(err or out)}")


def _show(command: Sequence[str]) -> str:
    return " ".join(command[1:4]) + " ..."


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
