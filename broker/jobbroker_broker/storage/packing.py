"""Pack Redis commands with hiredis (C) instead of redis-py's pure-Python packer.

redis-py's asyncio connections build every command in Python, one argument at a time; a batch
script call carries hundreds of arguments (AddBulk of 1,000 jobs: 17,000), so packing cost
more than everything else the broker does for the batch (``bench/profiling.md``).
``hiredis.pack_command`` (hiredis is a dependency, ``redis[hiredis]``) builds the same bytes in
C, about ten times faster. redis-py's sync client already packs with hiredis; this gives the
asyncio client the same.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import DataError

_pack: Any = hiredis.pack_command


class _HiredisPacking:
    """Mixed in front of a redis-py asyncio connection class."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # Like redis-py: a command name with spaces ("CONFIG GET") is sent as separate words.
        first = args[0]
        if isinstance(first, str):
            if " " in first:
                args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_pack(args)]
        except TypeError:
            # bytearray / memoryview arguments, which hiredis does not take: copy them.
            converted = tuple(
                bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args
            )
            try:
                return [_pack(converted)]
            except TypeError as exc:
                raise DataError(str(exc)) from exc


def pack_with_hiredis(client: Redis) -> None:
    """Make the connections ``client``'s pool creates from now on pack commands with hiredis;
    call it before the first command."""
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
