"""The Jinja environment: templates from the package, autoescaped, with the dashboard's filters.

Autoescaping is on for every template, and no template marks job content ``|safe``: names,
data, logs, results and errors always reach the page as text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from jobbroker import Raw

MAX_SHOWN_BYTES = 64 * 1024
"""Longest payload shown in full on a page (the rest is cut, with a note)."""


def pretty(value: Any) -> str:
    """A decoded payload as indented JSON (other content types: their size and type)."""
    if isinstance(value, Raw):
        return f"({len(value.body)} bytes of {value.content_type})"
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        text = repr(value)
    if len(text) > MAX_SHOWN_BYTES:
        text = text[:MAX_SHOWN_BYTES] + f"\n… ({len(text) - MAX_SHOWN_BYTES} more characters)"
    return text


def short(value: Any, limit: int = 80) -> str:
    text = pretty(value).replace("\n", " ")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    if not value:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobbroker_dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pretty=pretty, short=short, when=when, seconds=seconds)
    env.globals.update(quote=quote, urlencode=urlencode)
    return env
