"""The confirmed pooled budget where it is read after the partners answered: Birmingham names two
partners at its expression of interest; the police confirm (£1,000,000 in 2012-13 and
£250,000.50 in 2013-14), the health partner declines (£500,000 in all). The assessor's scoring
page and the staff's application page list both with their standing, and count only the
police's contribution; the decision letter, the grant offer and the progress report, read back
from their PDFs, state the confirmed pooled budget per year and in total. A round without
partners shows none of it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import edit
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from round_walk import (
    ASSESS_DAY,
    ASSESSORS,
    BID_ANSWERS,
    BID_CLOSE,
    BID_DAY,
    BIDDERS,
    COUNCILS,
    DECIDE_DAY,
    EOI_CLOSE,
    EOI_DAY,
    FINAL_DAY,
    INVITE_DAY,
    LAUNCH_AT,
    SLUG,
    SOURCE,
    START_DAY,
    assessors_of,
    email_of,
    eoi_answers,
    score_everything,
    submit_eoi,
    to_assessment,
)
from sqlmodel import col, select
from test_contributions import add, partners_key, respond, send
from test_letters import CHASE_DAY, one_line, pdftotext
from test_portal_forms import sign_in_as_existing

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, Document, User
from cbflow.services import applications, assessment, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

AMBITION = "Pool budgets around families."
WITH_PARTNERS = edit(SOURCE, partners_key("eoi"))
STAFF = "programme.lead@staff.example"
DECLINED = "Our board has not yet agreed the 2013-14 budget"


def birmingham_with_partners(settings: Settings) -> int:
    """Birmingham's EOI with its two partners, one confirmed and one declined; returns its id."""
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code="BIR",
            actor="council:BIR",
            now=EOI_DAY,
        )
        assert application.id is not None
        application_id = application.id
    police = add(application_id, SLUG, contact_email="pat.jones@wmp.example")
    health = add(
        application_id,
        SLUG,
        organisation="NHS Birmingham and Solihull",
        partner_type="health",
        contact_name="Sam Patel",
        contact_email="sam.patel@nhs.example",
        **{"amount-2012-13": "400000", "amount-2013-14": "100000"},
    )
    respond(send(application_id, police, settings, at=1))
    respond(send(application_id, health, settings, at=2), confirm=False, reason=DECLINED)
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers("BIR", AMBITION),
            actor="council:BIR",
            now=EOI_DAY + timedelta(hours=2),
        )
    return application_id


def to_assessment_with_partners(settings: Settings) -> dict[str, int]:
    """As round_walk's, with Birmingham's partners (its EOI the earliest, as there): the three
    bids under assessment."""
    stages.launch(WITH_PARTNERS, f"{SLUG}.yaml", now=LAUNCH_AT)
    ids = {"BIR": birmingham_with_partners(settings)}
    for n, council in enumerate(COUNCILS):
        if council != "BIR":
            reference = submit_eoi(SLUG, council, EOI_DAY + timedelta(hours=3, minutes=n), AMBITION)
            with session_scope() as session:
                found = applications.get_application(session, reference)
                assert found.id is not None
                ids[council] = found.id
    stages.close_eoi(SLUG, now=EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=INVITE_DAY)
    for n, council in enumerate(BIDDERS):
        with session_scope() as session:
            bid = session.get(Application, ids[council])
            assert bid is not None
            applications.submit(
                session,
                application=bid,
                stage="bid",
                answers=BID_ANSWERS,
                actor=f"council:{council}",
                now=BID_DAY + timedelta(minutes=n),
            )
    stages.close_bids(SLUG, now=BID_CLOSE)
    with session_scope() as session:
        session.add_all(
            User(email=email_of(name), name=name, role="assessor") for name in ASSESSORS[:3]
        )
    stages.assign_assessors(SLUG, now=ASSESS_DAY)
    return ids


def to_returns() -> None:
    """Scored, moderated, decided, started and the first returns cycle run."""
    score_everything()
    stages.open_moderation(SLUG, now=ASSESS_DAY)
    with session_scope() as session:
        for task in assessment.moderation_tasks(session, rounds.get_round(session, SLUG)):
            assessment.moderate(
                session, task=task, score=3, reason="panel agreed", actor="staff", now=FINAL_DAY
            )
    stages.finalise_assessment(SLUG, now=FINAL_DAY)
    stages.decide(SLUG, now=DECIDE_DAY)
    stages.start_implementation(SLUG, now=START_DAY)
    stages.returns_cycle(SLUG, now=CHASE_DAY)


def documents_of(settings: Settings, council: str) -> dict[str, str]:
    """The council's documents: kind -> text on one line (the latest of each kind)."""
    out = {}
    with session_scope() as session:
        for document in session.exec(select(Document).order_by(col(Document.id))):
            if document.key.split("/")[1] == council:
                out[document.kind] = one_line(pdftotext(settings.documents_dir / document.path))
    return out


def page_text(body: str) -> str:
    """A page's text, tags taken out, on one line."""
    return one_line(html.unescape(re.sub(r"<[^>]+>", " ", body)))


def staff_client(settings: Settings) -> TestClient:
    add_user(STAFF, "staff", name="Programme lead")
    client = TestClient(create_app(settings, clock=FixedClock(ASSESS_DAY)))
    sign_in(client, STAFF)
    return client


@pytest.fixture
def ids(cbflow_env: Settings) -> Iterator[dict[str, int]]:
    yield to_assessment_with_partners(cbflow_env)


def pooled_section(text: str) -> str:
    """The page's text from the section's heading on."""
    assert "Partners and pooled budget" in text, text
    return text[text.index("Partners and pooled budget") :][:1500]


def test_the_assessor_and_staff_see_both_partners_and_only_the_confirmed_total(
    cbflow_env: Settings, ids: dict[str, int]
) -> None:
    app: Any = create_app(cbflow_env, clock=FixedClock(ASSESS_DAY))
    assessor = TestClient(app)
    sign_in_as_existing(assessor, assessors_of(ids["BIR"])[0])
    scoring = assessor.get(f"/assess/{ids['BIR']}")
    assert scoring.status_code == 200
    staff = staff_client(cbflow_env)
    shown = staff.get(f"/staff/rounds/{SLUG}/applications/{ids['BIR']}")
    assert shown.status_code == 200
    for page in (scoring.text, shown.text):
        section = pooled_section(page_text(page))
        assert (
            "Metropolitan Police Police £1,000,000.00 £250,000.50 £1,250,000.50 "
            "Confirmed by Pat Jones" in section
        ), section
        assert (
            f"NHS Birmingham and Solihull Health £400,000.00 £100,000.00 £500,000.00 "
            f"Declined: {DECLINED}" in section
        ), section
        # the declined £500,000 is not counted
        assert (
            "Confirmed pooled budget £1,000,000.00 £250,000.50 £1,250,000.50 1 of 2 confirmed"
            in section
        ), section
        assert "£1,750,000.50" not in section
    # a bid without partners in the same round: the section says so
    bolton = staff.get(f"/staff/rounds/{SLUG}/applications/{ids['BOL']}")
    assert "No partners are named, so no pooled budget is confirmed." in page_text(bolton.text)


def test_the_letters_and_the_progress_report_state_the_confirmed_pooled_budget(
    cbflow_env: Settings, ids: dict[str, int]
) -> None:
    to_returns()
    birmingham = documents_of(cbflow_env, "BIR")
    sentence = (
        "The partners of your place have confirmed contributions of £1,250,000.50 in all to the "
        "pooled budget: £1,000,000.00 in 2012-13 and £250,000.50 in 2013-14. Only confirmed "
        "contributions are counted: 1 of the 2 partners named did not confirm theirs."
    )
    for kind in ("decision", "grant_offer"):
        text = birmingham[kind]
        assert "Your bid has been selected" in text or kind == "grant_offer", text
        assert sentence in text, (kind, text)
        assert "Metropolitan Police (police) £1,000,000.00 £250,000.50 £1,250,000.50" in text, text
        assert "NHS Birmingham" not in text, (kind, text)  # declined: not in the letter
    report = birmingham["progress_report"]
    assert "Pooled budget as confirmed by the partners" in report, report
    assert "Confirmed pooled budget £1,000,000.00 £250,000.50 £1,250,000.50" in report, report
    assert "1 of the 2 partners named did not confirm theirs" in report, report
    # Bolton named no partners: its letters say no pooled budget is confirmed
    bolton = documents_of(cbflow_env, "BOL")
    assert (
        "No partners were named for your place, so no pooled budget is confirmed."
        in (bolton["decision"])
    ), bolton["decision"]


def test_a_round_without_partners_shows_no_pooled_budget(cbflow_env: Settings) -> None:
    ids = to_assessment(SOURCE, assessors=3)
    staff = staff_client(cbflow_env)
    shown = staff.get(f"/staff/rounds/{SLUG}/applications/{ids['BIR']}")
    assert shown.status_code == 200
    assert "Partners and pooled budget" not in shown.text
    assessor = TestClient(create_app(cbflow_env, clock=FixedClock(ASSESS_DAY)))
    sign_in_as_existing(assessor, assessors_of(ids["BIR"])[0])
    scoring = assessor.get(f"/assess/{ids['BIR']}")
    assert scoring.status_code == 200 and "Partners and pooled budget" not in scoring.text
    to_returns()
    for kind, text in documents_of(cbflow_env, "BIR").items():
        assert "pooled budget as confirmed" not in text.lower(), kind
        assert "confirmed contributions" not in text, kind
