"""A payload's content type comes back exactly as it was sent, wherever the payload is read."""

from __future__ import annotations

import pytest
from conftest import Running
from helpers import E, ProgressSubscriber, S, lease_one, stream_all, update, worker_stream
from jobbroker.v1 import job_pb2, job_service_pb2, worker_service_pb2

TYPES = ["application/json", "", "application/json; charset=utf-8", "text/plain"]


@pytest.mark.parametrize("content_type", TYPES)
async def test_content_type_is_read_back_as_sent(
    broker: Running, queue: str, content_type: str
) -> None:
    body = b'{"n": 1}'
    sent = job_pb2.Payload(body=body, content_type=content_type)
    added = await broker.jobs.Add(job_service_pb2.AddRequest(queue=queue, name="j", data=sent))
    job_id = added.job_id

    status = await broker.jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id)
    )
    assert status.job.data == sent
    listed = await broker.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(queue=queue, state=S.JOB_STATE_WAITING)
    )
    assert [j.data for j in listed.jobs] == [sent]
    follower = ProgressSubscriber(broker, queue, job_id)
    first = await follower.next()
    follower.close()
    assert first is not None
    assert first.snapshot.data == sent

    leased = await lease_one(broker, queue)
    assert leased.data == sent
    async with worker_stream(broker, "w", [queue]) as stream:
        progress = update(leased)
        progress.value.CopyFrom(sent)
        await stream.send(updates=[progress])
    done = await broker.workers.Complete(
        worker_service_pb2.CompleteRequest(
            queue=queue, job_id=job_id, token=leased.token, result=sent
        )
    )
    assert done.state == S.JOB_STATE_COMPLETED

    finished = await broker.jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id=job_id)
    )
    assert (finished.job.data, finished.job.result, finished.job.progress.value) == (sent,) * 3
    events = await stream_all(broker, queue, job_id, after="0-0")
    by_type = {item.event.type: item.event for item in events}
    assert by_type[E.EVENT_TYPE_PROGRESS].progress.value == sent
    assert by_type[E.EVENT_TYPE_COMPLETED].result == sent


@pytest.mark.parametrize(("first", "again"), [("", "application/json"), ("application/json", "")])
async def test_json_sent_with_or_without_its_type_is_the_same_job(
    broker: Running, queue: str, first: str, again: str
) -> None:
    """Both mean JSON: re-adding a custom id with the other spelling is a duplicate, not a
    conflict, and the job keeps the type it was first added with."""

    def request(content_type: str) -> job_service_pb2.AddRequest:
        data = job_pb2.Payload(body=b"[1]", content_type=content_type)
        return job_service_pb2.AddRequest(
            queue=queue, name="j", data=data, options=job_pb2.JobOptions(job_id="same")
        )

    assert not (await broker.jobs.Add(request(first))).duplicate
    assert (await broker.jobs.Add(request(again))).duplicate
    # In one AddBulk: against the stored job, and between two jobs of the call.
    jobs = [
        job_service_pb2.BulkJob(name="j", data=r.data, options=r.options)
        for r in (request(again), request(first), request(again))
    ]
    jobs[1].options.job_id = jobs[2].options.job_id = "other"
    bulk = await broker.jobs.AddBulk(job_service_pb2.AddBulkRequest(queue=queue, jobs=jobs))
    assert [r.duplicate for r in bulk.results] == [True, False, True]
    status = await broker.jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id="same")
    )
    assert status.job.data.content_type == first
