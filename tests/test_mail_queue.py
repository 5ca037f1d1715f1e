"""The mail queue a stage's mail step sends from, through a real local SMTP server, on SQLite
and PostgreSQL: every message sent once even with two senders at once, an address the server
refuses recorded and not tried again, and a server that cannot be reached leaving the messages
for the next sender."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import select
from test_sign_in import Inbox

from cbflow import notify
from cbflow.db import session_scope
from cbflow.models import OutboxMessage, QueuedMail
from cbflow.services import mail
from cbflow.settings import Settings, get_settings

NOW = datetime(2011, 11, 10, 12, 0, tzinfo=UTC)
REFUSED = "nobody@nowhere.gov.uk"


class Refusing(Inbox):
    """A mail server that will not take mail for one address."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == REFUSED:
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp(any_db_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Inbox, int]]:
    inbox = Refusing()
    port = _port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("CBFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(port))
    get_settings.cache_clear()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _queue(addresses: list[str], batch: str = "a-round") -> None:
    settings = get_settings()
    messages = [notify.Message(to=a, subject=f"To {a}", body="Hello.\n") for a in addresses]
    with session_scope() as session:
        mail.queue(messages, settings=settings, session=session, now=NOW, batch=batch)


def test_two_senders_at_once_send_each_queued_message_once(smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    addresses = [f"officer{i}@council.gov.uk" for i in range(120)]  # more than one group each
    _queue(addresses)
    _queue(["someone@elsewhere.gov.uk"], batch="another-round")
    results: list[mail.Delivery] = []

    def send() -> None:
        results.append(mail.deliver(get_settings(), "a-round", NOW))

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=120)

    assert sorted(m["To"] for m in inbox.messages) == sorted(addresses)
    assert sum(r.sent for r in results) == 120
    with session_scope() as session:
        rows = session.exec(select(QueuedMail).where(QueuedMail.batch == "a-round")).all()
        assert all(row.sent_at == NOW for row in rows)
        other = session.exec(select(QueuedMail).where(QueuedMail.batch == "another-round")).one()
        assert other.sent_at is None, "another round's mail is its own stage's to send"
    assert mail.deliver(get_settings(), "a-round", NOW).sent == 0


def test_an_address_the_server_refuses_is_recorded_and_not_tried_again(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    _queue(["pat@essex.gov.uk", REFUSED, "sam@kent.gov.uk"])

    done = mail.deliver(get_settings(), "a-round", NOW)

    assert done.sent == 2 and done.waiting == 0
    assert [to for to, _ in done.refused] == [REFUSED]
    assert "no such mailbox" in done.refused[0][1]
    assert sorted(m["To"] for m in inbox.messages) == ["pat@essex.gov.uk", "sam@kent.gov.uk"]
    again = mail.deliver(get_settings(), "a-round", NOW)
    assert again.sent == 0 and again.refused == []
    with session_scope() as session:
        refused = session.exec(select(QueuedMail).where(QueuedMail.to == REFUSED)).one()
        assert refused.refused and refused.sent_at is None and "550" in refused.error


def test_messages_wait_while_the_server_cannot_be_reached_and_go_when_it_can(
    smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    _queue(["pat@essex.gov.uk", "sam@kent.gov.uk"])
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(_port()))  # nothing listens there
    get_settings.cache_clear()

    down = mail.deliver(get_settings(), "a-round", NOW)

    assert down.sent == 0 and down.waiting == 2 and down.unreachable
    assert inbox.messages == []
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(port))
    get_settings.cache_clear()
    up = mail.deliver(get_settings(), "a-round", NOW)  # at once: the failed sender let them go
    assert up.sent == 2 and up.waiting == 0
    assert sorted(m["To"] for m in inbox.messages) == ["pat@essex.gov.uk", "sam@kent.gov.uk"]


def test_without_a_mail_server_messages_go_to_the_outbox_and_nothing_is_queued(
    any_db_env: Settings,
) -> None:
    _queue(["pat@essex.gov.uk"])
    with session_scope() as session:
        assert session.exec(select(QueuedMail)).all() == []
        assert [m.to for m in session.exec(select(OutboxMessage))] == ["pat@essex.gov.uk"]
    assert mail.deliver(get_settings(), "a-round", NOW) == mail.Delivery()
