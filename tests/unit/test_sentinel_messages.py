"""Reading the Sentinel messages the broker acts on (loops/switch_watch.py), and the replica
count of an INFO replication reply (storage/durability.py)."""

from __future__ import annotations

from jobbroker_broker.loops.switch_watch import parse_instance, parse_switch
from jobbroker_broker.storage.durability import online_replicas


def test_a_switch_names_the_new_primary_of_its_service_only() -> None:
    message = b"jobs 127.0.0.1 6379 127.0.0.1 6380"
    assert parse_switch(message, "jobs") == ("127.0.0.1", 6380)
    assert parse_switch(message, "other") is None
    assert parse_switch(b"jobs 127.0.0.1 6379", "jobs") is None


def test_an_instance_event_names_the_instance_and_its_primary_service() -> None:
    selected = "slave 127.0.0.1:6380 127.0.0.1 6380 @ jobs 127.0.0.1 6379"
    assert parse_instance(selected, "jobs") == ("127.0.0.1", 6380)
    assert parse_instance(selected, "other") is None
    # A master's own event names the service in its second field.
    assert parse_instance(b"master jobs 127.0.0.1 6379", "jobs") == ("127.0.0.1", 6379)
    assert parse_instance(b"master other 127.0.0.1 6379", "jobs") is None
    assert parse_instance(b"garbled", "jobs") is None


def test_only_replicas_in_sync_count() -> None:
    info = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "127.0.0.1", "port": 6380, "state": "online", "offset": 10},
        "slave1": {"ip": "127.0.0.1", "port": 6381, "state": "wait_bgsave", "offset": 0},
        "slave_read_only": 1,
    }
    assert online_replicas(info) == 1
    assert online_replicas({"role": "master", "connected_slaves": 0}) == 0
