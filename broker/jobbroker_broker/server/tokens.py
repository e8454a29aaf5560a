"""API tokens: the token file, new tokens, and checking a presented token.

A token reads ``jbt_<id>_<secret>``: the id (8 hex digits) is public and names the entry; the
secret is 32 random bytes. The file keeps only each token's SHA-256, so a copy of it lets
nobody call the broker. A presented token is hashed and its hash compared with the entry's in
constant time (``hmac.compare_digest``); the id only picks the entry, and it is not secret.

The file is TOML, one ``[[token]]`` table per token::

    [[token]]
    id = "3f9a2c1b"
    name = "billing-api"
    sha256 = "9f86d0…"
    grants = ["producer:billing-*", "read:*"]
    created = "2026-11-28T02:00:00Z"

A grant is ``<role>:<queue pattern>``; the pattern matches queue names with ``*`` (any run of
characters) and ``?`` (one character). Roles are listed in :mod:`.access`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .access import ROLES, Grant

TOKEN_RE = re.compile(r"jbt_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_NAME_RE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_PATTERN_RE = re.compile(r"[A-Za-z0-9._:*?-]{1,128}")
HEADER = (
    "# jobbroker API tokens. Only SHA-256 hashes of the tokens are stored here.\n"
    "# Written by `jobbroker token create` / `jobbroker token revoke`; the broker re-reads\n"
    "# this file when it changes (or on SIGHUP). Grants: <role>:<queue pattern>, with roles\n"
    f"# {', '.join(ROLES)}.\n"
)


class TokenFileError(Exception):
    """The token file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    id: str
    name: str
    sha256: str
    grants: tuple[Grant, ...]
    created: str = ""


@dataclass(frozen=True, slots=True)
class TokenBook:
    """The tokens of one reading of the file, by id."""

    entries: dict[str, TokenEntry] = field(default_factory=dict)

    def find(self, token: str) -> TokenEntry | None:
        """The entry of a well-formed token whose hash matches, else None."""
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        entry = self.entries.get(match.group(1))
        digest = hashlib.sha256(token.encode()).hexdigest()
        expected = entry.sha256 if entry is not None else "0" * 64
        if not hmac.compare_digest(digest, expected) or entry is None:
            return None
        return entry


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and its id."""
    token_id = secrets.token_hex(4)
    return f"jbt_{token_id}_{secrets.token_urlsafe(32)}", token_id


def parse_grant(text: str, where: str) -> Grant:
    role, sep, pattern = text.partition(":")
    if not sep or role not in ROLES or not _PATTERN_RE.fullmatch(pattern):
        raise TokenFileError(
            f"{where}: grant {text!r} is not <role>:<queue pattern> with a role of "
            f"{', '.join(ROLES)} and a pattern of A-Z a-z 0-9 . _ : - * ?"
        )
    return Grant(role, pattern)


def _entry(raw: object, where: str) -> TokenEntry:
    if not isinstance(raw, dict):
        raise TokenFileError(f"{where}: is not a table")
    values = {}
    for key in ("id", "name", "sha256"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise TokenFileError(f"{where}: {key} is missing or not a string")
        values[key] = value
    if not re.fullmatch(r"[0-9a-f]{8}", values["id"]):
        raise TokenFileError(f"{where}: id {values['id']!r} is not 8 hex digits")
    if not re.fullmatch(r"[0-9a-f]{64}", values["sha256"]):
        raise TokenFileError(f"{where}: sha256 is not 64 hex digits")
    grants = raw.get("grants")
    if not isinstance(grants, list) or not grants or not all(isinstance(g, str) for g in grants):
        raise TokenFileError(f"{where}: grants must be a non-empty list of strings")
    return TokenEntry(
        values["id"],
        values["name"],
        values["sha256"],
        tuple(parse_grant(g, where) for g in grants),
        str(raw.get("created", "")),
    )


def load(path: str | Path) -> TokenBook:
    """Read a token file; a missing file is an empty book only if ``path`` is empty."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"token"}
    if unknown:
        raise TokenFileError(f"{path}: unknown table {sorted(unknown)[0]!r} (expected [[token]])")
    raw_entries = data.get("token", [])
    if not isinstance(raw_entries, list):
        raise TokenFileError(f"{path}: 'token' must be an array of tables ([[token]])")
    entries: dict[str, TokenEntry] = {}
    for i, raw in enumerate(raw_entries):
        entry = _entry(raw, f"{path}: token #{i + 1}")
        if entry.id in entries:
            raise TokenFileError(f"{path}: token id {entry.id} appears twice")
        entries[entry.id] = entry
    return TokenBook(entries)


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of these characters is a TOML basic string


def dump(book: TokenBook) -> str:
    parts = [HEADER]
    for entry in book.entries.values():
        grants = ", ".join(_toml_string(f"{g.role}:{g.pattern}") for g in entry.grants)
        parts.append(
            "\n[[token]]\n"
            f"id = {_toml_string(entry.id)}\n"
            f"name = {_toml_string(entry.name)}\n"
            f"sha256 = {_toml_string(entry.sha256)}\n"
            f"grants = [{grants}]\n"
            f"created = {_toml_string(entry.created)}\n"
        )
    return "".join(parts)


def save(path: str | Path, book: TokenBook) -> None:
    """Write the file atomically (a reader never sees half of it), readable by its owner only."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(dump(book))
    os.replace(temp, target)


def create(path: str | Path, name: str, grants: list[str]) -> tuple[str, TokenEntry]:
    """Add a token to the file (created if missing); returns the token, shown only now."""
    if not _NAME_RE.fullmatch(name):
        raise TokenFileError(f"name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ : @ -")
    if not grants:
        raise TokenFileError("give at least one grant, such as producer:billing-*")
    parsed = tuple(parse_grant(g, "grant") for g in grants)
    book = load(path) if Path(path).exists() else TokenBook()
    token, token_id = new_token()
    while token_id in book.entries:
        token, token_id = new_token()
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = TokenEntry(token_id, name, hash_token(token), parsed, created)
    save(path, TokenBook({**book.entries, token_id: entry}))
    return token, entry


def revoke(path: str | Path, token_id: str) -> TokenEntry:
    """Remove a token by id (or by name when the name is unique)."""
    book = load(path)
    entry = book.entries.get(token_id)
    if entry is None:
        named = [e for e in book.entries.values() if e.name == token_id]
        if len(named) != 1:
            raise TokenFileError(f"{path}: no token with id or unique name {token_id!r}")
        entry = named[0]
    save(path, TokenBook({k: v for k, v in book.entries.items() if k != entry.id}))
    return entry
