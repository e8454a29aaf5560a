"""``jobbroker token create | list | revoke``: the broker's API token file.

The file keeps only SHA-256 hashes; ``create`` prints the new token once. A running broker
re-reads the file within a second of a change (or on SIGHUP).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from jobbroker.cli import output as out
from jobbroker.cli.common import ExitCode, Json, fail

TokenFile = Annotated[
    str,
    typer.Option(
        "--file",
        "-f",
        envvar="JOBBROKER_AUTH_TOKENS_FILE",
        help="The token file (the broker's --auth-tokens-file).",
    ),
]

app = typer.Typer(
    name="token",
    help="Create, list and revoke API tokens (the broker's --auth-tokens-file).",
    no_args_is_help=True,
)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Who the token is for, e.g. billing-api.")],
    grant: Annotated[
        list[str],
        typer.Option(
            "--grant",
            "-g",
            help="ROLE:QUEUE_PATTERN, repeatable; roles read, producer, worker, admin; "
            "patterns match queue names with * and ?.",
        ),
    ],
    file: TokenFile = "jobbroker-tokens.toml",
) -> None:
    """Make a token, store its hash in the file, and print the token (shown only now)."""
    from ..server.tokens import TokenFileError
    from ..server.tokens import create as create_token

    try:
        token, entry = create_token(file, name, grant)
    except TokenFileError as exc:
        fail(ExitCode.USAGE, str(exc))
    print(token)
    grants = ", ".join(f"{g.role}:{g.pattern}" for g in entry.grants)
    out.stderr().print(
        f"token {entry.id} ({entry.name}: {grants}) added to {file}; "
        "this is the only time it is shown"
    )


@app.command("list")
def list_tokens(file: TokenFile = "jobbroker-tokens.toml", as_json: Json = False) -> None:
    """The tokens of the file: id, name, grants, creation time (never the tokens)."""
    from ..server.tokens import TokenFileError, load

    try:
        book = load(file)
    except TokenFileError as exc:
        fail(ExitCode.USAGE, str(exc))
    for entry in book.entries.values():
        grants = [f"{g.role}:{g.pattern}" for g in entry.grants]
        if as_json:
            row = {"id": entry.id, "name": entry.name, "grants": grants, "created": entry.created}
            print(json.dumps(row))
        else:
            print(f"{entry.id}  {entry.name}  {' '.join(grants)}  {entry.created}")


@app.command()
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id (or unique name).")],
    file: TokenFile = "jobbroker-tokens.toml",
) -> None:
    """Remove a token: brokers reading the file refuse it within a second, and end its streams."""
    from ..server.tokens import TokenFileError
    from ..server.tokens import revoke as revoke_token

    try:
        entry = revoke_token(file, token_id)
    except TokenFileError as exc:
        fail(ExitCode.USAGE, str(exc))
    out.stderr().print(f"token {entry.id} ({entry.name}) revoked in {file}")
