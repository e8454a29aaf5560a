"""Without opentelemetry everything works and nothing of it is imported; with it, the OTEL_*
variables decide whether a process exports spans. Each case runs in a fresh interpreter: a
process has one global tracer provider, and "not installed" is an import blocker there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from jobbroker import tracing

# An interpreter where `import opentelemetry...` fails as it does without the otel extra.
BLOCK_OTEL = """
import sys

class _NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _NoOtel())
"""

ROUND_TRIP = """
import asyncio, json, logging, sys
from jobbroker import AsyncClient, Worker
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

async def main() -> None:
    broker = Broker(Settings(port=0, redis_url=sys.argv[1], maintenance_interval=0.05))
    address = f"127.0.0.1:{await broker.start()}"
    worker = Worker("untraced", address=address, wait=1.0)

    @worker.handler("echo")
    async def echo(ctx):
        return ctx.data

    async with AsyncClient(address) as client, worker:
        added = await client.add("untraced", "echo", {"x": 1})
        result = await client.wait("untraced", added.job_id, timeout=10)
    await broker.stop(0.5)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    print(json.dumps({"result": result, "loaded": loaded}))

asyncio.run(main())
"""

CONFIGURE = """
import json, sys
from jobbroker import tracing

provider = tracing.configure_from_env("jobbroker-worker")
print(json.dumps({"configured": provider is not None}))
if provider is not None:
    from opentelemetry import trace
    with trace.get_tracer("t").start_as_current_span("hello"):
        pass
    provider.shutdown()
"""


def run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def first_json(stdout: str) -> Any:
    return json.loads(stdout.splitlines()[0])


def test_without_opentelemetry_jobs_run_and_nothing_of_it_is_imported(private_redis: Any) -> None:
    # OTEL_TRACES_EXPORTER asks for tracing that cannot be had: a warning, not a failure.
    done = run(BLOCK_OTEL + ROUND_TRIP, str(private_redis.url), OTEL_TRACES_EXPORTER="console")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"result": {"x": 1}, "loaded": []}
    assert "opentelemetry-sdk is not installed" in done.stderr


def test_console_exporter_from_the_environment_names_the_service() -> None:
    done = run(CONFIGURE, OTEL_TRACES_EXPORTER="console")
    assert done.returncode == 0, done.stderr
    assert first_json(done.stdout) == {"configured": True}
    assert '"name": "hello"' in done.stdout
    assert '"service.name": "jobbroker-worker"' in done.stdout

    named = run(CONFIGURE, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="billing-worker")
    assert '"service.name": "billing-worker"' in named.stdout


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_no_exporter_is_set_up_unless_asked_for(env: dict[str, str]) -> None:
    done = run(CONFIGURE, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == json.dumps({"configured": False})


def test_an_otlp_endpoint_alone_selects_the_otlp_exporter() -> None:
    code = (
        "from jobbroker import tracing\n"
        "provider = tracing.configure_from_env('jobbroker-broker')\n"
        # the SDK keeps its processors privately; no span is made, so nothing is sent
        "print(type(provider._active_span_processor._span_processors[0].span_exporter))\n"
    )
    done = run(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.exporter.otlp.proto.grpc.trace_exporter.OTLPSpanExporter" in done.stdout


def test_an_application_provider_is_left_alone() -> None:
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n" + CONFIGURE
    )
    done = run(code, OTEL_TRACES_EXPORTER="console")
    assert first_json(done.stdout) == {"configured": False}


def test_no_trace_context_outside_a_span() -> None:
    assert tracing.current_trace_context() is None
