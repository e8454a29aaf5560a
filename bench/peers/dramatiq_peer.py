"""dramatiq as the suite drives it: ``Actor.send`` (no bulk API) on a ``RedisBroker`` and one
``Worker`` with 8 threads (the CLI's default per process), in bench/.venvs/dramatiq. The broker's
namespace carries the queue's name, so every key of the run shares that prefix.

    python -m bench.peers.dramatiq_peer enqueue|work --queue Q --redis-url URL ...
"""

from __future__ import annotations

import argparse
import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.common import Recorder, now, say_ready
from bench.peers.protocol import Data, Peer, main

THREADS = 8


class Dramatiq(Peer):
    name = "dramatiq"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        logging.basicConfig(level=logging.WARNING)
        self.broker = RedisBroker(url=self.redis_url, namespace=f"dramatiq-{self.queue}")
        dramatiq.set_broker(self.broker)
        self.recorder: Recorder | None = None

        def noop(data: Data) -> None:
            if self.recorder is not None:
                self.recorder.hit(data)

        self.actor = dramatiq.actor(
            noop, actor_name="noop", queue_name="bench", broker=self.broker, max_retries=0
        )

    def add(self, data: Data) -> None:
        self.actor.send(data)

    def work(self, recorder: Recorder) -> float:
        self.recorder = recorder
        started = now()
        worker = dramatiq.Worker(self.broker, worker_threads=self.args.concurrency or THREADS)
        worker.start()
        say_ready()
        recorder.reached.wait(self.args.limit)
        worker.stop()
        self.broker.close()
        return started


if __name__ == "__main__":
    main(Dramatiq)
