"""Durable adds: acknowledge an Add only once the job is on replicas (WAIT) or on disk
(WAITAOF), as the ``durability`` setting asks.

WAIT and WAITAOF wait for the writes of *their own connection*, so the add script and the wait
go down one connection in one pipeline; on a cluster both go to the node that holds the queue's
slot. Either way the call answers UNAVAILABLE (reason ``DURABILITY_TIMEOUT``, retryable) when
the job is not as durable as asked, and its ErrorInfo metadata ``stored`` says which case it is:

- ``stored=false``: the primary has fewer replicas online than adds wait for (after a failover,
  the promoted replica has none until another server replicates it), so the add is refused
  before anything is written, at once, instead of waiting for a WAIT that cannot succeed;
- ``stored=true``: the job was written on the primary but the wait timed out: it exists, and
  may be lost if the primary fails now; adding it again with the same job id answers
  ``duplicate``.

The replica count of each primary is read (INFO replication) before its first durable add,
again after a wait times out, and while too low at most every ``RECHECK_S``.

Whatever the durability, ``admit`` refuses adds (REDIS_UNAVAILABLE, ``stored=false``) while a
Sentinel promotes a replica (``RedisConnection.fence``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode

from ..errors import DurabilityTimeout, Unavailable
from ..settings import ConfigError, Settings
from .connection import Client, RedisConnection
from .contracts import Arg, Contract
from .keys import QueueKeys
from .scripts import Scripts

log = logging.getLogger(__name__)

MODES = ("none", "replicas", "aof")
WAITAOF_VERSION = (7, 2)
_REDIRECTED = (redis.exceptions.MovedError, redis.exceptions.AskError)
ATTEMPTS = 3
"""Tries when the queue's slot moved (a redirect means the script did not run: safe to retry)."""
RECHECK_S = 0.2
"""Seconds between two reads of the replica count of a primary that has too few: how long adds
may still be refused once enough replicas are back."""
READ_SLACK_S = 0.5
"""What a wait's reply needs beyond ``--durability-timeout`` to arrive within ``--redis-timeout``
(Redis ends a WAIT on its timer, up to 1/hz late, and the reply then crosses the network)."""


def online_replicas(info: dict[str, Any]) -> int:
    """Replicas of an INFO replication reply that are in sync (``state=online``): only they
    acknowledge a WAIT (``connected_slaves`` also counts one still loading a full sync)."""
    count = 0
    for name, value in info.items():
        if name.startswith("slave") and name[5:].isdigit():
            state = value.get("state") if isinstance(value, dict) else None
            count += state == "online"
    return count


class Durability:
    """How long an add waits before it is acknowledged."""

    def __init__(self, settings: Settings) -> None:
        mode = settings.durability
        if mode not in MODES:
            raise ConfigError(f"--durability {mode!r}: use one of {', '.join(MODES)}")
        minimum = 1 if mode == "replicas" else 0
        if settings.durability_replicas < minimum:
            raise ConfigError(
                f"--durability-replicas {settings.durability_replicas}: must be at least "
                f"{minimum} with --durability {mode}"
            )
        if settings.durability_timeout <= 0:
            raise ConfigError("--durability-timeout: must be more than 0 seconds")
        if mode != "none" and settings.durability_timeout + READ_SLACK_S > settings.redis_timeout:
            raise ConfigError(
                f"--durability-timeout {settings.durability_timeout:g}: must be at least "
                f"{READ_SLACK_S:g} s below --redis-timeout ({settings.redis_timeout:g}), which "
                "bounds the wait for every Redis reply, the WAIT's too; lower "
                "--durability-timeout or raise --redis-timeout"
            )
        self.mode = mode
        self.replicas = settings.durability_replicas
        self.timeout_ms = max(1, int(settings.durability_timeout * 1000))
        self._connection: RedisConnection | None = None
        self._online: dict[str, tuple[int, int, float]] = {}
        """Per primary (a cluster node's name; "" otherwise): the connection's ``switches``
        when read, its replicas online, and when they were read."""

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    async def check(self, connection: RedisConnection) -> None:
        """Refuse to start when the servers cannot give what was asked (WAITAOF is Redis 7.2+,
        with appendonly on); warn when a primary has fewer replicas than adds wait for."""
        self._connection = connection
        if self.mode == "none":
            return
        rows = await connection.info_per_primary("replication")
        fewest = min(int(row.get("connected_slaves", 0)) for row in rows)
        if fewest < self.replicas:
            log.warning(
                "--durability-replicas %d but a Redis primary has %d connected replica(s): "
                "adds will answer UNAVAILABLE (DURABILITY_TIMEOUT, not stored) until enough "
                "replicas connect",
                self.replicas,
                fewest,
            )
        if self.mode != "aof":
            return
        for version in await connection.server_versions():
            if version[:2] < WAITAOF_VERSION:
                raise ConfigError(
                    "--durability aof waits with WAITAOF, which needs Redis 7.2 or newer; this "
                    f"Redis is {'.'.join(map(str, version))}. Upgrade Redis, or use "
                    "--durability replicas (the job on replicas' memory) and an AOF "
                    "fsync policy of your choice"
                )
        try:
            appendonly = await connection.config_per_primary("appendonly")
        except redis.exceptions.ResponseError as exc:  # CONFIG may be forbidden (managed Redis)
            log.warning("could not read appendonly (%s); --durability aof needs it on", exc)
            return
        if "no" in appendonly:
            raise ConfigError(
                "--durability aof waits for the append-only file, but appendonly is off on "
                "this Redis (CONFIG SET appendonly yes, or appendonly yes in redis.conf)"
            )

    def admit(self, queue: str) -> None:
        """Refuse an add, before anything is written, while a Sentinel promotes a replica
        (``RedisConnection.fence``): with any durability, what the old primary takes then is
        lost."""
        if self._connection is not None and self._connection.fenced:
            raise Unavailable(
                "redis unavailable: the job was not stored: a Sentinel is promoting a new "
                "Redis primary, and what the old one takes now would be lost. Retry shortly "
                "with the same job id",
                queue=queue,
                stored="false",
            )

    def _wait_command(self) -> list[Arg]:
        if self.mode == "aof":
            return ["WAITAOF", 1, self.replicas, self.timeout_ms]
        return ["WAIT", self.replicas, self.timeout_ms]

    def _acknowledged(self, reply: Any) -> bool:
        if self.mode == "aof":
            local, replicas = reply
            return int(local) >= 1 and int(replicas) >= self.replicas
        return int(reply) >= self.replicas

    async def call(
        self,
        scripts: Scripts,
        client: Client,
        contract: Contract[Any, Any],
        queue: QueueKeys,
        args: Sequence[Arg],
    ) -> Any:
        """Run a writing script, then wait for its durability, on one connection; returns its
        raw reply. Refused before the script runs when the primary has too few replicas."""
        script = scripts.by_name[contract.name]
        keys = scripts.keys_of(script, queue)
        for _ in range(ATTEMPTS):
            await scripts.load_all_once()
            routing: dict[str, Any] = {}
            node: ClusterNode | None = None
            if isinstance(client, RedisCluster):
                await client.initialize()
                node = client.get_node_from_key(keys[0])
                routing["target_nodes"] = node
            online = await self._replicas_online(client, node)
            if online < self.replicas:
                raise DurabilityTimeout(
                    f"the job was not stored: the Redis primary has {online} replica(s) in "
                    f"sync and adds wait for {self.replicas} (--durability-replicas), as after "
                    "a failover until a replica follows the new primary. Retry later with the "
                    "same job id",
                    queue=queue.queue,
                    stored="false",
                    replicas_online=str(online),
                )
            pipe: Any = client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **routing)
            pipe.execute_command(*self._wait_command(), **routing)
            if isinstance(client, RedisCluster):
                out, waited = await pipe.execute(raise_on_error=False, allow_redirections=False)
            else:
                out, waited = await pipe.execute(raise_on_error=False)
            if isinstance(out, redis.exceptions.NoScriptError):
                scripts.loaded = False
                continue
            if isinstance(out, _REDIRECTED) and isinstance(client, RedisCluster):
                await client.aclose()  # the slot moved: read the topology again
                continue
            if isinstance(out, Exception):
                raise out
            if isinstance(waited, Exception):
                raise waited
            if not self._acknowledged(waited):
                self._online.pop(self._key(node), None)  # read the replicas again next time
                raise DurabilityTimeout(
                    f"the job was stored on the Redis primary but not confirmed "
                    f"{self._what()} within {self.timeout_ms} ms: it exists, and may be lost "
                    "if the primary fails now. Adding it again with the same job id answers "
                    "duplicate once it is stored; GetStatus shows it",
                    queue=queue.queue,
                    stored="true",
                )
            return out
        raise Unavailable(
            f"redis unavailable: queue {queue.queue!r} kept moving between nodes "
            f"({ATTEMPTS} tries)",
            queue=queue.queue,
        )

    @staticmethod
    def _key(node: ClusterNode | None) -> str:
        return node.name if node is not None else ""

    async def _replicas_online(self, client: Client, node: ClusterNode | None) -> int:
        """The primary's replicas in sync, as last read; read again when unknown, when the
        connections moved to another primary since, or when too few and ``RECHECK_S`` old."""
        if self.replicas == 0:
            return 0
        key = self._key(node)
        switches = self._connection.switches if self._connection is not None else 0
        known = self._online.get(key)
        now = time.monotonic()
        last, read_at = (known[1], known[2]) if known and known[0] == switches else (None, 0.0)
        if last is not None and (last >= self.replicas or now - read_at < RECHECK_S):
            return last
        # One read at a time: callers meanwhile keep the last count (unknown: they go on to a
        # WAIT, which is bounded).
        self._online[key] = (switches, self.replicas if last is None else last, now)
        if isinstance(client, RedisCluster):
            info = await client.info("replication", target_nodes=node)
        else:
            info = await client.info("replication")
        online = online_replicas(dict(info))
        self._online[key] = (switches, online, time.monotonic())
        return online

    def _what(self) -> str:
        if self.mode == "aof":
            return f"on disk (primary and {self.replicas} replicas)"
        return f"on {self.replicas} replica{'s' if self.replicas != 1 else ''}"
