"""What a Sentinel failover does to a steady stream of adds (issue 19).

    python bench/failover.py --event switchover|kill [--durability none|replicas]
        [--replicas 1] [--rate 200] [--health-interval 1.0] [--before 3] [--after 20]
        [--restart replica|primary] [--source DIR]

Starts the scale tests' Sentinel set (a primary, ``--replicas`` replicas, 3 Sentinels, down-after
1 s, no persistence), a broker process on it, one worker (concurrency 8) and a producer that
starts ``--rate`` adds per second, each with its own job id, each tried once (no client retry,
deadline 30 s). After ``--before`` seconds it either asks a Sentinel for a switchover
(``SENTINEL FAILOVER``, the old primary stays up) or SIGKILLs the primary (``kill``; it is
started again as soon as the failover is seen, as a supervisor would: as a replica of the new
primary, or with ``--restart primary`` empty and as a primary, as the audit of issue 19 did,
which the Sentinels re-point some seconds later). It goes on for ``--after`` seconds, waits
until every data node is back in sync, and then reads which acknowledged jobs the primary has.

Printed: the longest time without an acknowledgement, the errors by reason (and ErrorInfo
``stored``), the longest call, the acknowledged adds the failover lost and when they had been
acknowledged, relative to the first ``+switch-master`` announcement a Sentinel published.

``--source DIR`` runs the broker from another checkout (PYTHONPATH=DIR/broker), to measure
the code before a change. Results are recorded in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio
from jobbroker import AsyncClient, JobBrokerError, JobContext, Worker
from support import broker_command

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "scale"))
from topologies import SENTINEL_SERVICE, SentinelSet, wait_until
from topologies import client as node_client

DEADLINE_S = 30.0
SETTLE_S = 60.0


@dataclass
class Run:
    acked: list[tuple[str, float, float]] = field(default_factory=list)
    """(job id, started, acknowledged) in monotonic seconds."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    slowest_error: float = 0.0
    announced: float | None = None
    event: float = 0.0


def start_broker(
    url: str, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen[str], str]:
    extra = ["--health-interval", str(args.health_interval), "--durability", args.durability]
    env = dict(os.environ)
    if args.source:
        source = Path(args.source)
        env["PYTHONPATH"] = f"{source / 'broker'}:{source / 'clients' / 'python'}"
    proc = subprocess.Popen(
        broker_command(url, *extra),
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError(f"broker did not start: {log.read_text()[-2000:]}")


async def listen(sentinels: SentinelSet, run: Run) -> None:
    """Note when the first Sentinel announces the new primary."""
    subscribers = [redis.asyncio.Redis(port=s.port) for s in sentinels.sentinels]
    pubsubs = [s.pubsub() for s in subscribers]
    try:
        for pubsub in pubsubs:
            await pubsub.subscribe("+switch-master")
        while run.announced is None:
            for pubsub in pubsubs:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.01)
                if message is not None and run.announced is None:
                    run.announced = time.monotonic()
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()
        for subscriber in subscribers:
            await subscriber.aclose()


async def add_one(client: AsyncClient, queue: str, job_id: str, run: Run) -> None:
    started = time.monotonic()
    try:
        await client.add(queue, "work", {}, job_id=job_id, timeout=DEADLINE_S)
    except JobBrokerError as exc:
        stored = exc.metadata.get("stored")
        run.errors[exc.reason + (f" stored={stored}" if stored else "") or exc.code.name] += 1
        run.slowest_error = max(run.slowest_error, time.monotonic() - started)
        return
    run.acked.append((job_id, started, time.monotonic()))


async def produce(client: AsyncClient, queue: str, rate: float, until: float, run: Run) -> None:
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    due = time.monotonic()
    while time.monotonic() < until:
        task = asyncio.create_task(add_one(client, queue, f"job-{n}", run))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        due += 1 / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await asyncio.gather(*tasks)


def cause(sentinels: SentinelSet, event: str, restart: str) -> None:
    old = sentinels.master_port()
    if event == "switchover":
        node_client(sentinels.sentinels[0].port).execute_command(
            "SENTINEL", "FAILOVER", SENTINEL_SERVICE
        )
        return
    primary = next(s for s in sentinels.data_nodes() if s.port == old)
    primary.kill()
    wait_until(lambda: sentinels.master_port() != old, 30, "the failover")
    if restart == "replica":
        primary.start("--replicaof", "127.0.0.1", str(sentinels.master_port()))
    else:  # empty, as a primary: the Sentinels turn it into a replica some seconds later
        primary.start()


def settled(sentinels: SentinelSet) -> bool:
    """Every data node up, and every one but the primary Sentinels name a replica in sync."""
    master = sentinels.master_port()
    for server in sentinels.data_nodes():
        if not server.running:
            return False
        if server.port == master:
            continue
        info = node_client(server.port).info("replication")
        if info["role"] != "slave" or info.get("master_link_status") != "up":
            return False
        if int(info["master_port"]) != master:
            return False
    return True


async def scenario(sentinels: SentinelSet, address: str, args: argparse.Namespace) -> Run:
    run = Run()
    queue = f"bench-{os.getpid()}"
    worker = Worker(queue, address=address, concurrency=8, lease=5, wait=1, grace=1)

    @worker.handler()
    async def work(ctx: JobContext) -> None:
        return None

    listener = asyncio.create_task(listen(sentinels, run))
    async with AsyncClient(address, retries=0) as client, worker:
        start = time.monotonic()
        producer = asyncio.create_task(
            produce(client, queue, args.rate, start + args.before + args.after, run)
        )
        await asyncio.sleep(args.before)
        run.event = time.monotonic()
        await asyncio.to_thread(cause, sentinels, args.event, args.restart)
        await producer
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await asyncio.to_thread(wait_until, lambda: settled(sentinels), SETTLE_S, "all in sync")
    primary = node_client(sentinels.master_port())
    pipe = primary.pipeline(transaction=False)
    for job_id, _, _ in run.acked:
        pipe.exists(f"jb:{{{queue}}}:job:{job_id}")
    found = pipe.execute()
    report(run, [a for a, there in zip(run.acked, found, strict=True) if not there], args)
    return run


def report(run: Run, lost: list[tuple[str, float, float]], args: argparse.Namespace) -> None:
    times = sorted(at for _, _, at in run.acked)
    gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
    gap, gap_at = max(gaps) if gaps else (0.0, run.event)
    announced = run.announced
    relative = (lambda t: t - announced) if announced is not None else (lambda t: t - run.event)
    anchor = "announcement" if announced is not None else "event"
    slowest_ack = max((at - started for _, started, at in run.acked), default=0.0)
    print(
        f"{args.event}, durability {args.durability}, {args.replicas} replica(s), "
        f"health interval {args.health_interval:g} s, {args.rate:g} adds/s"
        + (f", killed primary restarted as a {args.restart}" if args.event == "kill" else "")
        + (f", broker from {args.source}" if args.source else "")
    )
    if announced is not None:
        print(f"  +switch-master {announced - run.event:.2f} s after the event")
    print(
        f"  acknowledged {len(run.acked)}; longest gap {gap:.2f} s "
        f"(from {relative(gap_at):+.2f} s after the {anchor})"
    )
    print(f"  errors {dict(run.errors) or 0}")
    print(
        f"  longest acknowledged call {slowest_ack:.2f} s, "
        f"longest failed call {run.slowest_error:.2f} s"
    )
    if lost:
        first = min(at for _, _, at in lost)
        last = max(at for _, _, at in lost)
        print(
            f"  LOST {len(lost)} acknowledged adds ({len(lost) / args.rate:.2f} s of adds), "
            f"acknowledged from {relative(first):+.2f} s to {relative(last):+.2f} s "
            f"after the {anchor}"
        )
    else:
        print("  lost 0 acknowledged adds")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--event", choices=("switchover", "kill"), required=True)
    parser.add_argument("--durability", choices=("none", "replicas"), default="replicas")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--health-interval", type=float, default=1.0)
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=20.0)
    parser.add_argument("--restart", choices=("replica", "primary"), default="replica")
    parser.add_argument("--source", default="")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="jobbroker-failover-"))
    sentinels = SentinelSet(directory / "sentinel", replicas=args.replicas)
    proc: subprocess.Popen[str] | None = None
    try:
        sentinels.start()
        proc, address = start_broker(sentinels.url, args, directory / "broker.log")
        asyncio.run(scenario(sentinels, address, args))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        sentinels.stop()
    shutil.rmtree(directory, ignore_errors=True)  # kept (with broker.log) when the run failed


if __name__ == "__main__":
    main()
