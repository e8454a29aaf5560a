"""RQ as the suite drives it: ``Queue.enqueue``, ``Queue.enqueue_many`` (one pipeline) for
bulk, and one ``SimpleWorker`` (jobs run in the worker's process, no fork per job), in
bench/.venvs/rq. Job and worker names carry the queue's name, so the run's cleanup finds them.

    python -m bench.peers.rq_peer enqueue|work --queue Q --redis-url URL ...
"""

from __future__ import annotations

import argparse
import uuid

from redis import Redis
from rq import Queue, SimpleWorker

from bench.common import Recorder, now, say_ready
from bench.peers.protocol import Data, Peer, main


class Running:
    """The worker's state: RQ imports the job function by name, so it reaches it here."""

    recorder: Recorder | None = None
    worker: SimpleWorker | None = None
    deadline = float("inf")


def noop(data: Data) -> None:
    if Running.recorder is not None:
        Running.recorder.hit(data)
    if Running.worker is not None and now() > Running.deadline:
        # From the job (the main thread: RQ installs signal handlers there), so the worker
        # stops after this job.
        Running.worker.request_stop(15, None)


def noop_path() -> str:
    return f"{noop.__module__}.{noop.__name__}"


class Rq(Peer):
    name = "rq"
    has_bulk = True

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        pool = max(args.in_flight, 10)
        self.redis = Redis.from_url(self.redis_url, max_connections=pool)
        self.rq = Queue(self.queue, connection=self.redis)

    def job_id(self) -> str:
        return f"{self.queue}-{uuid.uuid4().hex}"

    def add(self, data: Data) -> None:
        self.rq.enqueue(noop_path(), data, job_id=self.job_id())

    def add_bulk(self, batch: list[Data]) -> None:
        jobs = [
            Queue.prepare_data(noop_path(), args=(data,), job_id=self.job_id()) for data in batch
        ]
        self.rq.enqueue_many(jobs)

    def work(self, recorder: Recorder) -> float:
        worker = SimpleWorker([self.rq], connection=self.redis, name=f"{self.queue}-worker")
        started = now()
        Running.recorder, Running.worker = recorder, worker
        Running.deadline = started + self.args.limit
        say_ready()
        worker.work(
            burst=False,
            max_jobs=self.args.count,
            logging_level="WARNING",
            with_scheduler=False,
        )
        return started


if __name__ == "__main__":
    # RQ imports job functions by module path, never from __main__: run this module's twin.
    from bench.peers import rq_peer

    main(rq_peer.Rq)
