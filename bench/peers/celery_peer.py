"""Celery as the suite drives it: ``Task.apply_async`` (no bulk API: a ``group`` still sends
one message per task) and one worker process with the prefork pool, concurrency 2, in
bench/.venvs/celery. Every key of the run carries a ``global_keyprefix`` with the queue's name.

Tasks run in the pool's children, so each records its start in a Redis list (one RPUSH per
task, part of what is measured); the worker's main process watches that list's length. The
processing time counts from ``worker_ready`` (the pool is up and consuming).

    python -m bench.peers.celery_peer enqueue|work --queue Q --redis-url URL ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready

from bench.common import Recorder, now, say_ready
from bench.peers.protocol import Data, Peer, main

CONCURRENCY = 2
app = Celery("jbbench")


class Child:
    """A pool child's connection for recording starts (made after the fork)."""

    pid = 0
    client: redis.Redis | None = None
    key = ""


@app.task(name="noop", ignore_result=True)
def noop(data: Data) -> None:
    started = now()
    if Child.pid != os.getpid():
        Child.pid = os.getpid()
        Child.client = redis.Redis.from_url(app.conf.broker_url)
    assert Child.client is not None
    Child.client.rpush(app.conf.bench_done_key, json.dumps([data["i"], started]))


class CeleryPeer(Peer):
    name = "celery"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        app.conf.update(
            broker_url=self.redis_url,
            broker_pool_limit=max(args.in_flight, 10),
            broker_transport_options={"global_keyprefix": f"{self.queue}:"},
            broker_connection_retry_on_startup=True,
            task_default_queue=self.queue,
            task_ignore_result=True,
            worker_hijack_root_logger=False,
            worker_redirect_stdouts=False,
            bench_done_key=f"{self.queue}:bench-done",
        )

    def add(self, data: Data) -> None:
        noop.apply_async((data,))

    def work(self, recorder: Recorder) -> float:
        client = redis.Redis.from_url(self.redis_url)
        key = app.conf.bench_done_key
        box: dict[str, float] = {}

        def watch() -> None:
            deadline = now() + self.args.limit + 30
            while "started" not in box and now() < deadline:
                time.sleep(0.005)
            deadline = box.get("started", now()) + self.args.limit
            while now() < deadline and client.llen(key) < self.args.count:
                time.sleep(0.002)
            box["ended"] = now()
            os.kill(os.getpid(), signal.SIGTERM)  # a warm shutdown

        def on_ready(**_: Any) -> None:
            box["started"] = now()
            say_ready()

        worker_ready.connect(on_ready, weak=False)
        threading.Thread(target=watch, daemon=True).start()
        worker = app.Worker(
            pool_cls="prefork",
            concurrency=self.args.concurrency or CONCURRENCY,
            queues=[self.queue],
            loglevel="WARNING",
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            quiet=True,
        )
        worker.start()
        entries = [json.loads(item) for item in client.lrange(key, 0, -1)]
        recorder.done = len(entries)
        recorder.first_at = min((float(t) for _, t in entries), default=0.0)
        if recorder.record:
            recorder.starts = [(int(i), float(t)) for i, t in entries]
        if recorder.done >= recorder.target:
            # The main process's CPU only: the tasks ran in the pool's children.
            recorder.finish()
            recorder.finished_at = box["ended"]
            recorder.reached.set()
        return box.get("started", now())


if __name__ == "__main__":
    main(CeleryPeer)
