"""DashboardSettings: how the dashboard reaches the broker and serves its pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

DEFAULT_PREFIX = "/admin/queues"
"""Where ``jobbroker dashboard`` serves the pages, as bull-board does in the guide."""


@dataclass(frozen=True)
class DashboardSettings:
    """Settings of one dashboard app (``create_app``)."""

    address: str | Sequence[str] | None = None
    """The broker(s): ``host:port``, several, or any gRPC target; None reads
    ``JOBBROKER_ADDRESS`` (default ``127.0.0.1:50051``)."""
    credentials: grpc.ChannelCredentials | None = None
    """TLS to the broker (:func:`jobbroker.tls_credentials`); None: what ``JOBBROKER_TLS*``
    say, else plaintext."""
    title: str = "jobbroker"
    """Shown in every page's header."""
    secure_cookies: bool | None = None
    """Mark cookies ``Secure``; None: when the request came over https (a TLS proxy in front
    should forward the scheme, e.g. uvicorn's ``--proxy-headers``)."""
    secret: bytes = field(default=b"", repr=False)
    """Key of the CSRF tokens (HMAC); empty: a random key per process, so forms opened before a
    restart must be sent again. Give one key to every replica behind a load balancer."""
    live_interval: float = 0.25
    """Shortest time between two live updates of one page, in seconds: events arriving faster
    are folded into one update."""
    share_ttl: float = 2.0
    """Seconds a broker answer is kept for the live pages updating after the same events
    (every page of a queue refreshes from one GetQueue call, not one each); an answer is never
    reused after a newer event of its queue."""
    chart_minutes: int = 60
    """Minutes of history the throughput and failure charts show."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body the HTTP API and the forms accept (413 beyond)."""
    queues_per_page: int = 50
    """Queues the queue list shows (and follows live: one broker stream each) per page."""
    client_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for each :class:`jobbroker.AsyncClient` (``timeout``,
    ``retries``...)."""
