"""``jobbroker watch``: follow one job's progress stream until the job ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..models import Event, EventType, Failure, Job, JobState
from . import output as out

if TYPE_CHECKING:
    from ..client import Client

_FINAL_STATE = {
    EventType.COMPLETED: JobState.COMPLETED,
    EventType.CANCELLED: JobState.CANCELLED,
    EventType.RETRIES_EXHAUSTED: JobState.FAILED,
}


@dataclass
class Outcome:
    """How a watched job ended."""

    state: JobState | None
    """The terminal state; None when the job was removed."""
    result: Any = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.state is JobState.COMPLETED


class _Display:
    """A live progress bar on a terminal; one line per event elsewhere (logs, pipes, CI)."""

    def __init__(self, label: str) -> None:
        self.console = out.stdout()
        self.label = label
        self.live = self.console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(escape(label), total=100.0)

    def __enter__(self) -> _Display:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live:
            self.progress.stop()

    def line(self, text: str) -> None:
        self.console.print(text)

    def snapshot(self, job: Job) -> None:
        self._describe(job.state)
        if job.progress.percent is not None:
            self.progress.update(self.task, completed=job.progress.percent)
        if not self.live:
            self.line(
                f"{escape(self.label)}: {out.state_text(job.state)}, "
                f"{job.attempts_made} of {job.max_attempts} attempts made, "
                f"progress {escape(out.progress_text(job.progress))}"
            )

    def event(self, event: Event) -> None:
        if event.state is not None:
            self._describe(event.state)
        percent = event.progress.percent if event.progress is not None else None
        if percent is not None:
            self.progress.update(self.task, completed=percent)
        if event.type is EventType.COMPLETED:
            self.progress.update(self.task, completed=100.0)
        only_percent = (
            event.type is EventType.PROGRESS
            and event.progress is not None
            and event.progress.value is None
        )
        if not (self.live and only_percent):
            self.line(out.event_line(event))

    def _describe(self, state: JobState) -> None:
        self.progress.update(self.task, description=f"{escape(self.label)} {out.state_text(state)}")


def _outcome_of(job: Job) -> Outcome | None:
    if not job.state.terminal:
        return None
    return Outcome(job.state, job.result, job.failure)


def watch(client: Client, queue: str, job_id: str, *, as_json: bool) -> Outcome:
    """Follow the job until its stream ends (the client resumes it across broker restarts)."""
    outcome: Outcome | None = None
    last_failure: Failure | None = None
    display: _Display | None = None if as_json else _Display(f"{queue}/{job_id}")
    try:
        if display is not None:
            display.__enter__()
        for item in client.stream_progress(queue, job_id):
            if isinstance(item, Job):
                if as_json:
                    out.print_json({"snapshot": item})
                elif display is not None:
                    display.snapshot(item)
                outcome = _outcome_of(item)
                continue
            if as_json:
                out.print_json({"event": item})
            elif display is not None:
                display.event(item)
            if item.failure is not None:
                last_failure = item.failure
            ended = item.state if item.state is not None and item.state.terminal else None
            if item.final or ended is not None:
                state = _FINAL_STATE.get(item.type, ended)
                outcome = Outcome(state, item.result, item.failure or last_failure)
        return outcome or Outcome(None)
    finally:
        if display is not None:
            display.__exit__(None, None, None)
