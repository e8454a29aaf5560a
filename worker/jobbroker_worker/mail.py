"""The ``email`` processors: ``send-welcome``, ``send-verification``, ``send-reset-password`` and
``send-notification``, rendered from Jinja2 templates (an HTML part and a plain-text
alternative; HTML autoescaped) and sent with aiosmtplib.

Idempotent, as the guide asks: once the SMTP server has accepted a message, the worker records
its Message-ID in the job's progress (and log) and waits for the broker to have it before it
says goodbye to the server and completes the job. A later attempt of the same job (the worker
died before Complete, the lease ran out) reads that progress first and answers
``already_sent`` without sending again. The one window left is between the server's acceptance
and the broker's acknowledgement of the record (about a millisecond): a crash exactly there
sends again, with the same Message-ID, which most mail systems collapse into one message.

SMTP replies: a 4xx (or a lost connection) is tried again with backoff inside the attempt; a
5xx (a bad recipient, a rejected message) fails the job for good with the server's reply.
"""

from __future__ import annotations

import contextlib
import logging
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
import jinja2
from jobbroker import JobContext, Worker

from .config import Config, ConfigError, Smtp, smtp
from .metrics import ServiceMetrics
from .models import (
    NotificationData,
    Recipient,
    ResetPasswordData,
    VerificationData,
    WelcomeData,
    parsed,
)
from .retry import Permanent, Transient, deadline, retried

log = logging.getLogger("jobbroker_worker.mail")

QUEUE = "email"
JOBS: dict[str, type[Recipient]] = {
    "send-welcome": WelcomeData,
    "send-verification": VerificationData,
    "send-reset-password": ResetPasswordData,
    "send-notification": NotificationData,
}
LINK_PATHS = {"send-verification": "/verify-email", "send-reset-password": "/reset-password"}
"""Where a job's ``token`` leads when it gives no ``link``: ``<app_url><path>?token=...``."""


def templates(directory: str) -> jinja2.Environment:
    """The templates: ``directory``'s first (your own), then the built-in ones."""
    loaders: list[jinja2.BaseLoader] = []
    if directory:
        if not Path(directory).is_dir():
            raise ConfigError(f"templates: {directory} is not a directory")
        loaders.append(jinja2.FileSystemLoader(directory))
    loaders.append(jinja2.PackageLoader("jobbroker_worker", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def message_id(queue: str, job_id: str, sender: str) -> str:
    """The same for every attempt of a job: a resend in the one unknowable window (see the
    module's docstring) is then recognisably the same message."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in f"{queue}.{job_id}")
    return f"<jobbroker.{safe}@{domain}>"


def _classified(error: Exception) -> Exception:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        first = error.recipients[0]
        error = first
    if isinstance(error, aiosmtplib.SMTPResponseException):
        text = f"SMTP {error.code}: {error.message}"
        if isinstance(error, aiosmtplib.SMTPRecipientRefused):
            text = f"SMTP {error.code} for {error.recipient}: {error.message}"
        if 400 <= error.code < 500:
            return Transient(text)
        return Permanent(text)
    return Transient(f"SMTP {type(error).__name__}: {error}")


class Mailer:
    """The email handlers over one SMTP server."""

    def __init__(self, config: Config, metrics: ServiceMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.server: Smtp = smtp(config.smtp_url)
        self.env = templates(config.templates)

    def register(self, worker: Worker) -> None:
        for name, model in JOBS.items():
            worker.handler(name, schema=model)(self._handler(name, model))

    def _handler(self, name: str, model: type[Recipient]) -> Any:
        async def handle(ctx: JobContext) -> dict[str, Any]:
            return await self.send(ctx, name, parsed(model, ctx))

        handle.__name__ = name.replace("-", "_")
        return handle

    def render(self, name: str, data: Recipient) -> EmailMessage:
        values = {**data.model_dump(), "app_url": self.config.app_url}
        link_path = LINK_PATHS.get(name)
        if link_path and not values.get("link"):
            base = self.config.app_url.rstrip("/")
            values["link"] = f"{base}{link_path}?token={values['token']}"
        subject = self.env.get_template(f"{name}.subject.txt").render(values).strip()
        message = EmailMessage()
        message["From"] = self.config.mail_from
        message["To"] = data.to
        message["Subject"] = " ".join(subject.split())
        message["Date"] = formatdate(localtime=False)
        message.set_content(self.env.get_template(f"{name}.txt").render(values) + "\n")
        message.add_alternative(
            self.env.get_template(f"{name}.html").render(values) + "\n", subtype="html"
        )
        return message

    async def send(self, ctx: JobContext, name: str, data: Recipient) -> dict[str, Any]:
        sent = ctx.previous_progress.value
        if isinstance(sent, dict) and sent.get("messageId"):
            log.info("job %s/%s: %s was sent already", ctx.queue, ctx.id, sent["messageId"])
            ctx.log(f"already sent as {sent['messageId']}; not sending again")
            self.metrics.emails.labels("already_sent").inc()
            return {"status": "already_sent", "messageId": sent["messageId"], "to": data.to}
        message = self.render(name, data)
        message["Message-ID"] = message_id(ctx.queue, ctx.id, self.config.mail_from)

        def on_retry(error: Transient, wait: float) -> None:
            self.metrics.emails.labels("deferred").inc()
            ctx.log(f"{error}; trying again in {wait:.1f} s")

        try:
            await retried(
                lambda: self._deliver(ctx, message),
                deadline(ctx, self.config.retry_budget),
                on_retry,
            )
        except Permanent:
            self.metrics.emails.labels("rejected").inc()
            raise
        except Transient:
            self.metrics.emails.labels("failed").inc()
            raise
        self.metrics.emails.labels("sent").inc()
        return {"status": "sent", "messageId": message["Message-ID"], "to": data.to}

    async def _deliver(self, ctx: JobContext, message: EmailMessage) -> None:
        """One try: connect, send, record the Message-ID with the broker, then QUIT."""
        server = self.server
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            timeout=self.config.request_timeout,
        )
        try:
            try:
                await client.connect()
                await client.send_message(message)
            except (aiosmtplib.SMTPException, OSError) as error:
                raise _classified(error) from error
            # Accepted: the record must reach the broker before anything else can fail.
            record = {"messageId": message["Message-ID"], "to": message["To"]}
            ctx.progress(value=record)
            ctx.log(f"sent {message['Message-ID']} to {message['To']}")
            await ctx.flush()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        finally:
            if client.is_connected:
                client.close()
