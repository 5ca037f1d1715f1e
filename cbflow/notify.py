"""E-mail: compose (pure: a template and its context make a message) and send (I/O: SMTP, or the
outbox administrators read when no SMTP server is configured)."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from cbflow.models import OutboxMessage
from cbflow.settings import Settings


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str


@cache
def _environment(folder: Path) -> Environment:
    # plain-text mail: HTML escaping would corrupt it, and nothing here is read as HTML
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def compose(templates_dir: Path, template: str, to: str, **context: Any) -> Message:
    """A message from templates/email/<template>.txt: its first line is the subject, the rest (after
    a blank line) the body."""
    text = _environment(templates_dir / "email").get_template(f"{template}.txt").render(**context)
    subject, _, body = text.partition("\n")
    return Message(to=to, subject=subject.removeprefix("Subject:").strip(), body=body.lstrip("\n"))


def send(message: Message, *, settings: Settings, session: Session, now: datetime) -> None:
    """Deliver by SMTP to CBFLOW_SMTP_HOST; without one, keep the message in the outbox."""
    if not settings.smtp_host:
        session.add(
            OutboxMessage(to=message.to, subject=message.subject, body=message.body, created_at=now)
        )
        return
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.to
    email["Subject"] = message.subject
    email.set_content(message.body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(email)
