"""Who may set and read job data schemas: a worker (it declares the data its handlers take) and
an admin set them; a producer or a reader only reads them, and only on its own queues."""

from __future__ import annotations

import pytest
from jobbroker import PermissionDenied

from .conftest import Secured


async def test_workers_and_admins_set_schemas_producers_read_them(
    secured: Secured, queue: str
) -> None:
    worker, _ = secured.token(f"worker:{queue}")
    admin, _ = secured.token(f"admin:{queue}")
    producer, _ = secured.token(f"producer:{queue}")
    elsewhere, _ = secured.token("admin:other-*")
    async with secured.client(worker) as client:
        assert await client.set_job_schema(queue, "send", {"type": "object"}) is True
    async with secured.client(admin) as client:
        await client.set_job_schema(queue, "other", True)
    async with secured.client(producer) as client:
        with pytest.raises(PermissionDenied):
            await client.set_job_schema(queue, "send", None)
        assert sorted(await client.job_schemas(queue)) == ["other", "send"]
    async with secured.client(elsewhere) as client:
        with pytest.raises(PermissionDenied):
            await client.job_schemas(queue)
