"""Where jobbroker's time goes during a processing run: py-spy on the broker and the worker,
``INFO commandstats`` on Redis, and each side's CPU per job, in one command.

    python -m bench.profile [--jobs 100000] [--remove-on-complete] [--concurrency 100]
                            [--rate 100] [--native] [--py-spy PATH] [--out DIR]
    python -m bench.profile --tool strace [--jobs 100000]    # strace -c: system calls per job
    python -m bench.profile --tool none [--concurrency 400]  # the figures alone, unperturbed
    python -m bench.profile --scenario add-rpc [--seconds 10]  # the broker under single Adds
    python -m bench.profile --tool none --jobs 20000 --waiting 1000000   # with a backlog

Starts a private Redis and a broker, fills ``--jobs`` jobs, starts one worker process (the
suite's jobbroker peer: the Worker SDK, concurrency 100, a no-op handler), and samples the
broker and the worker with ``py-spy record --format raw`` from the worker's start to its last
job. Prints the processing figures and CPU per job (as the suite does), Redis' commands per
job, and for each process its samples by package, the functions with the most samples of
their own (self) and in their stacks (inclusive). The folded stacks stay in ``--out`` for a
flame graph (``flamegraph.pl``, speedscope).

py-spy is not a dependency of the project: install it into a venv of its own, for example
``python3 -m venv bench/.venvs/tools && bench/.venvs/tools/bin/pip install py-spy`` (the
default ``--py-spy``). Sampling costs CPU on a 2-core machine: the rates measured while
profiling are lower than the suite's; the shares are what count. ``--native`` adds the C
frames (grpc's cygrpc, upb, uvloop), pausing the process at each sample.

``--tool strace`` counts the system calls of the broker and the worker instead (``strace -c -f``,
every thread): how many writes, sendmsgs, epoll waits and futex wake-ups each job costs. strace
slows the processes down a lot; the counts per job are what it is for.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cleanup import new_token
from bench.common import Processes, now, processing_fields
from bench.cpu import Meter, load1
from bench.extras import start_broker
from bench.redis_server import RedisServers
from bench.scenarios import ROOT, PeerRunner, Sizes, peer_specs

DEFAULT_PY_SPY = ROOT / "bench" / ".venvs" / "tools" / "bin" / "py-spy"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")
PACKAGES = (
    ("jobbroker_broker", "broker (jobbroker_broker)"),
    ("jobbroker/", "SDK/client (jobbroker)"),
    ("bench/", "the benchmark's handler"),
    ("grpc", "grpc (Python side)"),
    ("google/protobuf", "protobuf"),
    ("redis/", "redis-py"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("threading", "threading"),
)
"""(path fragment, label): the first that matches a frame's file names its package."""
IDLE = frozenset(
    {"epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect", "nanosleep", "futex"}
)
"""Leaf functions of a thread that waits: with ``--native`` py-spy samples threads blocked in
them too (it cannot tell idle from busy then), so they are counted apart."""


NATIVE = (
    ("cygrpc", "grpc C core (cygrpc)"),
    ("_message", "protobuf (upb)"),
    ("upb", "protobuf (upb)"),
    ("libc.so", "libc (syscalls: write, sendmsg, recv...)"),
    ("libpython", "CPython interpreter"),
    ("object.h", "CPython interpreter"),
    ("_asynciomodule", "asyncio (C)"),
    ("loop.c", "uvloop/libuv"),
    ("core.c", "uvloop/libuv"),
    ("uv", "uvloop/libuv"),
    ("reader.c", "hiredis"),
    ("hiredis", "hiredis"),
)
"""(file fragment, label) for the C frames ``--native`` shows."""
OURS = ("jobbroker_broker", "jobbroker/", "redis/", "grpc", "google/protobuf", "bench/")
"""Python frames worth listing by inclusive time (the event loop's are in every stack)."""


def package(file: str) -> str:
    if file.endswith(".py") or file.startswith("<"):
        for fragment, label in PACKAGES:
            if fragment in file:
                return label
        return "other Python"
    for fragment, label in NATIVE:
        if fragment in file:
            return label
    return "other native"


def split(frame: str) -> tuple[str, str]:
    """``function (file:line)`` -> (``function (file)``, file)."""
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return f"{match['function']} ({match['file']})", match["file"]


def summarize(folded: Path, top: int = 20) -> dict[str, Any]:
    """Samples of a ``py-spy --format raw`` file: by package (of the leaf frame), the
    functions with the most samples of their own and in their stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [split(frame) for frame in stack.split(";") if frame]
        # The first frame is the thread ("process 123:..."/"thread (0x...)") py-spy adds.
        frames = [f for f in frames if f[1]]
        if not frames:
            continue
        leaf, leaf_file = frames[-1]
        if leaf.split(" (", 1)[0] in IDLE:
            idle += count
            continue
        total += count
        # grpc's poller runs in a Python thread of its own (cygrpc's completion queue).
        thread = (
            "other threads (grpc's poller)"
            if any(name.startswith("Thread._bootstrap ") for name, _ in frames)
            else "main thread (event loop)"
        )
        threads[thread] += count
        own[leaf] += count
        packages[package(leaf_file)] += count
        for name in {
            name for name, file in frames if file.endswith(".py") and any(o in file for o in OURS)
        }:
            inclusive[name] += count
    return {
        "samples": total,
        "idle": idle,
        "threads": threads.most_common(),
        "packages": packages.most_common(),
        "self": own.most_common(top),
        "inclusive": inclusive.most_common(top),
    }


def share_lines(title: str, rows: list[tuple[str, int]], total: int) -> list[str]:
    lines = [title]
    for name, count in rows:
        lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    return lines


def start_py_spy(
    py_spy: str, pid: int, output: Path, rate: int, native: bool
) -> subprocess.Popen[bytes]:
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    command += ["--output", str(output)]
    command += ["--native"] if native else ["--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    """py-spy writes its file when interrupted (or when its target exits)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_strace(pid: int, output: Path) -> subprocess.Popen[bytes]:
    command = ["strace", "-c", "-f", "-q", "-p", str(pid), "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def syscall_lines(path: Path, jobs: int, top: int = 12) -> list[str]:
    """The most frequent system calls of an ``strace -c`` summary, per job."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[3].isdigit() and not fields[-1].startswith("total"):
            rows.append((fields[-1], int(fields[3])))
    rows.sort(key=lambda row: -row[1])
    total = sum(calls for _, calls in rows)
    head = f"{total / max(jobs, 1):.2f} system calls per job: "
    return [head + ", ".join(f"{name} {calls / max(jobs, 1):.3f}" for name, calls in rows[:top])]


def output_directory(args: argparse.Namespace) -> Path:
    """Where the samples go: ``--out``, else a new temporary directory (kept: it is the
    output); none is made for ``--tool none``, which writes nothing."""
    if args.tool == "none" and not args.out:
        return Path(tempfile.gettempdir())
    out = Path(args.out or tempfile.mkdtemp(prefix="jbbench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def profile(args: argparse.Namespace) -> str:
    out = output_directory(args)
    procs = Processes()
    servers = RedisServers()
    spies: list[subprocess.Popen[bytes]] = []
    try:
        server = servers.start("profile")
        broker, address = start_broker(procs, server.url)
        sizes = Sizes.full()
        runner = PeerRunner(
            procs, peer_specs()["jobbroker"], server.url, new_token(), sizes, address, [broker.pid]
        )
        queue = f"{runner.queue}-profile"
        waiting = max(args.jobs, args.waiting)
        runner.fill(queue, waiting, args.remove_on_complete, args.payload_bytes)
        load = load1()
        command = runner.command("work", queue, "--count", str(args.jobs), "--limit", "600")
        command += ["--concurrency", str(args.concurrency)]
        meter = Meter(server.url, {"broker": [broker.pid]}).start()
        spawned = now()
        worker = procs.start(command, cwd=str(ROOT))
        procs.wait_ready(worker, command, 60)
        if args.tool == "strace":
            spies = [
                start_strace(broker.pid, out / "broker.strace"),
                start_strace(worker.pid, out / "worker.strace"),
            ]
        elif args.tool == "py-spy":
            spies = [
                start_py_spy(args.py_spy, broker.pid, out / "broker.txt", args.rate, args.native),
                start_py_spy(args.py_spy, worker.pid, out / "worker.txt", args.rate, args.native),
            ]
        answer = procs.finish(worker, command, timeout=900)
        exited = now()
        for spy in spies:
            stop_py_spy(spy)
        figures = processing_fields(answer, spawned)
        cpu = meter.per_job(figures["jobs"], exited - spawned)
    finally:
        for spy in spies:
            stop_py_spy(spy)
        procs.kill_all()
        servers.stop_all()
    lines = [
        f"processing {figures['jobs']:,} jobs of {waiting:,} waiting"
        f"{f' ({args.payload_bytes:,} B each)' if args.payload_bytes else ''}"
        f"{' (removed on complete)' if args.remove_on_complete else ''}: "
        f"{figures['from_start']:,.0f} jobs/s from start, {figures['from_ready']:,.0f} from "
        f"ready, {figures['steady']:,.0f} steady (concurrency {args.concurrency}, "
        f"{args.tool}; load "
        f"{load} -> {load1()})",
        f"CPU µs per job: worker {figures['worker_us_per_job']:.1f}, broker "
        f"{cpu['broker']['us_per_job']:.1f}, Redis {cpu['redis']['us_per_job']:.1f} "
        f"(% of a core: worker {figures['worker_core_pct']:.0f}, broker "
        f"{cpu['broker']['core_pct']:.0f}, Redis {cpu['redis']['core_pct']:.0f})",
        "Redis commands per job: "
        + "; ".join(
            f"{c['command']} {c['calls_per_job']:.3f} calls, {c['us_per_job']:.2f} µs"
            for c in cpu["redis_commands"]
        ),
    ]
    if args.tool == "none":
        return "\n".join(lines)
    if args.tool == "strace":
        for name in ("broker", "worker"):
            traced = out / f"{name}.strace"
            if traced.is_file():
                lines += [f"{name}: " + line for line in syscall_lines(traced, figures["jobs"])]
        return "\n".join(lines)
    return "\n".join(lines) + "\n" + report_files(out)


def profile_add_rpc(args: argparse.Namespace) -> str:
    """py-spy on the broker while raw stubs send one Add RPC per job, 100 in flight."""
    out = Path(args.out or tempfile.mkdtemp(prefix="jbbench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    servers = RedisServers()
    spy = None
    try:
        server = servers.start("profile")
        broker, address = start_broker(procs, server.url)
        command = [sys.executable, "-m", "bench.transport", "add", "--address", address]
        command += ["--queue", f"{new_token()}-add", "--in-flight", "100"]
        command += ["--duration", str(args.seconds)]
        load = load1()
        meter = Meter(server.url, {"broker": [broker.pid]}).start()
        spy = start_py_spy(args.py_spy, broker.pid, out / "broker.txt", args.rate, args.native)
        answer = procs.run(command, timeout=args.seconds + 60, cwd=str(ROOT))
        stop_py_spy(spy)
        calls = int(answer["count"])
        cpu = meter.per_job(calls, float(answer["seconds"]))
    finally:
        if spy is not None:
            stop_py_spy(spy)
        procs.kill_all()
        servers.stop_all()
    lines = [
        f"one Add RPC per job, 100 in flight: {calls / answer['seconds']:,.0f} calls/s (load "
        f"{load} -> {load1()})",
        f"CPU µs per call: broker {cpu['broker']['us_per_job']:.0f}, client "
        f"{answer['cpu_s'] / max(calls, 1) * 1e6:.0f}, Redis {cpu['redis']['us_per_job']:.1f}",
    ]
    return "\n".join(lines) + "\n" + report_files(out)


def report_files(out: Path) -> str:
    """The summaries of the folded stacks already in ``out`` (``--summarize``)."""
    lines = []
    for name in ("broker", "worker"):
        folded = out / f"{name}.txt"
        if folded.is_file():
            summary = summarize(folded)
            total = summary["samples"]
            lines += ["", f"== {name}: {total:,} busy samples, {summary['idle']:,} waiting"]
            lines += share_lines("by thread:", summary["threads"], total)
            lines += share_lines("by package (leaf frame):", summary["packages"], total)
            lines += share_lines("self:", summary["self"], total)
            lines += share_lines(
                "inclusive (Python frames of the project and its libraries):",
                summary["inclusive"],
                total,
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--remove-on-complete", action="store_true")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="C frames too (pauses the target)")
    parser.add_argument("--py-spy", default=str(DEFAULT_PY_SPY))
    parser.add_argument("--out", default="", help="where the folded stacks go")
    parser.add_argument(
        "--summarize", action="store_true", help="only summarize the stacks already in --out"
    )
    parser.add_argument("--tool", choices=["py-spy", "strace", "none"], default="py-spy")
    parser.add_argument(
        "--scenario",
        choices=["processing", "add-rpc"],
        default="processing",
        help="add-rpc: the broker while raw stubs send one Add per job, 100 in flight",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="add-rpc: how long")
    parser.add_argument("--concurrency", type=int, default=100, help="the worker's")
    parser.add_argument(
        "--waiting", type=int, default=0, help="fill this many (a backlog), process --jobs"
    )
    parser.add_argument("--payload-bytes", type=int, default=0, help="padding per job")
    args = parser.parse_args(argv)
    if args.summarize:
        print(report_files(Path(args.out)))
        return 0
    if args.tool == "py-spy" and not Path(args.py_spy).is_file():
        print(f"py-spy not found at {args.py_spy} (see this module's help)", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        print(profile_add_rpc(args) if args.scenario == "add-rpc" else profile(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
