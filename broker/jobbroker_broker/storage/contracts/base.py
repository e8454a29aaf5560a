"""How a script's contract is declared: its KEYS, its ARGV by name, its reply by name.

A contract is the Python side of a script's header (``lua/<name>.lua``): the queue keys it
takes, in order; its fixed arguments, a NamedTuple whose fields are the ARGV in order; what one
item of a batch is (a NamedTuple too), repeated after the fixed arguments; and the shape of its
reply, which decodes the flat list Redis answers into named values (rows: NamedTuples, made per
job on the hot paths; records: dataclasses). Callers build arguments and
read replies by name only; the positions live here, once, and tests/lua/test_keys_contract.py
checks every declaration against its script's header.

Header notation (what the test parses)::

    Keys: prefix waiting active
    Input:
      ARGV[1] maxlen: what it is
      ARGV[2] job_count: ...
      then per job:
        id: what it is
        log_lines...: a counted tail: the number of values L, then L values
    Output: per job {reason, state} then {held}

Output shapes: ``name`` (one value), ``{a, b, rest...}`` (a list; a last name with ``...``
takes the remaining values), ``per <item> {a, b}`` (rows of a fixed width) and
``per <item> {a, b} then {c}`` (rows, then a list of fixed length). A long layout may go on
over the next lines until its braces close; prose about the reply follows, indented. Names are
Python identifiers (and not a tuple method's: ``count``, ``index``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Arg = str | bytes | int | float
"""One ARGV value, as redis-py sends it."""

T = TypeVar("T")
U = TypeVar("U")
A = TypeVar("A", bound=tuple[Any, ...])
N = TypeVar("N", bound=tuple[Any, ...])
"""A row: a NamedTuple."""
R = TypeVar("R")

REST = {"rest": True}
"""Field metadata of a reply dataclass' last field that takes the remaining values."""


def _names(cls: type[Any]) -> tuple[str, ...]:
    """A reply class' field names (a NamedTuple's, or a dataclass' with the one that takes the
    rest marked with ``...``)."""
    fields: tuple[str, ...] | None = getattr(cls, "_fields", None)
    if fields is not None:
        return fields
    return tuple(
        f.name + ("..." if f.metadata.get("rest") else "") for f in dataclasses.fields(cls)
    )


@dataclass(frozen=True, slots=True)
class Layout:
    """A reply's shape, as a script header writes it (for the contract test)."""

    per: str = ""
    """What one row is called (``job``, ``update``); '' when the reply has no rows."""
    rows: tuple[str, ...] = ()
    record: tuple[str, ...] = ()
    """The values of a fixed-length list: alone, or after the rows (``then``)."""
    scalar: str = ""
    """The name of a reply that is one value."""


class Scalar(Generic[T]):
    """A reply that is one value."""

    def __init__(self, name: str, convert: Callable[[Any], T]) -> None:
        self.layout = Layout(scalar=name)
        self._convert = convert

    def __call__(self, raw: Any) -> T:
        return self._convert(raw)


class Record(Generic[T]):
    """A reply that is a list of fixed length (its last field may take the rest)."""

    def __init__(self, cls: type[T]) -> None:
        names = _names(cls)
        self.layout = Layout(record=names)
        self._cls: Callable[..., T] = cls
        self._width = len(names)
        self._rest = names[-1].endswith("...")

    def __call__(self, raw: Sequence[Any]) -> T:
        width = self._width
        if self._rest:
            return self._cls(*raw[: width - 1], list(raw[width - 1 :]))
        if len(raw) != width:
            raise ValueError(f"{self.layout.record}: {width} values expected, got {len(raw)}")
        return self._cls(*raw)


@dataclass(frozen=True, slots=True)
class RowsThen(Generic[T, U]):
    """Rows, then the record after them."""

    rows: list[T]
    then: U


class Rows(Generic[N]):
    """A reply that is rows of a fixed width, one per item, each a NamedTuple: rows are made
    per job on the hot paths (lease, complete, add), and a NamedTuple is made several times
    faster than a frozen dataclass (which sets each field through ``object.__setattr__``)."""

    def __init__(self, per: str, cls: type[N]) -> None:
        names = _names(cls)
        self.layout = Layout(per=per, rows=names)
        self._make: Callable[[Iterable[Any]], N] = cls._make  # type: ignore[attr-defined]
        self._width = len(names)

    def __call__(self, raw: Sequence[Any]) -> list[N]:
        width = self._width
        if len(raw) % width:
            raise ValueError(f"{self.layout.per}: rows of {width} expected, got {len(raw)} values")
        values = iter(raw)
        return list(map(self._make, zip(*([values] * width), strict=True)))


class RowsAndThen(Generic[N, U]):
    """Rows of a fixed width, then a record of fixed length."""

    def __init__(self, per: str, row: type[N], then: type[U]) -> None:
        self._rows = Rows(per, row)
        self._then = Record(then)
        self.layout = Layout(per=per, rows=self._rows.layout.rows, record=self._then.layout.record)
        self._tail = len(self.layout.record)

    def __call__(self, raw: Sequence[Any]) -> RowsThen[N, U]:
        cut = len(raw) - self._tail
        return RowsThen(self._rows(raw[:cut]), self._then(raw[cut:]))


@dataclass(frozen=True, slots=True)
class Contract(Generic[A, R]):
    """One script's contract: :meth:`argv` builds its ARGV, :attr:`reply` decodes its reply."""

    name: str
    """The script, ``lua/<name>.lua``."""
    keys: tuple[str, ...]
    """The queue keys it takes as KEYS, in order (names of :mod:`..keys`; ``prefix`` first)."""
    args: type[A]
    """Its fixed arguments: a NamedTuple whose fields are ARGV[1], ARGV[2]... in order."""
    reply: Callable[[Any], R]
    """Decodes the script's reply (a :class:`Scalar`, :class:`Record`, :class:`Rows` or
    :class:`RowsAndThen`, whose ``layout`` the contract test reads)."""
    item: type[tuple[Any, ...]] | None = None
    """What one item of a batch is (a NamedTuple), repeated after the fixed arguments."""
    per: str = ""
    """What the header calls one item (``job``, ``update``)."""
    counted_tail: bool = False
    """The item's last field is a sequence sent as its length, then its values."""

    def argv(self, args: A, items: Iterable[tuple[Any, ...]] = ()) -> list[Arg]:
        """The script's ARGV: the fixed arguments, then every item's values in order."""
        out: list[Arg] = list(args)
        if self.counted_tail:
            for item in items:
                *head, tail = item
                out += head
                out.append(len(tail))
                out += tail
        else:
            for item in items:
                out += item
        return out

    @property
    def layout(self) -> Layout:
        layout: Layout = getattr(self.reply, "layout")  # noqa: B009 - any reply shape has one
        return layout

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(self.args._fields)  # type: ignore[attr-defined]

    @property
    def item_names(self) -> tuple[str, ...]:
        if self.item is None:
            return ()
        names = tuple(self.item._fields)  # type: ignore[attr-defined]
        return (*names[:-1], names[-1] + "...") if self.counted_tail else names
