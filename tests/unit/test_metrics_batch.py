"""observe_ms reads prometheus_client's histogram internals: it must expose exactly what
observing each value would, for values on, between and beyond the bucket bounds."""

from __future__ import annotations

import random

import pytest
from jobbroker_broker.metrics import JOB_BUCKETS, observe_ms
from prometheus_client import CollectorRegistry, Histogram, generate_latest

EDGES = [0, 1, 9, 10, 11, 50, 999, 1000, 1001, 7_200_000, 7_200_001, 10**9]


def _exposed(values_ms: list[int], batched: bool) -> tuple[bytes, float]:
    """The exposition without the sum, and the sum (added in another order, so equal only to
    the rounding of floats)."""
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "t", ["queue"], buckets=JOB_BUCKETS, registry=registry)
    child = histogram.labels("q")
    if batched:
        observe_ms(child, values_ms)
    else:
        for ms in values_ms:
            child.observe(ms / 1000)
    lines = generate_latest(registry).splitlines()
    total = registry.get_sample_value("t_seconds_sum", {"queue": "q"})
    assert total is not None
    return b"\n".join(
        line for line in lines if not line.startswith((b"t_seconds_created", b"t_seconds_sum"))
    ), total


@pytest.mark.parametrize(
    "values_ms",
    [EDGES, [], [5], random.Random(7).choices(range(0, 4_000_000), k=500)],
    ids=["bounds", "none", "one", "random"],
)
def test_a_batch_exposes_what_each_observe_would(values_ms: list[int]) -> None:
    exposed, total = _exposed(values_ms, batched=True)
    expected, expected_total = _exposed(values_ms, batched=False)
    assert b"_bucket" in exposed
    assert b"_count" in exposed
    assert exposed == expected
    assert total == pytest.approx(expected_total, rel=1e-12)


def test_batches_add_up() -> None:
    registry = CollectorRegistry()
    child = Histogram("t_seconds", "t", buckets=JOB_BUCKETS, registry=registry)
    observe_ms(child, [10, 20])
    observe_ms(child, [30_000])
    assert registry.get_sample_value("t_seconds_count") == 3
    assert registry.get_sample_value("t_seconds_sum") == pytest.approx(30.03)
    assert registry.get_sample_value("t_seconds_bucket", {"le": "0.01"}) == 1
    assert registry.get_sample_value("t_seconds_bucket", {"le": "0.05"}) == 2
    assert registry.get_sample_value("t_seconds_bucket", {"le": "30.0"}) == 3
