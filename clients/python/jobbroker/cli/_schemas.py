"""``jobbroker schemas list|get|set|remove``: the JSON Schemas the broker checks job data
against at Add (QueueService.SetJobSchema / ListJobSchemas; docs/schemas.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from . import output as out
from .common import Address, ExitCode, Json, Queue, connected, fail

Name = Annotated[str, typer.Argument(metavar="NAME", help="Job name.", show_default=False)]
SchemaFile = Annotated[
    str,
    typer.Argument(
        metavar="FILE", help="The JSON Schema: a JSON file, or - for stdin.", show_default=False
    ),
]

schemas_app = typer.Typer(
    help="Job data schemas checked at Add: list, get, set (from a file), remove.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``schemas`` to the ``jobbroker`` app."""
    app.add_typer(schemas_app, name="schemas")


def _read(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        fail(ExitCode.USAGE, f"FILE: cannot read {path!r}: {exc.strerror}")
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(ExitCode.USAGE, f"FILE: {path!r} is not valid JSON ({exc})")
    return text


@schemas_app.command("list")
def schemas_list(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """The job names of a queue that have a data schema."""
    with connected(address) as client:
        found = client.job_schemas(queue)
    if as_json:
        out.print_json({"queue": queue, "schemas": found})
        return
    if not found:
        out.stdout().print(f"{escape(queue)}: no job data schemas")
    for name, schema in found.items():
        title = schema.get("title", "") if isinstance(schema, dict) else ""
        out.stdout().print(f"{escape(name)}" + (f"  ({escape(str(title))})" if title else ""))


@schemas_app.command("get")
def schemas_get(queue: Queue, name: Name, address: Address = None) -> None:
    """Print the data schema of a job name (JSON)."""
    with connected(address) as client:
        found = client.job_schemas(queue)
    if name not in found:
        fail(ExitCode.NOT_FOUND, f"queue {queue!r} has no data schema for jobs named {name!r}")
    out.print_json(found[name])


@schemas_app.command("set")
def schemas_set(
    queue: Queue, name: Name, file: SchemaFile, address: Address = None, as_json: Json = False
) -> None:
    """Make the broker refuse Adds of jobs named NAME whose data breaks the schema in FILE."""
    text = _read(file)
    with connected(address) as client:
        changed = client.set_job_schema(queue, name, text)
    state = "set" if changed else "unchanged"
    document = {"queue": queue, "name": name, "changed": changed}
    if as_json:
        out.print_json(document)
    else:
        out.stdout().print(f"{escape(queue)} / {escape(name)}: data schema {state}")


@schemas_app.command("remove")
def schemas_remove(
    queue: Queue, name: Name, address: Address = None, as_json: Json = False
) -> None:
    """Stop checking the data of jobs named NAME."""
    with connected(address) as client:
        changed = client.set_job_schema(queue, name, None)
    if as_json:
        out.print_json({"queue": queue, "name": name, "changed": changed})
    else:
        what = "removed" if changed else "had none"
        out.stdout().print(f"{escape(queue)} / {escape(name)}: data schema {what}")
