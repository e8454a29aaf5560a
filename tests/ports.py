"""Free TCP ports for the tests' servers, chosen outside the kernel's ephemeral range.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, which every
outgoing connection on the machine also draws its local port from. A test that stops a server
and starts it again on the same port (a broker restart, a Redis failover) can then find the port
taken by some other process's connection in between, and fail with "Address already in use".
Ports below the ephemeral range are never handed out that way, so a server can come back on one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10_000
"""The lowest port chosen: well above the well-known and registered services tests may meet."""

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bind(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int, *, with_offset: int = 0) -> list[int]:
    """``count`` distinct ports of 127.0.0.1 that nothing is bound to right now, below the
    ephemeral range. With ``with_offset``, each port + ``with_offset`` is free as well (a Redis
    Cluster node also binds its port + 10000)."""
    high = _ephemeral_low() - with_offset
    if high - LOWEST < 1_000:
        raise RuntimeError(f"no room below the ephemeral range ({EPHEMERAL_RANGE}) for test ports")
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 1_000):
            if len(ports) == count:
                return ports
            port = random.randrange(LOWEST, high)
            if port in ports:
                continue
            first = _bind(port)
            if first is None:
                continue
            held.append(first)
            if with_offset:
                second = _bind(port + with_offset)
                if second is None:
                    continue
                held.append(second)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) == count:
        return ports
    raise RuntimeError(f"found only {len(ports)} of {count} free ports in {LOWEST}..{high}")


def free_port() -> int:
    """A port of 127.0.0.1 that nothing is bound to right now, below the ephemeral range."""
    return free_ports(1)[0]
