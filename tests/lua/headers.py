"""Read a script's contract from its header comment (the notation of contracts/base.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jobbroker_broker.storage import scripts as scripts_module
from jobbroker_broker.storage.contracts.base import Layout

LUA_DIR = Path(scripts_module.__file__).parent / "lua"

_KEYS = re.compile(r"^  Keys: (.+)$", re.MULTILINE)
_ARG = re.compile(r"^    ARGV\[(\d+)\] (\w+): ")
_PER_ITEM = re.compile(r"^    then per (\w+):$")
_ITEM_FIELD = re.compile(r"^      (\w+(?:\.\.\.)?): ")
_OUTPUT = "  Output: "
_NAMES = r"\{([^{}]*)\}"
_ROWS = re.compile(rf"^per (\w+) {_NAMES}(?: then {_NAMES})?$")
_RECORD = re.compile(rf"^{_NAMES}$")
_SCALAR = re.compile(r"^(\w+)$")


@dataclass(frozen=True, slots=True)
class Header:
    keys: tuple[str, ...]
    args: tuple[str, ...]
    """ARGV names, in order."""
    per: str
    """What one item is called; '' when the script takes no items."""
    item: tuple[str, ...]
    """One item's names, in order (a counted tail ends with ``...``)."""
    layout: Layout


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _layout(text: str) -> Layout:
    text = " ".join(text.split())
    if match := _ROWS.match(text):
        per, rows, then = match.groups()
        return Layout(per=per, rows=_names(rows), record=_names(then) if then else ())
    if match := _RECORD.match(text):
        return Layout(record=_names(match.group(1)))
    if match := _SCALAR.match(text):
        return Layout(scalar=match.group(1))
    raise ValueError(f"not an output layout: {text!r}")


def _output(lines: list[str]) -> str:
    """The layout after ``Output:``: up to where its braces close, with a ``then {...}`` on the
    next line (the prose that follows is indented too, but starts after a closed brace)."""
    text = lines[0][len(_OUTPUT) :]
    rest = iter(lines[1:])
    for line in rest:
        if text.count("{") > text.count("}") or line.strip().startswith("then {"):
            text += " " + line.strip()
        else:
            break
    return text


def parse(name: str) -> Header:
    """The contract written in ``lua/<name>.lua``'s header."""
    source = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    assert source.startswith("--[[\n"), f"{name}.lua opens without a header"
    header = source[: source.index("\n]]")]
    keys = _KEYS.search(header)
    assert keys is not None, f"{name}.lua: no 'Keys:' line"
    lines = header.splitlines()
    args: list[str] = []
    per = ""
    item: list[str] = []
    output = ""
    for i, line in enumerate(lines):
        if arg := _ARG.match(line):
            assert int(arg.group(1)) == len(args) + 1, f"{name}.lua: ARGV out of order: {line}"
            args.append(arg.group(2))
        elif per_item := _PER_ITEM.match(line):
            per = per_item.group(1)
        elif per and not output and (field := _ITEM_FIELD.match(line)):
            item.append(field.group(1))
        elif line.startswith(_OUTPUT):
            output = _output(lines[i:])
    assert output, f"{name}.lua: no 'Output:' line"
    return Header(tuple(keys.group(1).split()), tuple(args), per, tuple(item), _layout(output))
