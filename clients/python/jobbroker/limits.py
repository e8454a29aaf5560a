"""The limits of the wire contract (``jobbroker.v1``) on what a request may ask: one definition,
read by the broker's validation and by the Python client and worker, which check the same values
before a call so that a bad one fails at once with the error the broker would answer."""

from __future__ import annotations

MAX_JOB_ID = 256
"""Longest custom job id, in characters."""
MAX_GROUP = 128
"""Longest group key, in characters."""
MAX_PRIORITY = 1_000_000
"""The lowest priority (1 is the highest; 0 means unprioritized)."""
MAX_ATTEMPTS = 10_000
"""Most attempts a job may be given."""
MAX_DURATION_MS = 10 * 365 * 24 * 3600 * 1000
"""Longest delay, timeout, lifespan or retention age: ten years."""
MAX_UINT32 = 2**32 - 1
"""Largest value of a uint32 field (counts such as keep-last and schedule limits)."""
MIN_EVERY_MS = 1_000
"""Shortest ``every`` of a repeatable schedule."""
MIN_LEASE_MS, MAX_LEASE_MS = 1_000, 3_600_000
"""Shortest and longest lease a worker may ask for."""
MAX_WAIT_MS = 300_000
"""Longest long-poll wait of one Lease call."""
MAX_LEASE_JOBS = 1_000
"""Most jobs one Lease call may ask for."""

MAX_LEASE_QUEUES = 100
"""Queues one Lease call may name (``queue`` plus ``more_queues``)."""
