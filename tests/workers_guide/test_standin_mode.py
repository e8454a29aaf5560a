"""``jobbroker-worker`` with no ``OPENAI_API_KEY``: the local stand-in model answers, labelled as
such; a conversation store plugs in; the Prometheus endpoint counts tokens per model and
request outcomes."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from jobbroker import AsyncClient
from ports import free_port

from .conftest import Running
from .support import ServiceProcess, until

QUEUE = "ai-tasks"


async def test_stand_in_store_and_metrics(
    private_broker: Running, private_client: AsyncClient, tmp_path: Path
) -> None:
    port = free_port()
    process = ServiceProcess(
        private_broker.address,
        tmp_path / "worker.log",
        "--queues",
        QUEUE,
        "--metrics-port",
        str(port),
        "--conversation-store",
        "jobbroker_worker.conversations:MemoryConversations",
    )
    try:
        await process.ready(private_client, (QUEUE,))
        data = {"userId": "u", "conversationId": "c", "message": "Hello there", "maxTokens": 8}
        first = await private_client.add(QUEUE, "generate-completion", data)
        one = await private_client.wait(QUEUE, first.job_id, timeout=60)
        second = await private_client.add(
            QUEUE, "generate-completion", {**data, "message": "And then?"}
        )
        two = await private_client.wait(QUEUE, second.job_id, timeout=60)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text: str = reply.read().decode()
            return text

        async def scraped() -> str:
            text = await asyncio.to_thread(scrape)
            return text if "jobbroker_ai_tokens_total" in text else ""

        metrics = await until(scraped, "the metrics endpoint")
    finally:
        assert process.stop() == 0, process.output()
    assert one["standIn"] is True
    assert "stand-in" in one["note"]
    assert one["model"] == "jobbroker-standin"
    assert "STAND-IN" in process.output()
    # The store gave the second job the first exchange: a longer prompt.
    assert (
        two["usage"]["promptTokens"]
        > one["usage"]["promptTokens"] + len(one["content"].split()) - 1
    )
    completion = one["usage"]["completionTokens"] + two["usage"]["completionTokens"]
    expected = (
        f'jobbroker_ai_tokens_total{{kind="completion",model="jobbroker-standin"}} {completion:.1f}'
    )
    assert expected in metrics, metrics
    assert 'jobbroker_ai_requests_total{endpoint="chat",outcome="ok"} 2.0' in metrics
    assert "jobbroker_worker_jobs_leased_total 2.0" in metrics
