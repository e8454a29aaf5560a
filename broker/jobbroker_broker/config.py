"""Settings from four sources, each overriding the one before: the defaults, an optional TOML
file (``--config`` or ``JOBBROKER_CONFIG``), ``JOBBROKER_*`` environment variables, and flags.

Every field of :class:`Settings` is a flag (``--redis-url``), an environment variable
(``JOBBROKER_REDIS_URL``) and a file key (``redis_url``), except the in-process-only ones
(``test_clock``); its help text is the docstring under the field. A value that does not fit is
refused with a message naming the setting and where it came from, before anything starts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import ipaddress
import itertools
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobbroker.logs import check as check_logging

from .settings import IN_PROCESS_ONLY, ConfigError, Settings
from .storage.connection import parse_redis_url

ENV_PREFIX = "JOBBROKER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
__all__ = ["ConfigError", "build_parser", "check", "configurable", "field_docs", "load"]
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_KINDS = {int: "an integer", float: "a number", str: "a string"}


@functools.cache
def field_docs() -> dict[str, str]:
    """Each setting's docstring, read from the source of :class:`Settings`."""
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def configurable() -> list[dataclasses.Field[Any]]:
    """The settings a flag, the environment or a config file may set (not the in-process-only
    ones, such as ``test_clock``)."""
    return [f for f in dataclasses.fields(Settings) if not f.metadata.get(IN_PROCESS_ONLY)]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _convert(field: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """``raw`` as the field's type; ``source`` names the setting in the error."""
    kind = type(getattr(Settings(), field.name))
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{source}: {raw!r} is not a boolean (use true or false)")
    if isinstance(raw, bool) or (kind is str and not isinstance(raw, str)):
        raise ConfigError(f"{source}: {raw!r} is not {_KINDS[kind]}")
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {raw!r} is not {_KINDS[kind]}") from None


def build_parser(
    prog: str, add_extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    """A parser with one flag per setting; flags not given stay out of the namespace."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a jobbroker broker. Each setting is also an environment variable "
        f"({ENV_PREFIX}<NAME>) and a key of the --config file; flags win over the "
        "environment, which wins over the file.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML file of settings (keys as below, with underscores; env {CONFIG_ENV}).",
    )
    if add_extra is not None:
        add_extra(parser)
    docs = field_docs()
    defaults = Settings()
    for field in configurable():
        default = getattr(defaults, field.name)
        help_text = f"{docs.get(field.name, '')} (env {ENV_PREFIX}{field.name.upper()}"
        help_text += ")" if isinstance(default, bool) else f"; default {default!r})"
        if isinstance(default, bool):
            parser.add_argument(
                flag(field.name), action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(
                flag(field.name),
                metavar=type(default).__name__.upper(),
                help=help_text.replace("%", "%%"),
            )
    return parser


def _from_file(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    names = {f.name for f in configurable()}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = key.replace("-", "_")
        if name not in names:
            raise ConfigError(f"--config {path}: unknown setting {key!r}")
        values[name] = raw
    return values


def load(
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    prog: str = "jobbroker-broker",
    add_extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[Settings, argparse.Namespace]:
    """The settings in force, checked; and the parsed namespace (for ``add_extra``'s flags).
    Exits with usage on a malformed command line; raises :class:`ConfigError` on a bad value."""
    environ = os.environ if environ is None else environ
    args = build_parser(prog, add_extra).parse_args(argv)
    fields = {f.name: f for f in configurable()}
    values: dict[str, Any] = {}
    config = getattr(args, "config", None) or environ.get(CONFIG_ENV)
    if config:
        for name, raw in _from_file(config).items():
            values[name] = _convert(fields[name], raw, f"{name} in {config}")
    for name, field in fields.items():
        env = ENV_PREFIX + name.upper()
        if env in environ:
            values[name] = _convert(field, environ[env], env)
        if hasattr(args, name):
            values[name] = _convert(field, getattr(args, name), flag(name))
    settings = Settings(**values)
    check(settings)
    return settings, args


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{flag(name)}: must be more than 0 (got {getattr(settings, name)})")


def _not_negative(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise ConfigError(f"{flag(name)}: must not be negative (got {getattr(settings, name)})")


def check(settings: Settings) -> None:
    """Refuse values the broker cannot run with, naming the setting."""
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"--port: {settings.port} is not a port (0-65535; 0 picks a free one)")
    for name in ("embedded_redis_port", "metrics_port"):
        if not 0 <= getattr(settings, name) <= 65535:
            raise ConfigError(f"{flag(name)}: {getattr(settings, name)} is not a port")
    try:
        check_logging(settings.log_format, settings.log_level)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _positive(
        settings,
        "redis_connect_timeout",
        "redis_timeout",
        "redis_max_connections",
        "events_maxlen",
        "max_payload_bytes",
        "max_json_depth",
        "max_bulk_jobs",
        "max_log_lines",
        "max_log_line_bytes",
        "default_lease_ms",
        "maintenance_interval",
        "maintenance_batch",
        "health_interval",
        "max_message_bytes",
        "max_streams_per_token",
        "metrics_interval",
        "metrics_max_queues",
    )
    _not_negative(settings, "max_stalled", "shutdown_grace", "rate_limit", "rate_limit_burst")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("--tls-cert-file and --tls-key-file: give both to turn TLS on")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ConfigError("--tls-client-ca-file: needs --tls-cert-file and --tls-key-file")
    if settings.redis_url:
        parse_redis_url(settings.redis_url)
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "auth_tokens_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag(name)}: {path} is not a readable file")
    if not settings.auth_tokens_file and not settings.insecure and not is_loopback(settings.host):
        raise ConfigError(
            f"--host {settings.host}: without --auth-tokens-file the broker binds loopback "
            "only (anyone reaching the port could call every method); give a token file "
            "(jobbroker token create), or --insecure to accept that"
        )
