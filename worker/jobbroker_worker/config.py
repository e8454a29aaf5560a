"""``jobbroker-worker``'s settings: flags win over environment variables, which win over a TOML
file (``--config`` / ``JOBBROKER_WORKER_CONFIG``), which wins over the defaults. The broker
connection (address, token, TLS) is read as the client reads it (docs/worker-service.md)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

QUEUES = ("ai-tasks", "email")
"""The guide's queues, served by default."""


class ConfigError(ValueError):
    """A setting with a value that cannot work; the message names the setting and its source."""


@dataclass(frozen=True)
class Config:
    """Everything ``jobbroker-worker`` can be told."""

    queues: tuple[str, ...] = QUEUES
    """The queues to serve: ``ai-tasks``, ``email`` or both."""
    concurrency: int = 10
    """Jobs each queue runs at once."""
    lease: float = 30.0
    """Seconds a lease lasts without renewal: how soon a dead worker's jobs run elsewhere."""
    openai_api_key: str = field(default="", repr=False)
    """``OPENAI_API_KEY``; empty: completions and embeddings come from the local stand-in."""
    openai_base_url: str = ""
    """``OPENAI_BASE_URL``: any OpenAI-compatible server (vLLM, Ollama, LM Studio...)."""
    model: str = "gpt-4o-mini"
    """The chat model of completion jobs whose data names none."""
    embedding_model: str = "text-embedding-3-small"
    """The model of embedding jobs whose data names none."""
    request_timeout: float = 60.0
    """Seconds an API request may wait for the server (to connect, or for the next chunk)."""
    retry_budget: float = 120.0
    """Seconds of retries one attempt may spend when its job has no timeout."""
    embedding_batch: int = 256
    """Texts per embeddings request at most (the API takes 2,048)."""
    smtp_url: str = field(default="smtp://127.0.0.1:25", repr=False)
    """``smtp://`` or ``smtps://``, with user and password, ``?starttls=on|off``."""
    mail_from: str = "jobbroker <noreply@localhost>"
    """The From address of every email."""
    templates: str = ""
    """A directory of your own email templates, used before the built-in ones."""
    app_url: str = "http://localhost:3000"
    """Where links in the built-in templates point when a job gives only a token."""
    conversation_store: str = ""
    """``module:attribute`` of a ConversationStore (default: the history the job carries)."""
    metrics_port: int = 0
    """Port of the Prometheus endpoint (0: none)."""
    metrics_host: str = "127.0.0.1"
    log_format: str = "console"
    log_level: str = "info"


ENVIRONMENT = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "smtp_url": "JOBBROKER_SMTP_URL",
    "queues": "JOBBROKER_WORKER_QUEUES",
    "concurrency": "JOBBROKER_WORKER_CONCURRENCY",
    "lease": "JOBBROKER_WORKER_LEASE",
    "model": "JOBBROKER_AI_MODEL",
    "embedding_model": "JOBBROKER_EMBEDDING_MODEL",
    "request_timeout": "JOBBROKER_AI_TIMEOUT",
    "retry_budget": "JOBBROKER_AI_RETRY_BUDGET",
    "embedding_batch": "JOBBROKER_EMBEDDING_BATCH",
    "mail_from": "JOBBROKER_MAIL_FROM",
    "templates": "JOBBROKER_MAIL_TEMPLATES",
    "app_url": "JOBBROKER_APP_URL",
    "conversation_store": "JOBBROKER_CONVERSATION_STORE",
    "metrics_port": "JOBBROKER_WORKER_METRICS_PORT",
    "metrics_host": "JOBBROKER_WORKER_METRICS_HOST",
    "log_format": "JOBBROKER_LOG_FORMAT",
    "log_level": "JOBBROKER_LOG_LEVEL",
}
"""The environment variable of each setting."""
CONFIG_ENV = "JOBBROKER_WORKER_CONFIG"


def _convert(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            result: Any = tuple(str(i).strip() for i in items if str(i).strip())
            unknown = [q for q in result if q not in QUEUES]
            if unknown or not result:
                raise ValueError(f"must be {' and/or '.join(QUEUES)} (got {value!r})")
            return result
        if kind == "int":
            result = int(value)
            if result < (0 if name == "metrics_port" else 1):
                raise ValueError(f"must be at least {0 if name == 'metrics_port' else 1}")
            return result
        if kind == "float":
            result = float(value)
            if result <= 0:
                raise ValueError("must be above 0")
            if name == "lease" and not 1 <= result <= 3600:
                raise ValueError("must be between 1 and 3600 seconds")
            return result
        if not isinstance(value, str):
            raise ValueError(f"must be a string (got {value!r})")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} ({source}): {exc}") from None


def load(flags: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    """The configuration from ``flags`` (None: not given), the environment and the TOML file."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    path = flags.pop("config", None) or environ.get(CONFIG_ENV, "")
    if path:
        try:
            document = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
        known = {f.name for f in fields(Config)}
        for key, value in document.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"--config: {path}: unknown setting {key!r}")
            values[name] = _convert(name, value, f"in {path}")
    for name, variable in ENVIRONMENT.items():
        if environ.get(variable):
            values[name] = _convert(name, environ[variable], f"${variable}")
    for name, value in flags.items():
        if value is not None:
            values[name] = _convert(name, value, "--" + name.replace("_", "-"))
    config = replace(Config(), **values)
    smtp(config.smtp_url)  # refuse a bad URL at start, not at the first email
    return config


@dataclass(frozen=True)
class Smtp:
    """Where and how to send email, from ``JOBBROKER_SMTP_URL``."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    """Implicit TLS from the first byte (``smtps://``)."""
    start_tls: bool | None
    """STARTTLS: on, off, or None (when the server offers it)."""


def smtp(url: str) -> Smtp:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"smtp_url: {url!r} is not smtp://host[:port] or smtps://host[:port]")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls", "auto")
    if starttls not in ("on", "off", "auto", "true", "false"):
        raise ConfigError(f"smtp_url: starttls={starttls!r} must be on, off or auto")
    tls = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if tls else 25)
    except ValueError as exc:
        raise ConfigError(f"smtp_url: {exc}") from None
    return Smtp(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=tls,
        start_tls=None if tls or starttls == "auto" else starttls in ("on", "true"),
    )
