"""Durable adds: acknowledge an Add only once the job is on replicas (WAIT) or on disk
(WAITAOF), as the ``durability`` setting asks.

WAIT and WAITAOF wait for the writes of *their own connection*, so the add script and the wait
go down one connection in one pipeline; on a cluster both go to the node that holds the queue's
slot. A wait that times out raises UNAVAILABLE (reason ``DURABILITY_TIMEOUT``): the job was
written on the primary and may exist, or may be lost if the primary fails now.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import RedisCluster

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
        self.mode = mode
        self.replicas = settings.durability_replicas
        self.timeout_ms = max(1, int(settings.durability_timeout * 1000))

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    async def check(self, connection: RedisConnection) -> None:
        """Refuse to start when the servers cannot give what was asked (WAITAOF is Redis 7.2+,
        with appendonly on); warn when a primary has fewer replicas than adds wait for."""
        if self.mode == "none":
            return
        rows = await connection.info_per_primary("replication")
        fewest = min(int(row.get("connected_slaves", 0)) for row in rows)
        if fewest < self.replicas:
            log.warning(
                "--durability-replicas %d but a Redis primary has %d connected replica(s): "
                "adds will answer UNAVAILABLE (DURABILITY_TIMEOUT) until enough replicas connect",
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
        raw reply."""
        script = scripts.by_name[contract.name]
        keys = scripts.keys_of(script, queue)
        for _ in range(ATTEMPTS):
            await scripts.load_all_once()
            routing: dict[str, Any] = {}
            if isinstance(client, RedisCluster):
                await client.initialize()
                routing["target_nodes"] = client.get_node_from_key(keys[0])
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
                raise DurabilityTimeout(
                    f"the job was written to the Redis primary but not confirmed "
                    f"{self._what()} within {self.timeout_ms} ms: it may exist, and may be lost "
                    "if the primary fails now. Check with GetStatus, or add it again with the "
                    "same job id",
                    queue=queue.queue,
                )
            return out
        raise Unavailable(
            f"redis unavailable: queue {queue.queue!r} kept moving between nodes "
            f"({ATTEMPTS} tries)",
            queue=queue.queue,
        )

    def _what(self) -> str:
        if self.mode == "aof":
            return f"on disk (primary and {self.replicas} replicas)"
        return f"on {self.replicas} replica{'s' if self.replicas != 1 else ''}"
