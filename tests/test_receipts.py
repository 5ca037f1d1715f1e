"""Receipts are a flow's work: the submission asks for an `issue-receipts` run (one per round
per short interval), and each receipt issued for the first time is e-mailed to whoever
submitted, the PDF attached, through a real local SMTP server. Running the event again sends
nothing; without SMTP the message waits in the outbox with a note of its attachment."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import example_text, london
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlmodel import select
from test_portal_forms import fill_example, sign_in, start, submit
from test_sign_in import Inbox

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.flowruns import ReceiptBatches
from cbflow.models import Application, Document, OutboxMessage, User
from cbflow.services import applications, rounds
from cbflow.settings import Settings, get_settings
from cbflow.web import create_app

LAUNCHED = datetime(2011, 10, 17, 9, 0, tzinfo=UTC)
DURING_EOI = london(2011, 11, 1, 10, 0)
ANSWERS = {
    "lead_council": "ESS",
    "partners": [{"organisation": "Police"}, {"organisation": "Health"}],
    "ambition": "Pool the budgets.",
}


def launch() -> str:
    return stages.launch(example_text(), "round.yaml", now=LAUNCHED).round


def applicant(email: str, council: str) -> None:
    with session_scope() as session:
        session.add(
            User(
                email=email,
                name=email.split("@")[0].title(),
                role="applicant",
                council_code=council,
            )
        )


def submitted_by(slug: str, council: str, actor: str) -> str:
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=actor,
            now=DURING_EOI,
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=ANSWERS | {"lead_council": council},
            actor=actor,
            now=DURING_EOI,
        )
        return application.reference


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on a free local port, keeping what it receives."""
    inbox = Inbox()
    port = _closed_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mail_by_smtp(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The engine (as a flow runs it) reads its settings from the environment."""
    monkeypatch.setenv("CBFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(port))
    get_settings.cache_clear()


def attachments(message: Message) -> list[Message]:
    return [part for part in message.walk() if part.get_filename()]


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data.decode()
    raise AssertionError("the message has no text")


def pdf_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_a_new_receipt_is_mailed_once_to_whoever_submitted_with_the_pdf(
    cbflow_env: Settings, smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    mail_by_smtp(monkeypatch, port)
    slug = launch()
    applicant("pat@essex.gov.uk", "ESS")
    applicant("sam@essex.gov.uk", "ESS")  # a colleague: Pat submitted, so Pat is told
    reference = submitted_by(slug, "ESS", "pat@essex.gov.uk")

    outcome = stages.issue_receipts(slug, now=DURING_EOI)

    assert outcome.counts == {"receipts": 1, "e-mailed": 1}
    assert [m["To"] for m in inbox.messages] == ["pat@essex.gov.uk"]
    message = inbox.messages[0]
    assert message["Subject"] == f"Expression of interest received: {reference}"
    # the receipt says whether it came by the deadline that applies
    assert (
        "at 10:00 on 1 November 2011, on time: the deadline is 12:00 on 10 November 2011."
        in text_of(message)
    )
    (pdf,) = attachments(message)
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "whole-place-2011-ESS-eoi-receipt.pdf"
    text = pdf_text(pdf)
    assert reference in text and "Pool the budgets." in text

    again = stages.issue_receipts(slug, now=DURING_EOI + timedelta(minutes=1))
    assert again.counts == {"receipts": 0}
    assert len(inbox.messages) == 1


def test_a_submission_made_by_the_system_is_mailed_to_the_councils_applicants(
    cbflow_env: Settings, smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    mail_by_smtp(monkeypatch, port)
    slug = launch()
    applicant("kim@kent.gov.uk", "KEN")
    applicant("lee@kent.gov.uk", "KEN")
    applicant("pat@essex.gov.uk", "ESS")
    submitted_by(slug, "KEN", stages.SYSTEM)
    submitted_by(slug, "DUR", stages.SYSTEM)  # no account at Durham: issued, mailed to nobody

    outcome = stages.issue_receipts(slug, now=DURING_EOI)

    assert outcome.counts == {"receipts": 2, "e-mailed": 2}
    assert sorted(m["To"] for m in inbox.messages) == ["kim@kent.gov.uk", "lee@kent.gov.uk"]
    assert all(f"{slug}/KEN" in pdf_text(attachments(m)[0]) for m in inbox.messages)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_without_a_mail_server_the_receipt_stands_and_its_mail_waits_to_be_sent_once(
    cbflow_env: Settings, monkeypatch: pytest.MonkeyPatch, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    mail_by_smtp(monkeypatch, _closed_port())
    slug = launch()
    applicant("pat@essex.gov.uk", "ESS")
    submitted_by(slug, "ESS", "pat@essex.gov.uk")

    outcome = stages.issue_receipts(slug, now=DURING_EOI)

    assert outcome.counts == {"receipts": 1}
    assert "1 messages wait to be sent: the mail server could not be reached" in outcome.notes[0]
    with session_scope() as session:
        assert sorted(session.exec(select(Document.kind)).all()) == ["eoi_receipt", "prospectus"]
    mail_by_smtp(monkeypatch, port)
    again = stages.issue_receipts(slug, now=DURING_EOI)  # the server is back
    assert again.counts == {"receipts": 0, "e-mailed": 1}
    assert [m["To"] for m in inbox.messages] == ["pat@essex.gov.uk"]
    assert len(attachments(inbox.messages[0])) == 1  # the receipt, rendered by the first run
    stages.issue_receipts(slug, now=DURING_EOI)
    assert len(inbox.messages) == 1  # sent once


def test_the_outbox_keeps_the_receipt_message_with_a_note_of_its_attachment(
    cbflow_env: Settings,
) -> None:
    slug = launch()
    applicant("pat@essex.gov.uk", "ESS")
    reference = submitted_by(slug, "ESS", "pat@essex.gov.uk")

    stages.issue_receipts(slug, now=DURING_EOI)
    stages.issue_receipts(slug, now=DURING_EOI)

    with session_scope() as session:
        (message,) = session.exec(select(OutboxMessage)).all()
    assert message.to == "pat@essex.gov.uk" and reference in message.subject
    assert "[Attachment: whole-place-2011-ESS-eoi-receipt.pdf (PDF, " in message.body
    assert "/applications/1/eoi/submitted" in message.body


def test_submissions_in_one_interval_share_one_receipts_run() -> None:
    batches = ReceiptBatches(Settings(), every=timedelta(seconds=30))
    at = datetime(2011, 12, 9, 23, 59, 30, tzinfo=UTC)

    times = {batches.batch_time(at + timedelta(seconds=s)) for s in (0, 1, 15, 29.999)}

    assert times == {datetime(2011, 12, 10, 0, 0, 1, tzinfo=UTC)}
    assert batches.batch_time(at - timedelta(microseconds=1)) == at + timedelta(seconds=1)


def test_a_receipts_run_started_early_waits_for_the_end_of_its_batch() -> None:
    from flows.stages import _not_before

    # the runner may start a run a moment before the time it was asked for: the batch's last
    # submissions are still coming in, and its receipts must include them
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    assert asyncio.run(_not_before(due)) == due
    assert datetime.now(UTC) >= due
    # a run for a time already gone (a re-run, the demo's calendar) acts at once
    started = time.monotonic()
    assert asyncio.run(_not_before(DURING_EOI)) == DURING_EOI
    assert time.monotonic() - started < 0.5


def test_a_submission_stands_when_prefect_cannot_be_reached(
    cbflow_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    slug = launch()
    unreachable = f"http://127.0.0.1:{_closed_port()}/api"
    settings = cbflow_env.model_copy(update={"prefect_api_url": unreachable})
    with TestClient(create_app(settings, clock=FixedClock(DURING_EOI))) as portal:
        sign_in(portal, "pat@essex.gov.uk")
        base = start(portal, slug)
        fill_example(portal, base)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            answer = submit(portal, base)
        assert answer.status_code == 303
        assert time.monotonic() - started < 20
        assert "Your receipt is being prepared" in portal.get(f"{base}/submitted").text
    with session_scope() as session:
        assert session.exec(select(Application.state)).one() == "eoi_submitted"
    assert "no receipts run was started" in caplog.text


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _receipts() -> list[str]:
    with session_scope() as session:
        return list(session.exec(select(Document.key).where(Document.kind == "eoi_receipt")))


@pytest.mark.slow
def test_submissions_through_the_portal_get_their_receipts_from_one_flow_run(
    flow_runner: Settings,
) -> None:
    from cbflow import flowruns

    slug = launch()
    # two portal processes, as behind a load balancer: both ask for the interval's run
    essex_portal = create_app(flow_runner, clock=FixedClock(DURING_EOI))
    kent_portal = create_app(flow_runner, clock=FixedClock(DURING_EOI + timedelta(seconds=5)))
    with TestClient(essex_portal) as essex, TestClient(kent_portal) as kent:
        bases = []
        for client, email, council in (
            (essex, "pat@essex.gov.uk", "ESS"),
            (kent, "kim@kent.gov.uk", "KEN"),
        ):
            sign_in(client, email, council)
            base = start(client, slug)
            assert fill_example(client, base).status_code == 303
            assert submit(client, base).status_code == 303
            bases.append(base)

        _wait_for(lambda: len(_receipts()) == 2, 120, "the receipts")

        assert sorted(_receipts()) == [f"{slug}/ESS/eoi_receipt", f"{slug}/KEN/eoi_receipt"]
        page = essex.get(f"{bases[0]}/submitted").text
        assert "Download your receipt (PDF)" in page
        assert essex.get(f"{bases[0]}/receipt.pdf").content.startswith(b"%PDF")
        assert kent.get(f"{bases[0]}/receipt.pdf").status_code == 404
    runs = [r for r in flowruns.round_runs(flow_runner, slug) if r.flow == "issue-receipts"]
    assert len(runs) == 1
    _wait_for(
        lambda: flowruns.read_runs(flow_runner, [runs[0].id])[runs[0].id].final, 60, "the run"
    )
    assert flowruns.read_runs(flow_runner, [runs[0].id])[runs[0].id].state == "Done"
    with session_scope() as session:
        mailed = session.exec(
            select(OutboxMessage.to).where(OutboxMessage.subject.startswith("Expression"))  # type: ignore[attr-defined]
        ).all()
    assert sorted(mailed) == ["kim@kent.gov.uk", "pat@essex.gov.uk"]
