"""Every Redis key of a queue, in one place.

All keys of a queue share the hash tag ``{<queue>}`` so that they live in one Redis Cluster slot
and every script can touch them together. Per-job keys (``job:<id>``, ``logs:<id>``) are derived
from :attr:`QueueKeys.prefix` inside the scripts, because a script that pops a job cannot know its
id in advance; they carry the same hash tag.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "jb"
QUEUES_KEY = f"{ROOT}:queues"
"""A set of every queue name the broker has seen (not hash-tagged: a single-key command)."""
SCHEDULED_QUEUES_KEY = f"{ROOT}:scheduled-queues"
"""A set of every queue that has had a schedule, so schedule loops need not visit the others."""


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    queue: str

    @property
    def prefix(self) -> str:
        """``jb:{<queue>}:``, the start of every key of the queue."""
        return f"{ROOT}:{{{self.queue}}}:"

    def key(self, name: str) -> str:
        """The queue key called ``name`` (``waiting``, ``events``...)."""
        if name == "prefix":
            return self.prefix
        if name not in QUEUE_KEY_NAMES:
            raise KeyError(f"unknown queue key {name!r}")
        return self.prefix + name

    def job(self, job_id: str) -> str:
        """The hash of one job."""
        return f"{self.prefix}job:{job_id}"

    def logs(self, job_id: str) -> str:
        """The list of one job's log lines."""
        return f"{self.prefix}logs:{job_id}"

    def schedule(self, key: str) -> str:
        """The hash of one schedule (repeatable job): its definition, template and next run."""
        return f"{self.prefix}schedule:{key}"


QUEUE_KEY_NAMES = frozenset(
    {
        "ids",  # counter for generated job ids
        "seq",  # FIFO/LIFO sequence of the waiting set
        "waiting",  # zset: priority band + sequence
        "delayed",  # zset: run-at ms
        "active",  # zset: lease deadline ms
        "completed",  # zset: finish ms
        "failed",  # zset: finish ms
        "cancelled",  # zset: finish ms
        "expiring",  # zset: lifespan deadline ms of jobs not yet started
        "events",  # stream of the queue's events
        "signals",  # stream of lease signals for workers (cancel requested, lease lost)
        "meta",  # hash: the queue's settings and pause flag
        "limiter",  # counter of jobs started in the current rate-limit window
        "groups",  # zset: groups with parked jobs, by when they may come back (lib/groups.lua)
        "schedules",  # zset: schedule keys by next run ms (+inf once ended)
        "workers",  # hash: worker id -> "<last seen ms>|<queues>" (registry.py)
        "schemas",  # hash: job name -> JSON Schema of its data (job_schemas.py)
        "clock",  # ms the test clock moved the queue's time forward (Settings.test_clock)
    }
)
