"""The Lua scripts: one file per state transition under ``lua/``, loaded once, called by name.

Each script's header has a ``Keys:`` line naming, in order, the queue keys it takes as KEYS
(see :mod:`keys`). ``-- @include lib/x.lua`` lines are replaced by that file's text, so shared
helpers are written once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from .keys import QueueKeys

_INCLUDE = re.compile(r"^-- @include (\S+)$", re.MULTILINE)
_KEYS_LINE = re.compile(r"^\s*Keys:\s*(.+)$", re.MULTILINE)

Arg = str | bytes | int | float


def _read(name: str) -> str:
    return (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")


def _expand(source: str, seen: frozenset[str] = frozenset()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"recursive include of {name}")
        return _expand(_read(name), seen | {name})

    return _INCLUDE.sub(include, source)


@dataclass(frozen=True, slots=True)
class Script:
    """One loaded script: its expanded source, SHA and the queue keys it takes."""

    name: str
    source: str
    sha: str
    key_names: tuple[str, ...]

    def keys(self, queue: QueueKeys) -> list[str]:
        return [queue.key(name) for name in self.key_names]


def load_script(name: str) -> Script:
    source = _expand(_read(f"{name}.lua"))
    match = _KEYS_LINE.search(source)
    if match is None:
        raise ValueError(f"{name}.lua has no 'Keys:' line in its header")
    key_names = tuple(match.group(1).split())
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(), key_names)


SCRIPT_NAMES = (
    "add",
    "lease",
    "report",
    "complete",
    "fail",
    "release",
    "cancel",
    "promote",
    "promote_due",
    "reap",
    "expire",
    "retry",
    "remove",
    "get",
    "pause",
    "drain",
    "clean",
    "obliterate",
    "retry_failed",
    "promote_delayed",
    "fire_schedule",
    "worker_seen",
    "list_workers",
)


class Scripts:
    """All scripts, called with EVALSHA and re-loaded after a NOSCRIPT (a restarted Redis)."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._redis = redis
        self.by_name = {name: load_script(name) for name in SCRIPT_NAMES}
        self._keys: dict[tuple[str, str], list[str]] = {}
        self.loaded = False

    def _keys_of(self, script: Script, queue: QueueKeys) -> list[str]:
        cache_key = (script.name, queue.queue)
        keys = self._keys.get(cache_key)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[cache_key] = script.keys(queue)
        return keys

    async def call(self, name: str, queue: QueueKeys, args: Sequence[Arg]) -> Any:
        script = self.by_name[name]
        keys = self._keys_of(script, queue)
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.loaded = False
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    def queue_call(
        self, pipe: Pipeline | ClusterPipeline, name: str, queue: QueueKeys, args: Sequence[Arg]
    ) -> None:
        """Add a call to a pipeline; run :meth:`load_all_once` first (pipelines cannot re-load)."""
        script = self.by_name[name]
        keys = self._keys_of(script, queue)
        # execute_command, not evalsha(): redis-py's cluster pipeline refuses the evalsha()
        # method, though it routes a raw EVALSHA by its keys (all in the queue's slot).
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def load_all_once(self) -> None:
        """Load every script unless done since the last NOSCRIPT; pipelines need it."""
        if not self.loaded:
            for script in self.by_name.values():
                await self._redis.script_load(script.source)
            self.loaded = True
