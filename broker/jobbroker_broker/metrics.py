"""Prometheus metrics of one broker process (see docs/operations.md for what each one means).

Counters and histograms count what this process did: each replica exposes its own, and
Prometheus sums them (``sum by (queue) (rate(jobbroker_jobs_completed_total[5m]))``). The job
gauges are read from Redis, so every replica reports the same cluster-wide values. The HTTP
endpoint (``metrics_server``) runs on a thread of its own and only reads what is kept here: it
never calls Redis.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence

import redis.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200)
"""Seconds: jobs run and wait from milliseconds to hours."""
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds: unary calls take milliseconds; long polls and streams last longer."""

_REDIS_ERRORS: Tally[str] = Tally()
_REDIS_ERRORS_LOCK = threading.Lock()
# Most specific first: BusyLoadingError is a ConnectionError, the redis errors are OSErrors' kin.
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.BusyLoadingError, "loading"),
    (redis.exceptions.ReadOnlyError, "readonly"),
    (redis.exceptions.TimeoutError, "timeout"),
    (TimeoutError, "timeout"),
    (redis.exceptions.ConnectionError, "connection"),
    (OSError, "connection"),
)


def count_redis_error(exc: BaseException) -> None:
    """Count one failed Redis call of this process, by kind (connection, timeout, ...)."""
    kind = next((name for cls, name in _KINDS if isinstance(exc, cls)), "other")
    with _REDIS_ERRORS_LOCK:
        _REDIS_ERRORS[kind] += 1


def observe_ms(histogram: Histogram, values_ms: Sequence[int]) -> None:
    """``histogram.observe(ms / 1000)`` for each of a batch's values, with one locked increment
    per bucket the batch falls in and one for the sum, instead of two per value: a worker's
    batch of 100 jobs observed value by value cost the broker about 3 µs of CPU per job
    (bench/profiling.md). It reads the histogram's buckets (``_upper_bounds``, ``_buckets``,
    ``_sum``: prometheus_client has no public call for many values);
    tests/unit/test_metrics_batch.py checks that it exposes what ``observe`` would."""
    bounds = histogram._upper_bounds
    counts = Tally(bisect.bisect_left(bounds, ms / 1000) for ms in values_ms)
    buckets = histogram._buckets
    for index, count in counts.items():
        buckets[index].inc(count)
    histogram._sum.inc(sum(values_ms) / 1000)


class _RedisErrors(Collector):
    """``jobbroker_redis_errors_total``: process-wide, as the Redis calls that fail are."""

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "jobbroker_redis_errors",
            "Redis calls that failed because Redis was unreachable, slow or not ready.",
            labels=["kind"],
        )
        with _REDIS_ERRORS_LOCK:
            counts = dict(_REDIS_ERRORS)
        for kind, count in sorted(counts.items()):
            family.add_metric([kind], count)
        yield family


class _JobCounts(Collector):
    """``jobbroker_jobs{queue,state}`` from the latest snapshot the refresh loop took."""

    def __init__(self) -> None:
        self.snapshot: Mapping[str, Mapping[str, int]] = {}
        """Queue -> state -> count; replaced whole by the refresh loop, never changed."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "jobbroker_jobs",
            "Jobs per queue and state, read from Redis.",
            labels=["queue", "state"],
        )
        for queue, counts in sorted(self.snapshot.items()):
            for state, count in counts.items():
                family.add_metric([queue, state], count)
        yield family


class Metrics:
    """One broker's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.job_counts = _JobCounts()
        registry.register(self.job_counts)
        registry.register(_RedisErrors())
        self.completed = Counter(
            "jobbroker_jobs_completed", "Jobs completed by a worker.", ["queue"], registry=registry
        )
        self.failed = Counter(
            "jobbroker_jobs_failed",
            "Jobs failed for good after running (worker failure, timeout or stall, no attempt "
            "left).",
            ["queue"],
            registry=registry,
        )
        self.retried = Counter(
            "jobbroker_jobs_retried",
            "Failed or timed-out attempts followed by another attempt.",
            ["queue"],
            registry=registry,
        )
        self.stalled = Counter(
            "jobbroker_jobs_stalled",
            "Leases that ran out (worker gone or hung), found by this replica's maintenance.",
            ["queue"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "jobbroker_job_run_seconds",
            "How long an attempt ran, from its lease to the worker's complete or fail.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "jobbroker_job_wait_seconds",
            "How long a job waited, from its creation (plus its delay) to its first start.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.rpc_seconds = Histogram(
            "jobbroker_rpc_duration_seconds",
            "gRPC calls served, by method and status code (streams: how long they stayed open).",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.streams_open = Gauge(
            "jobbroker_streams_open",
            "Streaming calls open now, by method.",
            ["method"],
            registry=registry,
        )

    def attempts_ended(self, queue: str, ended: Sequence[tuple[bytes | str, int]]) -> None:
        """Workers completed or failed attempts: each the job's state after it, and how long
        the attempt ran in ms. One call per batch: label lookups cost more than the counting."""
        if not ended:
            return
        states = Tally(state.decode() if isinstance(state, bytes) else state for state, _ in ended)
        for counter, names in (
            (self.completed, ("completed",)),
            (self.failed, ("failed",)),
            (self.retried, ("waiting", "delayed")),
        ):
            count = sum(states[name] for name in names)
            if count:
                counter.labels(queue).inc(count)
        observe_ms(self.run_seconds.labels(queue), [max(0, run_ms) for _, run_ms in ended])

    def leased(self, queue: str, wait_ms: Iterable[int]) -> None:
        """Jobs were leased; a wait of -1 is not a first start."""
        waits = [ms for ms in wait_ms if ms >= 0]
        if waits:
            observe_ms(self.wait_seconds.labels(queue), waits)

    def reaped(self, queue: str, stalled: int, failed: int, retried: int) -> None:
        """Maintenance ended expired leases: stalled ones, and those failed or retried."""
        counts = ((self.stalled, stalled), (self.failed, failed), (self.retried, retried))
        for counter, count in counts:
            if count:
                counter.labels(queue).inc(count)
