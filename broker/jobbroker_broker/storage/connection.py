"""The broker's Redis clients, built from ``--redis-url``: one server, a Redis Cluster, or the
primary a set of Sentinels names.

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server; the URL goes to redis-py as is, so
  every option it reads from a URL (TLS files, credentials, db) keeps working.
- ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS): a Redis
  Cluster, found from any of those nodes (redis-py's asyncio ``RedisCluster``).
- ``redis+sentinel://host:port[,host:port...]/service`` (``rediss+sentinel://``): the primary
  the Sentinels at those addresses name for ``service``; ``switch()`` moves to the primary a
  Sentinel announces (``+switch-master``), ``follow()`` checks the Sentinels' answer.

Credentials and query options apply to the data nodes (and, for Sentinel, to the Sentinels
too). Every client fails fast: no command is retried, because a retried write could apply
twice; a call that meets a failover answers UNAVAILABLE and the next one reaches the new primary.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import redis.exceptions
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..settings import ConfigError, Settings
from .packing import pack_with_hiredis

log = logging.getLogger(__name__)

Client = Redis | RedisCluster
"""A client of one server (or a Sentinel-managed primary) or of a whole cluster."""

Kind = Literal["server", "cluster", "sentinel"]

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}

BLOCKING_SLACK = 2.0
"""Seconds a blocking client's reads wait beyond ``redis_timeout`` (an XREAD BLOCK lasts 1 s)."""

FENCE_MAX_S = 5.0
"""Longest time adds are refused once a Sentinel began promoting a replica, should neither its
announcement of the new primary nor of an abort arrive."""

BLOCKING_CONNECTIONS = 100_000
"""Connections (per node) the blocking client may open: one per event stream being read."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What ``--redis-url`` names."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    """Cluster startup nodes or Sentinel addresses."""
    service: str = ""
    """The Sentinel service name."""
    options: dict[str, Any] = field(default_factory=dict)
    """Connection options from the URL (credentials, TLS, query options)."""


def _bad(url: str, problem: str) -> ConfigError:
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in credentials:  # never print a password
        url = parts._replace(netloc=f"{credentials.partition(':')[0]}:***@{hosts}").geturl()
    return ConfigError(f"--redis-url {url!r}: {problem}")


def _nodes(url: str, netloc: str) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    nodes = []
    for part in hosts.split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise _bad(url, f"{part!r} is not a host:port address")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _options(url: str, scheme: str, netloc: str, path: str, query: str) -> dict[str, Any]:
    """The connection options of the URL, read by redis-py's own parser (from the URL with
    its first address), without the address itself."""
    credentials, _, hosts = netloc.rpartition("@")
    first = hosts.split(",")[0]
    single = f"{scheme}://{credentials + '@' if credentials else ''}{first}{path}"
    try:
        options: dict[str, Any] = dict(parse_url(single + (f"?{query}" if query else "")))
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    for name in ("host", "port", "path"):
        options.pop(name, None)
    return options


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``--redis-url``; a malformed one raises :class:`ConfigError` naming the option."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        if not parts.netloc:
            raise _bad(url, "name at least one cluster node: redis+cluster://host:port[,...]")
        nodes = _nodes(url, parts.netloc)
        options = _options(url, CLUSTER_SCHEMES[scheme], parts.netloc, "", parts.query)
        if parts.path not in ("", "/", "/0"):
            raise _bad(url, "a Redis Cluster has only database 0; drop the path")
        options.pop("db", None)
        return RedisTarget("cluster", url, nodes, options=options)
    if scheme in SENTINEL_SCHEMES:
        service, _, db = parts.path.strip("/").partition("/")
        if not parts.netloc or not service:
            raise _bad(url, "use redis+sentinel://host:port[,host:port...]/service-name[/db]")
        nodes = _nodes(url, parts.netloc)
        path = f"/{db}" if db else ""
        options = _options(url, SENTINEL_SCHEMES[scheme], parts.netloc, path, parts.query)
        return RedisTarget("sentinel", url, nodes, service=service, options=options)
    if scheme not in ("redis", "rediss", "unix"):
        raise _bad(
            url,
            "use redis://, rediss:// (TLS), unix://, redis+cluster:// or redis+sentinel://",
        )
    try:
        parse_url(url)
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    return RedisTarget("server", url)


def _common(settings: Settings, blocking: bool) -> dict[str, Any]:
    return {
        "max_connections": BLOCKING_CONNECTIONS if blocking else settings.redis_max_connections,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_timeout": settings.redis_timeout + (BLOCKING_SLACK if blocking else 0.0),
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


def _no_ssl_flag(options: dict[str, Any]) -> dict[str, Any]:
    """Options with redis-py's parsed connection class turned into the ``ssl`` flag that the
    cluster and Sentinel constructors take."""
    options = dict(options)
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and issubclass(
        connection_class, redis.asyncio.connection.SSLConnection
    ):
        options["ssl"] = True
    return options


def make_sentinel(target: RedisTarget, settings: Settings) -> Sentinel:
    """A client of the Sentinels a ``redis+sentinel://`` URL names."""
    options = _no_ssl_flag(target.options)
    return Sentinel(
        list(target.nodes),
        sentinel_kwargs={
            "socket_connect_timeout": settings.redis_connect_timeout,
            "socket_timeout": settings.redis_connect_timeout,
            **{k: v for k, v in options.items() if k in ("username", "password", "ssl")},
        },
    )


def redis_client(
    settings: Settings,
    *,
    blocking: bool = False,
    target: RedisTarget | None = None,
    sentinel: Sentinel | None = None,
) -> Client:
    """A fail-fast client of ``settings.redis_url``: no retries (a retried write could apply
    twice), short timeouts. The blocking client's reads wait longer than an XREAD BLOCK."""
    target = target or parse_redis_url(settings.redis_url)
    common = _common(settings, blocking)
    if target.kind == "server":
        client = Redis.from_url(target.url, **common)
        pack_with_hiredis(client)
        return client
    options = _no_ssl_flag(target.options)
    if target.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            **options,
            **common,
        )
    sentinel = sentinel or make_sentinel(target, settings)
    primary: Redis = sentinel.master_for(target.service, redis_class=Redis, **options, **common)
    pack_with_hiredis(primary)
    return primary


class RedisConnection:
    """The broker's two clients on one Redis deployment: ``client`` for commands and scripts,
    ``blocking`` for the event readers' XREAD BLOCK (longer read timeout, own connections)."""

    def __init__(self, settings: Settings) -> None:
        self.target = parse_redis_url(settings.redis_url)
        self.kind: Kind = self.target.kind
        self._sentinel = make_sentinel(self.target, settings) if self.kind == "sentinel" else None
        self._primary: tuple[str, int] | None = None
        self.switches = 0
        self._fenced_until = 0.0
        """Times the connections moved to another primary (Sentinel): what a cached fact
        about "the primary" (its replica count) is tied to."""
        self.client = redis_client(settings, target=self.target, sentinel=self._sentinel)
        self.blocking = redis_client(
            settings, blocking=True, target=self.target, sentinel=self._sentinel
        )

    @property
    def sentinels(self) -> list[Redis]:
        """Clients of the Sentinels (none unless ``redis+sentinel://``)."""
        return list(self._sentinel.sentinels) if self._sentinel is not None else []

    @property
    def primary(self) -> tuple[str, int] | None:
        """The Sentinel-managed primary last seen (None before the first check, and for a
        server or a cluster)."""
        return self._primary

    @property
    def cluster(self) -> RedisCluster | None:
        """The cluster client, when Redis is a cluster."""
        return self.client if isinstance(self.client, RedisCluster) else None

    async def ping(self) -> bool:
        """True when every primary answers (on a cluster: each shard's)."""
        try:
            if isinstance(self.client, RedisCluster):
                return bool(await self.client.ping(target_nodes=RedisCluster.PRIMARIES))
            return bool(await self.client.ping())
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
            return False

    async def follow(self) -> None:
        """With Sentinel: when the Sentinels name another primary, drop every connection (the
        blocked reads too) so each caller reconnects to the new one within one call; and at
        every call drop any connection to another server (made while a lagging Sentinel still
        named the old primary: it would read a stale copy, or write what a resync drops)."""
        if self._sentinel is None:
            return
        try:
            primary = await self._sentinel.discover_master(self.target.service)
        except (redis.exceptions.RedisError, OSError):
            return  # no Sentinel answers: the health check reports Redis itself
        if self._primary is not None and primary != self._primary:
            await self._move(primary, "the Sentinels name it")
            self.unfence()
        self._primary = primary
        await self._drop_others(primary)

    @property
    def fenced(self) -> bool:
        """Whether a Sentinel is promoting a replica of our primary right now (see ``fence``)."""
        return time.monotonic() < self._fenced_until

    async def fence(self, promoting: tuple[str, int]) -> None:
        """A Sentinel is promoting the replica ``promoting``. From the moment it is promoted,
        whatever the old primary takes is lost (its resync from the new one drops it, and a
        replica it still has would confirm it to a WAIT), yet the Sentinels name the old one
        until they announce the new one about a second later. So drop every connection now
        and let adds be refused (``fenced``) until that announcement (``switch``), an abort,
        or ``FENCE_MAX_S``."""
        if self._sentinel is None:
            return
        fresh = not self.fenced
        self._fenced_until = time.monotonic() + FENCE_MAX_S
        if fresh:
            log.warning(
                "a Sentinel is promoting %s:%d to primary of %r: adds refused until it is "
                "announced",
                *promoting,
                self.target.service,
            )
            await self.reset()

    def unfence(self) -> None:
        """The promotion was announced, or given up: adds may go on."""
        self._fenced_until = 0.0

    async def switch(self, primary: tuple[str, int], announcer: Redis) -> None:
        """A Sentinel (``announcer``) announced ``primary`` (``+switch-master``): drop every
        connection now, not at the next ``follow()``, so no more writes reach the old primary
        (in a switchover it stays writable until it is demoted, seconds later, and its resync
        then drops what it took). The announcer is asked first from now on, as it already
        names the new primary where another Sentinel may lag."""
        if self._sentinel is None:
            return
        sentinels = self._sentinel.sentinels
        if announcer in sentinels:
            sentinels.remove(announcer)
            sentinels.insert(0, announcer)
        if primary != self._primary:
            await self._move(primary, "a Sentinel announced it")
            self._primary = primary
        self.unfence()
        await self._drop_others(primary)

    async def _move(self, primary: tuple[str, int], why: str) -> None:
        old = f"{self._primary[0]}:{self._primary[1]}" if self._primary is not None else "?"
        log.warning(
            "redis primary of %r moved from %s to %s:%d (%s); reconnecting",
            self.target.service,
            old,
            *primary,
            why,
        )
        self.switches += 1
        await self.reset()

    async def _drop_others(self, primary: tuple[str, int]) -> None:
        for client in (self.client, self.blocking):
            if isinstance(client, RedisCluster):
                continue
            pool = client.connection_pool
            # redis-py has no public list of a pool's connections.
            for connection in [*pool._available_connections, *pool._in_use_connections]:
                address = (getattr(connection, "host", None), getattr(connection, "port", None))
                if connection.is_connected and address != primary:
                    with contextlib.suppress(redis.exceptions.RedisError, OSError):
                        await connection.disconnect()

    async def reset(self) -> None:
        """Drop every pooled connection (Redis restarted or failed over): no later call may
        fail on a stale one. Cluster clients also re-read the topology on next use."""
        for client in (self.client, self.blocking):
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                if isinstance(client, RedisCluster):
                    await client.aclose()
                else:
                    await client.connection_pool.disconnect()

    async def info_per_primary(self, section: str) -> list[dict[str, Any]]:
        """An INFO section of each primary (one for a single server)."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()
            return [
                dict(await self.client.info(section, target_nodes=node))
                for node in self.client.get_primaries()
            ]
        return [dict(await self.client.info(section))]

    async def server_versions(self) -> list[tuple[int, ...]]:
        """The Redis version of each primary (one for a single server)."""
        return [
            tuple(int(p) for p in str(row["redis_version"]).split(".")[:3])
            for row in await self.info_per_primary("server")
        ]

    async def config_per_primary(self, name: str) -> list[str]:
        """A CONFIG GET value of each primary (one for a single server)."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()
            replies = [
                await self.client.config_get(name, target_nodes=node)
                for node in self.client.get_primaries()
            ]
        else:
            replies = [await self.client.config_get(name)]
        values = []
        for reply in replies:
            fields: dict[Any, Any] = dict(reply)
            value = fields.get(name, fields.get(name.encode(), ""))
            values.append(value.decode() if isinstance(value, bytes) else str(value))
        return values

    async def aclose(self) -> None:
        for client in (self.client, self.blocking):
            await client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
