"""The Lua scripts: one file per state transition under ``lua/``, loaded once, called through
their contracts (:mod:`.contracts`: KEYS, ARGV and reply by name).

``-- @include lib/x.lua`` lines are replaced by that file's text, so shared helpers are written
once. A broker with the test clock (``Settings.test_clock``) loads every script with
``lib/test_clock.lua`` in place of ``lib/clock.lua``: scripts whose "now" the queue's test clock
moves. Production scripts never read the clock key, so nothing can move a production broker's
time, and its hot path pays nothing for the feature.
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

from .contracts import CONTRACTS, Arg, Contract
from .keys import QueueKeys

__all__ = ["SCRIPT_NAMES", "Arg", "Script", "Scripts", "load_script"]

_INCLUDE = re.compile(r"^-- @include (\S+)$", re.MULTILINE)
_TEST_CLOCK = {"lib/clock.lua": "lib/test_clock.lua"}


def _read(name: str) -> str:
    return (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")


def _expand(source: str, swap: dict[str, str], seen: frozenset[str] = frozenset()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"recursive include of {name}")
        return _expand(_read(swap.get(name, name)), swap, seen | {name})

    return _INCLUDE.sub(include, source)


@dataclass(frozen=True, slots=True)
class Script:
    """One loaded script: its contract, expanded source and SHA."""

    contract: Contract[Any, Any]
    source: str
    sha: str

    @property
    def name(self) -> str:
        return self.contract.name

    def keys(self, queue: QueueKeys) -> list[str]:
        return [queue.key(name) for name in self.contract.keys]


def load_script(name: str, test_clock: bool = False) -> Script:
    """The script ``name``, expanded; with ``test_clock``, its "now" is the queue's test clock."""
    source = _expand(_read(f"{name}.lua"), _TEST_CLOCK if test_clock else {})
    return Script(CONTRACTS[name], source, hashlib.sha1(source.encode()).hexdigest())


SCRIPT_NAMES = tuple(CONTRACTS)


class Scripts:
    """All scripts, called with EVALSHA and re-loaded after a NOSCRIPT (a restarted Redis)."""

    def __init__(self, redis: Redis | RedisCluster, test_clock: bool = False) -> None:
        self._redis = redis
        self.by_name = {name: load_script(name, test_clock) for name in SCRIPT_NAMES}
        self._keys: dict[tuple[str, str], list[str]] = {}
        self.loaded = False

    def keys_of(self, script: Script, queue: QueueKeys) -> list[str]:
        cache_key = (script.name, queue.queue)
        keys = self._keys.get(cache_key)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[cache_key] = script.keys(queue)
        return keys

    async def call(
        self, contract: Contract[Any, Any], queue: QueueKeys, args: Sequence[Arg]
    ) -> Any:
        """The script's raw reply (decode it with ``contract.reply``)."""
        script = self.by_name[contract.name]
        keys = self.keys_of(script, queue)
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.loaded = False
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    def queue_call(
        self,
        pipe: Pipeline | ClusterPipeline,
        contract: Contract[Any, Any],
        queue: QueueKeys,
        args: Sequence[Arg],
    ) -> None:
        """Add a call to a pipeline; run :meth:`load_all_once` first (pipelines cannot re-load)."""
        script = self.by_name[contract.name]
        keys = self.keys_of(script, queue)
        # execute_command, not evalsha(): redis-py's cluster pipeline refuses the evalsha()
        # method, though it routes a raw EVALSHA by its keys (all in the queue's slot).
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def load_all_once(self) -> None:
        """Load every script unless done since the last NOSCRIPT; pipelines need it."""
        if not self.loaded:
            for script in self.by_name.values():
                await self._redis.script_load(script.source)
            self.loaded = True
