"""Worker reports (complete, fail, release, lease updates): checked, then applied in batches."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import cast

from jobbroker import limits
from jobbroker.v1 import job_pb2, worker_service_pb2

from ...errors import BrokerError, InvalidArgument
from ...loops.maintenance import Maintenance
from ...settings import Settings
from ...storage.contracts.leases import CompleteItem, FailItem, Outcome, ReleaseItem
from ...storage.store import ItemResult, Store
from .. import access, validation

MAX_MESSAGE = 65_536
MAX_ERROR_TYPE = 256
MAX_STACK = 262_144
MAX_TOKEN = 64
_LEASE_TOKEN = re.compile(r"[1-9][0-9]*-[!-~]+")

CompleteRequest = worker_service_pb2.CompleteRequest
FailRequest = worker_service_pb2.FailRequest
ReleaseRequest = worker_service_pb2.ReleaseRequest
Report = CompleteRequest | FailRequest | ReleaseRequest


def token(value: str, field: str) -> str:
    """A lease token's shape: ``<fence>-<id>`` as Lease hands them out. Whether the broker gave
    it for the job is the script's to judge (INVALID_FIELD), but a token of another shape is
    refused here, before the check that a lease belongs to the caller's API token, which would
    otherwise answer that it was "taken with another token"."""
    if not value:
        raise InvalidArgument(field, "is required (the token the job was leased with)")
    if len(value) > MAX_TOKEN or not _LEASE_TOKEN.fullmatch(value):
        raise InvalidArgument(field, "is not a lease token (Lease gives them as <fence>-<id>)")
    return value


def _text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters")
    return value


def check(report: Report, field: str, settings: Settings) -> tuple[str, Outcome]:
    """Validate a report; returns its queue and the store's outcome item."""
    prefix = f"{field}." if field else ""
    queue = validation.queue_name(report.queue, f"{prefix}queue")
    job_id = validation.job_id(report.job_id, f"{prefix}job_id")
    lease = token(report.token, f"{prefix}token")
    access.check_lease(lease, f"{prefix}token")
    if isinstance(report, CompleteRequest):
        body, content_type = validation.payload(report.result, f"{prefix}result", settings)
        return queue, CompleteItem(job_id, lease, result=body, result_type=content_type)
    if isinstance(report, FailRequest):
        return queue, FailItem(
            job_id,
            lease,
            message=_text(report.message, f"{prefix}message", MAX_MESSAGE),
            error_type=_text(report.error_type, f"{prefix}error_type", MAX_ERROR_TYPE),
            stack=_text(report.stack, f"{prefix}stack", MAX_STACK),
            no_retry="1" if report.no_retry else "",
            rand=repr(random.random()),  # the backoff's jitter
        )
    if report.delay_ms > limits.MAX_DURATION_MS:
        raise InvalidArgument(f"{prefix}delay_ms", "must be at most ten years")
    return queue, ReleaseItem(job_id, lease, delay_ms=report.delay_ms)


async def apply(
    store: Store, maintenance: Maintenance, kind: type[Report], queue: str, items: Sequence[Outcome]
) -> list[ItemResult]:
    """Apply reports of one kind (so items of one type) to one queue in one script call."""
    if kind is CompleteRequest:
        return await store.complete(queue, cast("Sequence[CompleteItem]", items))
    if kind is ReleaseRequest:
        return await store.release(queue, cast("Sequence[ReleaseItem]", items))
    results = await store.fail(queue, cast("Sequence[FailItem]", items))
    retry_at = [r.value for r in results if r.state == job_pb2.JOB_STATE_DELAYED]
    if retry_at:
        maintenance.hint_at(queue, min(retry_at))
    return results


def item_error(error: BrokerError) -> worker_service_pb2.ItemError:
    return worker_service_pb2.ItemError(
        code=error.code.value[0], reason=error.reason, message=error.message
    )
