"""Job data schemas: a JSON Schema per queue and job name, checked at Add and AddBulk.

Stored in Redis as the hash ``jb:{<queue>}:schemas`` (job name -> schema text), so a queue's
schemas share its hash tag. Each broker replica keeps the compiled validators of the queues it
adds to, and reads the hash again at most every :data:`REFRESH_S` (one HGETALL per queue
and second, shared by every Add in flight), so a schema set through one replica applies there
at once and on the others within that time. A version counter read by add.lua would make that
immediate, but would put a Redis read (or a script change) in every Add for a feature most
queues do not use; pub/sub would add a connection per replica and still need the re-read after
a lost message. See docs/schemas.md.

Validators are fastjsonschema's (validation code generated from the schema): about 8 µs per
check of the guide's completion data against 85 µs for jsonschema's, which would have cost an
Add more than the 10 % we allow (bench/RESULTS.md, "Job data schemas").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import orjson

from ..errors import InvalidArgument, LimitExceeded
from ..storage.contracts.jobs import AddJob
from ..storage.store import Store, redis_errors
from .validation import is_json

log = logging.getLogger("jobbroker_broker.schemas")

REFRESH_S = 1.0
"""How old a replica's copy of a queue's schemas may get before an Add reads them again."""
MAX_SCHEMA_BYTES = 65_536
"""Longest schema text accepted."""
MAX_SCHEMAS = 1_000
"""Most job names with a schema per queue."""
MAX_SCHEMA_DEPTH = 64
"""Deepest nesting of a schema's JSON."""
_MAX_CACHED_QUEUES = 10_000

Validate = Callable[[Any], Any]


class SchemaViolation(InvalidArgument):
    """A job's data that breaks its name's schema: ``field`` is the path inside the data, and
    the ErrorInfo metadata ``rule`` the schema keyword it broke."""

    def __init__(self, field: str, problem: str, rule: str) -> None:
        super().__init__(field, problem)
        self.metadata["rule"] = rule


def _local_refs_only(node: Any, depth: int = 0) -> None:
    """Refuse references outside the schema: fastjsonschema would fetch them over the
    network (with urllib), from the broker, at the schema's owner's choosing."""
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidArgument("schema", f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$id", "id") and isinstance(value, str):
                if key == "$ref" and not value.startswith("#"):
                    raise InvalidArgument(
                        "schema", f"$ref {value!r}: only references inside the schema (#/...)"
                    )
                if key == "$id" and not value.startswith("#"):
                    raise InvalidArgument("schema", f"$id {value!r}: schemas may not set $id")
            _local_refs_only(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _local_refs_only(value, depth + 1)


def compile_schema(text: str | bytes) -> Validate:
    """A validator for a schema's JSON text; InvalidArgument (field ``schema``) naming what is
    wrong with it."""
    try:
        definition = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("schema", f"is not valid JSON: {exc}") from None
    if not isinstance(definition, dict | bool):
        raise InvalidArgument("schema", "must be a JSON object (or true / false)")
    _local_refs_only(definition)
    try:
        return fastjsonschema.compile(definition, handlers={}, use_default=False)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise InvalidArgument("schema", f"is not a usable JSON Schema: {exc}") from None
    except Exception as exc:  # a bad regex (re.error), an unresolvable $ref...
        raise InvalidArgument("schema", f"is not a usable JSON Schema: {exc}") from None


def _violation(exc: fastjsonschema.JsonSchemaValueException, prefix: str) -> SchemaViolation:
    # fastjsonschema names the value's path from the root it calls "data": the request field
    # holding it has the same name, so prefixing "jobs[i]." gives the request's field path.
    path = exc.name or "data"
    rule = exc.rule or "schema"
    problem = exc.message[len(path) :].strip() if exc.message.startswith(path) else exc.message
    if rule == "required" and isinstance(exc.value, dict):
        missing = [k for k in exc.rule_definition or () if k not in exc.value]
        if missing:
            path, problem = f"{path}.{missing[0]}", "is required"
    return SchemaViolation(f"{prefix}{path}", problem, rule)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


@dataclass(frozen=True, slots=True)
class QueueSchemas:
    """The compiled schemas of one queue, by job name; falsy when the queue has none."""

    raw: dict[str, bytes]
    validators: dict[str, Validate]

    def __bool__(self) -> bool:
        return bool(self.validators)

    def check(self, job: AddJob, prefix: str = "") -> None:
        """Check one validated job against its name's schema; SchemaViolation when it breaks
        it. ``prefix`` is the job's place in the request (``jobs[2].``)."""
        name = job.name
        validate = self.validators.get(name)
        if validate is None:
            return
        body, content_type = job.data, job.data_type
        if not is_json(content_type):
            raise SchemaViolation(
                f"{prefix}data.content_type",
                f"must be JSON: jobs named {name!r} have a data schema",
                "contentType",
            )
        try:
            validate(orjson.loads(body) if body else None)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _violation(exc, prefix) from None


EMPTY = QueueSchemas({}, {})


@dataclass(slots=True)
class _Entry:
    schemas: QueueSchemas
    read_at: float


class JobSchemas:
    """Every queue's schemas as this replica knows them; one per broker."""

    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._cache: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Task[QueueSchemas]] = {}

    def _key(self, queue: str) -> str:
        return self.store.keys(queue).key("schemas")

    async def of(self, queue: str) -> QueueSchemas:
        """The queue's schemas, read again from Redis when this copy is over ``refresh_s``
        old; UNAVAILABLE when Redis cannot be read."""
        entry = self._cache.get(queue)
        if entry is not None and asyncio.get_running_loop().time() - entry.read_at < self.refresh_s:
            return entry.schemas
        task = self._loading.get(queue)
        if task is None:
            task = self._loading[queue] = asyncio.create_task(self._load(queue))
        # Shielded: a caller that goes away must not cancel the read the others wait for.
        return await asyncio.shield(task)

    async def _load(self, queue: str) -> QueueSchemas:
        me = asyncio.current_task()
        try:
            read_at = asyncio.get_running_loop().time()
            with redis_errors():
                stored: dict[Any, Any] = await self.store.redis.hgetall(self._key(queue))
            previous = self._cache.get(queue)
            schemas = self._compiled(queue, stored, previous.schemas if previous else EMPTY)
            if self._loading.get(queue) is me:  # not invalidated meanwhile
                if len(self._cache) >= _MAX_CACHED_QUEUES:
                    self._cache.clear()
                self._cache[queue] = _Entry(schemas, read_at)
            return schemas
        finally:
            if self._loading.get(queue) is me:
                del self._loading[queue]

    @staticmethod
    def _compiled(queue: str, stored: dict[Any, Any], previous: QueueSchemas) -> QueueSchemas:
        if not stored:
            return EMPTY
        raw: dict[str, bytes] = {}
        validators: dict[str, Validate] = {}
        for key, value in stored.items():
            name, text = _text(key), _bytes(value)
            if previous.raw.get(name) == text:  # unchanged: keep the compiled one
                raw[name], validators[name] = text, previous.validators[name]
                continue
            try:
                validators[name] = compile_schema(text)
            except InvalidArgument as exc:
                # Only a broker of another version could have stored it: say so, check nothing.
                log.error("queue %s, job name %r: stored schema ignored: %s", queue, name, exc)
                continue
            raw[name] = text
        return QueueSchemas(raw, validators)

    def invalidate(self, queue: str) -> None:
        """Forget this replica's copy of the queue's schemas (after changing them)."""
        self._cache.pop(queue, None)
        self._loading.pop(queue, None)  # a read in flight may predate the change

    async def set(self, queue: str, name: str, schema: str) -> bool:
        """Store (or, with an empty ``schema``, remove) the schema of a job name; whether that
        changed anything. The schema is compiled first: one that cannot be used is refused."""
        key = self._key(queue)
        if not schema:
            with redis_errors():
                removed = int(await self.store.redis.hdel(key, name))
            self.invalidate(queue)
            return removed > 0
        text = schema.encode()
        if len(text) > MAX_SCHEMA_BYTES:
            raise InvalidArgument("schema", f"is {len(text)} bytes, over {MAX_SCHEMA_BYTES}")
        compile_schema(text)
        with redis_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                pipe.hget(key, name)
                pipe.hlen(key)
                old, count = await pipe.execute()
            if old is None and count >= MAX_SCHEMAS:
                raise LimitExceeded(
                    "max_schemas", f"queue {queue} has {count} schemas, the most it may have"
                )
            await self.store.redis.hset(key, name, text)
        await self.store.remember_queue(queue)
        self.invalidate(queue)
        return bool(old != text)

    async def list(self, queue: str) -> list[tuple[str, str]]:
        """The queue's (job name, schema text) pairs, by name."""
        with redis_errors():
            stored: dict[Any, Any] = await self.store.redis.hgetall(self._key(queue))
        return sorted((_text(k), _text(v)) for k, v in stored.items())
