"""What the CLI prints: JSON documents for scripts (``--json``) and rich text for people."""

from __future__ import annotations

import base64
import enum
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..models import Event, Failure, Job, JobState, Progress, Raw

STATE_STYLE = {
    JobState.WAITING: "cyan",
    JobState.DELAYED: "blue",
    JobState.ACTIVE: "yellow",
    JobState.COMPLETED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "magenta",
}


def stdout() -> Console:
    # Built per call: the console must write to whatever sys.stdout is now (tests swap it).
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: Any) -> Any:
    """A value made of JSON types only: dataclasses as objects, datetimes as ISO 8601 (UTC),
    enums as their value, :class:`Raw` payloads as ``{"content_type", "base64"}``."""
    if isinstance(value, Raw):
        return {"content_type": value.content_type, "base64": base64.b64encode(value.body).decode()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if f.name != "proto"}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return orjson.dumps(plain(value)).decode()


def print_json(value: Any) -> None:
    """One JSON document on one line of stdout (NDJSON when called repeatedly)."""
    print(dumps(value), flush=True)


def state_text(state: JobState | None) -> str:
    if state is None:
        return "-"
    return f"[{STATE_STYLE.get(state, 'white')}]{state.value}[/]"


def short(value: Any, width: int = 60) -> str:
    """A payload on one line, cut to ``width`` characters."""
    if value is None:
        return ""
    text = dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def progress_text(progress: Progress | None) -> str:
    if progress is None or (progress.percent is None and progress.value is None):
        return "-"
    parts = []
    if progress.percent is not None:
        parts.append(f"{progress.percent:g}%")
    if progress.value is not None:
        parts.append(short(progress.value, 40))
    return " ".join(parts)


def failure_text(failure: Failure | None) -> str:
    if failure is None:
        return "-"
    head = f"{failure.reason}"
    if failure.error_type:
        head += f" ({failure.error_type})"
    return f"{head}: {failure.message}" if failure.message else head


def print_job(job: Job) -> None:
    """A job's snapshot as an aligned list of fields."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("job", f"{escape(job.queue)} / {escape(job.id)}"),
        ("name", escape(job.name)),
        ("state", state_text(job.state)),
        ("attempts", f"{job.attempts_made} of {job.max_attempts} made"),
        ("progress", escape(progress_text(job.progress))),
        ("data", escape(short(job.data, 200)) or "-"),
    ]
    if job.result is not None:
        rows.append(("result", escape(short(job.result, 200))))
    if job.failure is not None:
        rows.append(("failure", escape(failure_text(job.failure))))
    rows.append(("created", when(job.created_at)))
    if job.run_at is not None and job.state is JobState.DELAYED:
        rows.append(("runs at", when(job.run_at)))
    if job.started_at is not None:
        rows.append(("started", when(job.started_at)))
    if job.finished_at is not None:
        rows.append(("finished", when(job.finished_at)))
    if job.worker_id:
        rows.append(("worker", escape(job.worker_id)))
    if job.cancel_requested:
        rows.append(("cancel", escape(f"requested ({job.cancel_reason or 'no reason'})")))
    if job.log_count:
        rows.append(("logs", f"{job.log_count} lines (jobbroker logs {job.queue} {job.id})"))
    for key, value in rows:
        table.add_row(key, value)
    stdout().print(table)


def jobs_table(jobs: list[Job], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "name", "state", "attempts", "progress", "created", "data / outcome"):
        table.add_column(column, overflow="fold", no_wrap=column in ("state", "created"))
    for job in jobs:
        outcome = (
            failure_text(job.failure)
            if job.failure is not None and job.state is not JobState.COMPLETED
            else short(job.result if job.state is JobState.COMPLETED else job.data, 50)
        )
        table.add_row(
            escape(job.id),
            escape(job.name),
            state_text(job.state),
            f"{job.attempts_made}/{job.max_attempts}",
            escape(progress_text(job.progress)),
            when(job.created_at),
            escape(outcome),
        )
    return table


def event_line(event: Event) -> str:
    """One event as a line of rich text, for ``watch``."""
    kind = event.type.value
    detail = ""
    if event.progress is not None:
        detail = progress_text(event.progress)
    elif event.failure is not None:
        detail = failure_text(event.failure)
    elif event.result is not None:
        detail = "result " + short(event.result, 80)
    elif event.run_at is not None:
        detail = f"until {when(event.run_at)}"
    if event.attempt:
        kind += f" (attempt {event.attempt})"
    stamp = event.timestamp.astimezone().strftime("%H:%M:%S") if event.timestamp else ""
    return f"[dim]{stamp}[/] {escape(kind)} {escape(detail)}".rstrip()
