"""Redis URLs and durability settings: what parses, and the clear errors for what does not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from jobbroker import AsyncClient
from jobbroker.errors import JobNotFound, Unavailable
from jobbroker_broker.server.app import Broker
from jobbroker_broker.storage.connection import ConfigError, RedisConnection, parse_redis_url
from scale_support import FAST, broker

pytestmark = pytest.mark.scale


def test_cluster_urls_name_their_nodes_and_options() -> None:
    target = parse_redis_url("rediss+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001?ssl_cert_reqs=none")
    assert target.kind == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert target.options["password"] == "pw"
    assert target.options["ssl_cert_reqs"] == "none"


def test_sentinel_urls_name_the_service_and_db() -> None:
    target = parse_redis_url("redis+sentinel://s1:26379,s2:26380/jobs/2")
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26380))
    assert target.service == "jobs"
    assert target.options["db"] == 2


def test_plain_and_tls_urls_pass_through_unchanged() -> None:
    for url in ("redis://h:6379/1", "rediss://h:6380/0?ssl_cert_reqs=required", "unix:///r.sock"):
        target = parse_redis_url(url)
        assert (target.kind, target.url) == ("server", url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "cluster node"),
        ("redis+cluster://h1:7000,h2", "'h2' is not a host:port"),
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+sentinel://h1:26379", "service-name"),
        ("redis+sentinel://h1:notaport/svc", "not a host:port"),
        ("http://h1:6379", "use redis://"),
    ],
)
def test_malformed_urls_fail_naming_the_option(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="--redis-url") as raised:
        parse_redis_url(url)
    assert problem in str(raised.value)


def test_passwords_stay_out_of_error_messages() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_redis_url("redis+cluster://user:secret@h1:7000,bad")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"durability": "fsync"}, "--durability 'fsync'"),
        ({"durability": "replicas", "durability_replicas": 0}, "--durability-replicas 0"),
        ({"durability": "replicas", "durability_timeout": 0.0}, "--durability-timeout"),
        # The WAIT's reply must come within --redis-timeout (5.0 here), else it would end as a
        # socket timeout (REDIS_UNAVAILABLE) instead of DURABILITY_TIMEOUT.
        (
            {"durability": "replicas", "durability_timeout": 5.0},
            r"--durability-timeout 5: must be at least 0\.5 s below --redis-timeout \(5\)",
        ),
    ],
)
async def test_bad_durability_settings_fail_the_start(
    redis_url: str, overrides: dict[str, object], problem: str
) -> None:
    settings = replace(FAST, redis_url=redis_url, **overrides)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=problem):
        await Broker(settings).start()


async def test_aof_durability_needs_redis_7_2(redis_url: str) -> None:
    settings = replace(FAST, redis_url=redis_url, durability="aof")
    connection = RedisConnection(settings)
    try:
        versions = await connection.server_versions()
    finally:
        await connection.aclose()
    if min(versions)[:2] >= (7, 2):
        pytest.skip("this Redis has WAITAOF")
    with pytest.raises(ConfigError, match=r"WAITAOF, which needs Redis 7\.2"):
        await Broker(settings).start()


async def test_an_add_without_a_replica_is_refused_and_not_stored(
    private_redis: object, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_redis.url  # type: ignore[attr-defined]
    async with (
        broker(url, durability="replicas", durability_timeout=0.2) as address,
        AsyncClient(address, retries=0) as client,
    ):
        with pytest.raises(Unavailable, match="not stored") as raised:
            await client.add(queue, "work", {}, job_id="unconfirmed")
        assert raised.value.reason == "DURABILITY_TIMEOUT"
        assert raised.value.metadata["stored"] == "false"
        assert raised.value.metadata["replicas_online"] == "0"
        # Refused before anything was written: no job that could run without the caller
        # knowing.
        with pytest.raises(JobNotFound):
            await client.get_status(queue, "unconfirmed")
    assert "0 connected replica(s)" in caplog.text  # said at start
