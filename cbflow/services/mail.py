"""The mail a stage sends: queued in the transaction that records what it tells of, sent after.

Without an SMTP server the messages go into the outbox administrators read, in that same
transaction, and that is the whole of it. With one, they are queued (`QueuedMail`) and the
stage's mail step sends them once the transaction has committed. The queue is what makes a mail
server that is down lose nothing: the step fails (under Prefect it is retried with backoff, and
the run fails when the retries are spent), and any later run of a stage of the same round (the
retried run, on any worker, or the next one) sends what is still unsent, each message once. A
message the server refuses outright (an address it will not take) is recorded as refused and
not tried again; a server that cannot be reached leaves the message waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import session_scope
from cbflow.models import QueuedMail
from cbflow.settings import Settings

logger = logging.getLogger(__name__)

# how long a sender holds the messages it took (one connection's worth): a sender that died
# lets them go after this, for the next to send
HOLD = timedelta(minutes=10)
GROUP = 50  # messages sent over one SMTP connection, then marked sent in one transaction


def queue(
    messages: Sequence[notify.Message],
    *,
    settings: Settings,
    session: Session,
    now: datetime,
    batch: str,
) -> None:
    """Keep the messages in the transaction of `session`: in the outbox without SMTP, in the
    queue of `batch` (a round's slug) with it."""
    if notify.uses_outbox(settings):
        notify.send_all(messages, settings=settings, session=session, now=now)
        return
    documents = settings.documents_dir.resolve()
    for message in messages:
        session.add(
            QueuedMail(
                batch=batch,
                to=message.to,
                subject=message.subject,
                body=message.body,
                attachments=[
                    {
                        "filename": a.filename,
                        "path": str(_stored(a.path, documents)),
                        "content_type": a.content_type,
                    }
                    for a in message.attachments
                ],
                created_at=now,
            )
        )


def _stored(path: Path, documents: Path) -> Path:
    """A document's path as kept in the queue: relative to the documents folder, so that a
    worker whose data folder is elsewhere finds it too."""
    absolute = path.resolve()
    return absolute.relative_to(documents) if absolute.is_relative_to(documents) else path


@dataclass
class Delivery:
    """What a mail step did: messages sent, refused (each with the server's reason), and still
    waiting because the server could not be reached (with why)."""

    sent: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    waiting: int = 0
    unreachable: str = ""


def _message(row: QueuedMail, documents: Path) -> notify.Message:
    return notify.Message(
        to=row.to,
        subject=row.subject,
        body=row.body,
        attachments=tuple(
            notify.Attachment(
                filename=a["filename"],
                path=documents / a["path"],
                content_type=a.get("content_type", "application/pdf"),
            )
            for a in row.attachments
        ),
    )


def _claim(batch: str) -> list[QueuedMail]:
    """Take the next group of the batch's unsent messages that no other sender holds. The
    taking is one conditional UPDATE, so two senders at once never take the same message (on
    SQLite and PostgreSQL alike). The hold is on the real clock, whatever the stage's `now`."""
    now = datetime.now(UTC)
    free = (
        col(QueuedMail.sent_at).is_(None),
        col(QueuedMail.refused).is_(False),
        col(QueuedMail.claimed_until).is_(None) | (col(QueuedMail.claimed_until) < now),
    )
    with session_scope() as session:
        candidates = list(
            session.exec(
                select(QueuedMail.id)
                .where(QueuedMail.batch == batch, *free)
                .order_by(col(QueuedMail.id))
                .limit(GROUP)
            )
        )
        if not candidates:
            return []
        taken = session.execute(
            update(QueuedMail)
            .where(col(QueuedMail.id).in_(candidates), *free)
            .values(claimed_until=now + HOLD, attempts=col(QueuedMail.attempts) + 1)
            .returning(col(QueuedMail.id))
        )
        ids = [row[0] for row in taken]
        rows = list(
            session.exec(
                select(QueuedMail).where(col(QueuedMail.id).in_(ids)).order_by(col(QueuedMail.id))
            )
        )
        for row in rows:
            session.expunge(row)
    return rows


def waiting(batch: str) -> int:
    """How many of the batch's messages are still to send."""
    with session_scope() as session:
        return len(
            session.exec(
                select(QueuedMail.id).where(
                    QueuedMail.batch == batch,
                    col(QueuedMail.sent_at).is_(None),
                    col(QueuedMail.refused).is_(False),
                )
            ).all()
        )


def deliver(settings: Settings, batch: str, now: datetime) -> Delivery:
    """Send the batch's queued messages, a group at a time over one connection each, marking
    each sent (or refused) as soon as its group is done. Stops at the first group the server
    could not be reached for: those messages are let go at once for the next attempt. Without
    SMTP there is no queue, and nothing to do."""
    done = Delivery()
    if notify.uses_outbox(settings):
        return done
    documents = settings.documents_dir.resolve()
    while True:
        rows = _claim(batch)
        if not rows:
            break
        failures = notify.mail_each([_message(row, documents) for row in rows], settings)
        unreachable = ""
        with session_scope() as session:
            for row, failure in zip(rows, failures, strict=True):
                stored = session.get(QueuedMail, row.id)
                assert stored is not None
                if failure is None:
                    stored.sent_at = now
                    done.sent += 1
                elif failure.refused:
                    stored.refused = True
                    stored.error = failure.reason[:500]
                    done.refused.append((row.to, failure.reason))
                else:
                    stored.claimed_until = None  # let go: the next attempt sends it
                    stored.error = failure.reason[:500]
                    unreachable = failure.reason
                session.add(stored)
        if unreachable:
            done.unreachable = unreachable
            break
    done.waiting = waiting(batch) if done.unreachable else 0
    for to, reason in done.refused:
        logger.warning("%s: the mail server refused the message to %s: %s", batch, to, reason)
    return done
