"""``jobbroker schemas set|list|get|remove``: a job data schema from a file, then Adds that
break it refused with exit code 2 and the field path."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import Cli

SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string", "format": "email"}, "name": {"type": "string"}},
    "required": ["to", "name"],
}


def test_set_from_a_file_then_add(cli: Cli, queue: str, tmp_path: Path) -> None:
    path = tmp_path / "welcome.json"
    path.write_text(json.dumps(SCHEMA))
    assert cli.ok("schemas", "set", queue, "send-welcome", str(path), "--json").json() == {
        "queue": queue,
        "name": "send-welcome",
        "changed": True,
    }
    again = cli.ok("schemas", "set", queue, "send-welcome", "-", input=json.dumps(SCHEMA))
    assert "unchanged" in again.stdout

    refused = cli("add", queue, "send-welcome", "--data", '{"to": "ada@example.com"}')
    assert refused.exit_code == 2
    assert "data.name" in refused.stderr
    wrong = cli("add", queue, "send-welcome", "--data", '{"to": "nobody", "name": "Ada"}')
    assert wrong.exit_code == 2
    assert "data.to" in wrong.stderr
    cli.add(queue, "send-welcome", "--data", '{"to": "ada@example.com", "name": "Ada"}')

    assert cli.ok("schemas", "list", queue, "--json").json()["schemas"] == {"send-welcome": SCHEMA}
    assert cli.ok("schemas", "get", queue, "send-welcome").json() == SCHEMA
    assert cli("schemas", "get", queue, "nothing").exit_code == 3
    assert "removed" in cli.ok("schemas", "remove", queue, "send-welcome").stdout
    cli.add(queue, "send-welcome", "--data", "{}")


def test_bad_files(cli: Cli, queue: str, tmp_path: Path) -> None:
    missing = cli("schemas", "set", queue, "n", str(tmp_path / "none.json"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{")
    assert cli("schemas", "set", queue, "n", str(garbled)).exit_code == 2
    unusable = tmp_path / "unusable.json"
    unusable.write_text('{"minLength": "x"}')
    refused = cli("schemas", "set", queue, "n", str(unusable))
    assert refused.exit_code == 2
    assert "schema" in refused.stderr
