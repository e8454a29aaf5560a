"""Removing what one scenario left in Redis, and nothing else: the suite's Redis servers are
private to a peer, but jobbroker's broker keeps running between scenarios (and a Redis given by
hand may be shared), so never a FLUSHDB. Every name a run makes (queues, key prefixes, job and
worker ids) carries the run's token, so its keys are found by SCAN; the few global sets that
list them lose those members.
"""

from __future__ import annotations

import uuid

import redis

GLOBAL_SETS = ("jb:queues", "jb:scheduled-queues", "rq:queues", "rq:workers")
"""Sets shared by every user of a library, which list a run's queues or workers by name."""


def new_token() -> str:
    """A name for one run's queues and prefixes, unique and easy to scan for."""
    return f"jbbench-{uuid.uuid4().hex[:10]}"


def remove_run_keys(redis_url: str, token: str) -> int:
    """Delete every key whose name holds ``token`` and drop ``token``'s members from the global
    sets; returns the number of keys deleted."""
    if len(token) < 8:
        raise ValueError(f"token {token!r} is too short to scan for safely")
    client = redis.Redis.from_url(redis_url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{token}*", count=10_000):
            batch.append(key)
            if len(batch) >= 1_000:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        for name in GLOBAL_SETS:
            members = [m for m in client.sscan_iter(name, match=f"*{token}*", count=10_000)]
            if members:
                client.srem(name, *members)
        return deleted
    finally:
        client.close()
