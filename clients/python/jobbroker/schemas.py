"""Job data schemas in the forms the client takes: a JSON Schema as a dict, JSON text, or a
pydantic model (any object with ``model_json_schema()``, or a ``TypeAdapter``'s
``json_schema()``), so the client needs no pydantic of its own.

The broker checks the data of every Add and AddBulk against the schema of its queue and job
name (``AsyncClient.set_job_schema``, ``Worker.handler(name, schema=...)``, ``jobbroker schemas
set``); see docs/schemas.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

SchemaLike = Mapping[str, Any] | bool | str | bytes | type | Any
"""What :func:`schema_text` accepts."""


def schema_text(schema: SchemaLike) -> str:
    """The schema as the broker stores it: JSON text, keys sorted, so that registering the
    same schema again is recognised as no change. Empty text for ``None`` (no schema)."""
    if schema is None:
        return ""
    if isinstance(schema, bytes):
        schema = schema.decode()
    if isinstance(schema, str):
        if not schema.strip():
            return ""
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"schema is not valid JSON: {exc}") from None
    elif hasattr(schema, "model_json_schema"):  # a pydantic model class
        schema = schema.model_json_schema()
    elif hasattr(schema, "json_schema"):  # a pydantic TypeAdapter
        schema = schema.json_schema()
    if not isinstance(schema, Mapping | bool):
        raise TypeError(
            f"a schema is a dict, a bool, JSON text or a pydantic model, not {type(schema)!r}"
        )
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
