"""The command line every Python peer answers, and the timing loops they share.

    python -m bench.peers.<peer> enqueue --queue Q --mode seq|inflight|bulk|paced|fill ...
    python -m bench.peers.<peer> work --queue Q --count N --limit S [--record]

A peer module supplies a :class:`Peer`: how to add one job (and a batch, when its library has
a bulk API) and how to run one worker until the :class:`~bench.common.Recorder` has seen
``--count`` jobs or ``--limit`` seconds passed. The loops here do the timing, so every peer is
measured the same way. ``enqueue`` answers ``{"count", "seconds"}`` (``paced`` adds ``sent``:
``[i, sent, acknowledged]`` per job; ``fill`` adds exactly ``--count`` jobs, in bulk when the
library has a bulk API, else 100 in flight, for the processing scenario to work off);
``work`` answers ``{"done", "seconds", "starts"}``, the seconds counted from just before the
worker starts, and the timing points and CPU seconds of :class:`~bench.common.Recorder`.
``--remove-on-complete`` makes ``fill`` add jobs that are deleted once completed (peers that
support it: :attr:`Peer.has_remove_on_complete`).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Recorder, emit, job_data, now

Data = dict[str, Any]
AddOne = Callable[[Data], Any]
"""Adds one job; returns None (a sync library) or an awaitable (an asyncio one)."""


class Peer:
    """One job library, as the suite drives it. Subclasses override what their library has."""

    name = "peer"
    is_async = False
    """Whether :meth:`add` and :meth:`add_bulk` return awaitables."""
    has_bulk = False
    has_remove_on_complete = False
    """Whether :meth:`add` and :meth:`add_bulk` honour ``--remove-on-complete``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.queue: str = args.queue
        self.redis_url: str = args.redis_url
        self.remove_on_complete: bool = args.remove_on_complete

    async def open(self) -> None:
        """Connect (asyncio peers); sync peers connect in ``__init__``."""

    async def close(self) -> None:
        """Disconnect."""

    def add(self, data: Data) -> Any:
        raise NotImplementedError

    def add_bulk(self, batch: list[Data]) -> Any:
        raise NotImplementedError

    def work(self, recorder: Recorder) -> float:
        """Run one worker until ``recorder.reached`` or ``--limit`` seconds, then stop it;
        return when it started (:func:`bench.common.now`). Call ``say_ready`` once consuming."""
        raise NotImplementedError


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["enqueue", "work"])
    parser.add_argument("--queue", required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--address", default="", help="the broker (jobbroker only)")
    parser.add_argument(
        "--mode", choices=["seq", "inflight", "bulk", "paced", "fill"], default="seq"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds (seq/inflight/bulk)")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s (paced)")
    parser.add_argument("--count", type=int, default=1000, help="jobs (paced, work)")
    parser.add_argument("--limit", type=float, default=30.0, help="seconds at most (work)")
    parser.add_argument("--record", action="store_true", help="record each job's start (work)")
    parser.add_argument("--concurrency", type=int, default=0, help="override (work)")
    parser.add_argument(
        "--remove-on-complete", action="store_true", help="jobs deleted once completed (fill)"
    )
    parser.add_argument(
        "--payload-bytes", type=int, default=0, help="pad each job's data by this much (fill)"
    )
    return parser.parse_args(argv)


def main(peer_class: type[Peer], argv: list[str] | None = None) -> None:
    args = parse(argv)
    # Made first: "ready" (Recorder.loaded) is the library imported, before the peer connects.
    recorder = Recorder(target=args.count, record=args.record)
    peer = peer_class(args)
    if args.command == "work":
        started = peer.work(recorder)
        result = recorder.result(started)
        result["done"] = recorder.done
        emit(result)
        return
    if args.remove_on_complete and not peer.has_remove_on_complete:
        emit({"count": 0, "seconds": 0.0, "unsupported": True})
        return
    if peer.is_async:
        emit(asyncio.run(enqueue_async(peer, args)))
    else:
        emit(enqueue_sync(peer, args))


# --- asyncio producers ------------------------------------------------------------------------


async def enqueue_async(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    await peer.open()
    try:
        if args.mode == "paced":
            return await paced_async(peer.add, args.rate, args.count, args.in_flight)
        if args.mode == "fill":
            return await fill_async(peer, args)
        if args.mode == "bulk" and not peer.has_bulk:
            return {"count": 0, "seconds": 0.0, "unsupported": True}
        counter = iter(range(1 << 62))
        # One call before the clock starts: connections made, scripts loaded.
        if args.mode == "bulk":
            await peer.add_bulk([job_data(next(counter)) for _ in range(args.batch)])
        else:
            await peer.add(job_data(next(counter)))
        warmup = args.batch if args.mode == "bulk" else 1
        deadline = now() + args.duration
        lanes = args.in_flight if args.mode == "inflight" else 1

        async def lane() -> int:
            added = 0
            while now() < deadline:
                if args.mode == "bulk":
                    await peer.add_bulk([job_data(next(counter)) for _ in range(args.batch)])
                    added += args.batch
                else:
                    await peer.add(job_data(next(counter)))
                    added += 1
            return added

        started = now()
        counts = await asyncio.gather(*(lane() for _ in range(lanes)))
        return {"count": sum(counts), "seconds": now() - started, "warmup": warmup}
    finally:
        await peer.close()


def fill_batch(args: argparse.Namespace) -> int:
    """``--batch`` jobs per bulk call, fewer for large payloads: at most about 2 MB a call."""
    batch: int = args.batch
    return max(1, min(batch, 2_000_000 // (int(args.payload_bytes) + 200)))


async def fill_async(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """Add exactly ``--count`` jobs: ``--batch`` per bulk call, or one per add, ``--in-flight``
    at once; each job's data padded by ``--payload-bytes``."""
    count, batch, pad = args.count, fill_batch(args), "x" * args.payload_bytes
    started = now()
    if peer.has_bulk:
        for first in range(0, count, batch):
            last = min(count, first + batch)
            await peer.add_bulk([job_data(i, pad) for i in range(first, last)])
    else:
        numbers = iter(range(count))

        async def lane() -> None:
            for i in numbers:
                await peer.add(job_data(i, pad))

        await asyncio.gather(*(lane() for _ in range(args.in_flight)))
    return {"count": count, "seconds": now() - started}


async def paced_async(
    add: Callable[[Data], Awaitable[Any]], rate: float, count: int, in_flight: int
) -> Data:
    """Job ``i`` is due at ``i / rate`` seconds and sent then, whatever the earlier ones do,
    unless ``in_flight`` adds are still unanswered: then it waits for one (the schedule slips
    and the answer's ``seconds`` tells the rate reached). A failed add is counted, not fatal."""
    sent: list[list[float]] = []
    slots = asyncio.Semaphore(in_flight)
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        try:
            data = job_data(i)
            await add(data)
            sent.append([i, data["t"], now()])
        except Exception:
            failed += 1
        finally:
            slots.release()

    tasks = []
    start = now()
    for i in range(count):
        delay = start + i / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return {"count": count, "seconds": now() - start, "sent": sent, "failed": failed}


# --- sync producers: threads ---------------------------------------------------------------


def enqueue_sync(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "paced":
        return paced_sync(peer.add, args.rate, args.count)
    if args.mode == "fill":
        return fill_sync(peer, args)
    if args.mode == "bulk" and not peer.has_bulk:
        return {"count": 0, "seconds": 0.0, "unsupported": True}
    lock = threading.Lock()
    counter = iter(range(1 << 62))
    # One call before the clock starts: connections made, scripts loaded.
    if args.mode == "bulk":
        peer.add_bulk([job_data(next(counter)) for _ in range(args.batch)])
    else:
        peer.add(job_data(next(counter)))
    warmup = args.batch if args.mode == "bulk" else 1
    deadline = now() + args.duration

    def next_i() -> int:
        with lock:
            return next(counter)

    def lane() -> int:
        added = 0
        while now() < deadline:
            if args.mode == "bulk":
                peer.add_bulk([job_data(next_i()) for _ in range(args.batch)])
                added += args.batch
            else:
                peer.add(job_data(next_i()))
                added += 1
        return added

    lanes = args.in_flight if args.mode == "inflight" else 1
    started = now()
    with ThreadPoolExecutor(lanes) as pool:
        counts = list(pool.map(lambda _: lane(), range(lanes)))
    return {"count": sum(counts), "seconds": now() - started, "warmup": warmup}


def fill_sync(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`fill_async` for a sync library: threads instead of tasks."""
    count, batch, pad, in_flight = (
        args.count,
        fill_batch(args),
        "x" * args.payload_bytes,
        args.in_flight,
    )
    started = now()
    if peer.has_bulk:
        for first in range(0, count, batch):
            peer.add_bulk([job_data(i, pad) for i in range(first, min(count, first + batch))])
    else:
        lock = threading.Lock()
        numbers = iter(range(count))

        def lane() -> None:
            while True:
                with lock:
                    i = next(numbers, None)
                if i is None:
                    return
                peer.add(job_data(i, pad))

        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(lambda _: lane(), range(in_flight)))
    return {"count": count, "seconds": now() - started}


def paced_sync(add: Callable[[Data], Any], rate: float, count: int) -> Data:
    """Each job sent when due, on a few threads so that one slow add does not hold back the
    next (the schedule slips when all of them are busy). A failed add is counted, not fatal."""
    sent: list[list[float]] = []
    failed: list[int] = []
    start = now()

    def one(i: int) -> None:
        delay = start + i / rate - now()
        if delay > 0:
            time.sleep(delay)
        try:
            data = job_data(i)
            add(data)
            sent.append([i, data["t"], now()])
        except Exception:
            failed.append(i)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return {"count": count, "seconds": now() - start, "sent": sent, "failed": len(failed)}
