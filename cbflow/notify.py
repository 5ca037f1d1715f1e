"""E-mail: compose (pure: a template and its context make a message) and send (I/O: SMTP, or the
outbox administrators read when no SMTP server is configured)."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from cbflow.models import OutboxMessage
from cbflow.settings import Settings, get_settings
from cbflow.store import get_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message, read when the message is sent."""

    filename: str  # the name the recipient sees
    path: Path
    content_type: str = "application/pdf"

    def local_file(self, settings: Settings | None = None) -> Path | None:
        """The file on this host: where it was rendered or, when another host rendered it (a
        stage retried on another worker), fetched from the store (cbflow.store)."""
        if self.path.is_file():
            return self.path
        settings = settings or get_settings()
        root = settings.documents_dir.resolve()
        if not self.path.resolve().is_relative_to(root):
            return None
        key = self.path.resolve().relative_to(root).as_posix()
        return get_store(settings).local_copy("documents", key)

    def note(self) -> str:
        """How the outbox shows it: the outbox keeps text, not files."""
        found = self.local_file()
        size = found.stat().st_size if found is not None else 0
        kind = self.content_type.rpartition("/")[2].upper()
        return f"[Attachment: {self.filename} ({kind}, {max(1, round(size / 1024))} KB)]"


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()


@cache
def _environment(folder: Path) -> Environment:
    # plain-text mail: HTML escaping would corrupt it, and nothing here is read as HTML
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def compose(
    templates_dir: Path,
    template: str,
    to: str,
    *,
    attachments: Sequence[Attachment] = (),
    **context: Any,
) -> Message:
    """A message from templates/email/<template>.txt: its first line is the subject, the rest (after
    a blank line) the body."""
    text = _environment(templates_dir / "email").get_template(f"{template}.txt").render(**context)
    subject, _, body = text.partition("\n")
    return Message(
        to=to,
        subject=subject.removeprefix("Subject:").strip(),
        body=body.lstrip("\n"),
        attachments=tuple(attachments),
    )


def uses_outbox(settings: Settings) -> bool:
    return not settings.smtp_host


def _email(message: Message, settings: Settings) -> EmailMessage:
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.to
    email["Subject"] = message.subject
    email.set_content(message.body)
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        email.add_attachment(
            _attached(attachment, settings),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return email


class AttachmentMissing(OSError):
    """A message's attachment could not be read: that message is not sent (and is reported
    so), the others are. `lasting` when the store has no such file (trying again will not
    help), not when the store could not be reached."""

    def __init__(self, reason: str, *, lasting: bool) -> None:
        super().__init__(reason)
        self.lasting = lasting


def _attached(attachment: Attachment, settings: Settings) -> bytes:
    try:
        found = attachment.local_file(settings)
        if found is not None:
            return found.read_bytes()
    except Exception as exc:  # the store unreachable, or its copy damaged: this message fails
        reason = f"the attachment {attachment.filename} was not read: {exc}"
        raise AttachmentMissing(reason, lasting=False) from exc
    reason = f"the attachment {attachment.filename} is in no store"
    raise AttachmentMissing(reason, lasting=True)


@contextmanager
def _smtp(settings: Settings) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        yield smtp


def _keep(message: Message, session: Session, now: datetime) -> None:
    body = message.body
    if message.attachments:
        notes = "\n".join(a.note() for a in message.attachments)
        body = f"{body.rstrip()}\n\n{notes}\n"
    session.add(OutboxMessage(to=message.to, subject=message.subject, body=body, created_at=now))


def send_after_commit(
    message: Message, *, settings: Settings, session: Session, now: datetime
) -> Message | None:
    """For a page's request: without SMTP, keep the message in the outbox (it commits with the
    request's transaction) and return None; with SMTP, return the message for `deliver` to mail
    once the transaction has committed and the answer has gone. The person then waits neither
    for the mail server nor for its time-outs, and how long the answer took says nothing about
    whether a message was sent."""
    if uses_outbox(settings):
        _keep(message, session, now)
        return None
    return message


def deliver(message: Message, settings: Settings) -> bool:
    """Mail one message by SMTP, logging (not raising) a failure. Returns whether it was sent."""
    failed = mail_all([message], settings)
    for _, reason in failed:
        logger.warning("mail to %s (%s) was not sent: %s", message.to, message.subject, reason)
    return not failed


def send_all(
    messages: Sequence[Message], *, settings: Settings, session: Session, now: datetime
) -> list[tuple[Message, str]]:
    """Deliver many messages: by SMTP (see `mail_all`), or into the outbox. Returns the ones not
    delivered, each with the reason."""
    if uses_outbox(settings):
        for message in messages:
            _keep(message, session, now)
        return []
    return mail_all(messages, settings)


@dataclass(frozen=True)
class Failure:
    """Why a message was not sent: `refused` by the server (it will not take it: trying again
    will not help), or not (the server could not be reached, or the connection dropped)."""

    reason: str
    refused: bool


def mail_each(messages: Sequence[Message], settings: Settings) -> list[Failure | None]:
    """Send by SMTP over one connection. A message the server refuses does not stop the others.
    Returns, for each message in order, None when sent, or why not."""
    results: list[Failure | None] = []
    try:
        with _smtp(settings) as smtp:
            for message in messages:
                try:
                    smtp.send_message(_email(message, settings))
                    results.append(None)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
                    results.append(Failure(str(exc), refused=True))
                except AttachmentMissing as exc:  # this message alone; in no store: for good
                    results.append(Failure(str(exc), refused=exc.lasting))
    except (smtplib.SMTPException, OSError) as exc:  # unreachable, or the connection dropped
        results += [Failure(str(exc), refused=False)] * (len(messages) - len(results))
    return results


def mail_all(messages: Sequence[Message], settings: Settings) -> list[tuple[Message, str]]:
    """Send by SMTP over one connection (see `mail_each`). Returns the ones not sent, each with
    the reason."""
    if not messages:
        return []
    results = mail_each(messages, settings)
    return [(m, f.reason) for m, f in zip(messages, results, strict=True) if f is not None]
