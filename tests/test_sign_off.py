"""Certified sign-off: where the prospectus asks for it, applicants send a complete form to their
council's certifier, who approves it (submitting it) or returns it with a reason (reopening it);
only before the deadline, with the pages warning from 48 hours before; every step audited and
mailed. On SQLite and PostgreSQL for the rules, through the portal's pages for the journey."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from conftest import edit, example_text
from fastapi.testclient import TestClient
from portal import add_user
from sqlmodel import col, select
from test_portal_forms import csrf, launch, post, sign_in
from test_sift_and_selection import (
    BID_CLOSE,
    BID_DAY,
    EOI_CLOSE,
    EOI_DAY,
    STAFF,
    confirm,
    eoi_answers,
)

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.models import Application, AuditEvent, OutboxMessage, User
from cbflow.services import applications, rounds, sift, signoff
from cbflow.services.applications import SignOffRequired
from cbflow.settings import Settings
from cbflow.web import create_app

SIGN_OFF = (
    "capacity:\n",
    "sign_off: {role: Chief executive or section 151 officer}\ncapacity:\n",
)
ROUND = "whole-place-2011"
SENT = "sent to Chris Chief (ceo@essex.gov.uk) for sign-off"


def round_with_sign_off() -> str:
    return launch(edit(example_text(), SIGN_OFF))


def started(council: str = "ESS", complete: bool = True) -> int:
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, ROUND),
            council_code=council,
            actor=f"pat@{council.lower()}.gov.uk",
            now=EOI_DAY,
            answers=eoi_answers(council) if complete else {"lead_council": council},
        )
        assert application.id is not None
        return application.id


def certifier(council: str = "ESS", email: str = "ceo@essex.gov.uk") -> User:
    return add_user(email, "certifier", council=council, name="Chris Chief")


def send(application_id: int, certifier_id: int | None, at_hours: int = 1) -> User:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return signoff.send(
            session,
            application=application,
            stage="eoi",
            certifier_id=certifier_id,
            actor="pat@ess.gov.uk",
            now=EOI_DAY + timedelta(hours=at_hours),
        )


def approve(application_id: int, who: User, now: object = None) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        person = session.get(User, who.id)
        assert application is not None and person is not None
        signoff.approve(
            session,
            application=application,
            stage="eoi",
            certifier=person,
            now=now or EOI_DAY + timedelta(hours=2),  # type: ignore[arg-type]
        )


def give_back(application_id: int, who: User, reason: str) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        person = session.get(User, who.id)
        assert application is not None and person is not None
        signoff.give_back(
            session,
            application=application,
            stage="eoi",
            certifier=person,
            reason=reason,
            now=EOI_DAY + timedelta(hours=2),
        )


def state_of(application_id: int) -> Application:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        session.expunge(application)
        return application


def test_only_the_certifiers_approval_submits_and_a_return_reopens(any_db_env: Settings) -> None:
    round_with_sign_off()
    application_id = started()
    chris = certifier()
    other_council = certifier("DEV", "ceo@devon.gov.uk")

    # an applicant cannot submit it themselves
    with session_scope() as session, pytest.raises(SignOffRequired, match="send it to your"):
        application = session.get(Application, application_id)
        assert application is not None
        applications.submit(session, application=application, stage="eoi", actor="pat", now=EOI_DAY)
    # nor send it to another council's certifier, or to nobody
    with pytest.raises(ValidationFailed, match="certifier"):
        send(application_id, other_council.id)
    with pytest.raises(ValidationFailed, match="certifier"):
        send(application_id, None)

    assert send(application_id, chris.id).email == "ceo@essex.gov.uk"
    waiting = state_of(application_id)
    assert waiting.state == "eoi_awaiting_sign_off" and waiting.eoi_submitted_at is None
    assert waiting.certifier_id == chris.id
    # waiting, it cannot change
    with session_scope() as session, pytest.raises(CbflowError, match="can no longer be changed"):
        application = session.get(Application, application_id)
        assert application is not None
        applications.save_draft(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers("ESS", ambition_words=3),
            actor="pat",
            now=EOI_DAY + timedelta(hours=1, minutes=30),
        )

    # returned, with a reason (none is refused), it is a draft again
    with pytest.raises(ValidationFailed, match="Say why"):
        give_back(application_id, chris, "   ")
    give_back(application_id, chris, "The pooled budget figures need the police's agreement.")
    assert state_of(application_id).state == "eoi_draft"

    send(application_id, chris.id, at_hours=3)
    with pytest.raises(CbflowError, match="another certifier"):
        approve(application_id, other_council)
    approve(application_id, chris, EOI_DAY + timedelta(hours=4))
    submitted = state_of(application_id)
    assert submitted.state == "eoi_submitted"
    assert submitted.eoi_submitted_at == EOI_DAY + timedelta(hours=4)

    with session_scope() as session:
        moves = [
            (e.to_state, e.actor, e.reason)
            for e in session.exec(
                select(AuditEvent)
                .where(AuditEvent.entity == "application", AuditEvent.entity_id == application_id)
                .order_by(col(AuditEvent.id))
            )
            if e.to_state
        ]
    assert moves[1:] == [
        (
            "eoi_awaiting_sign_off",
            "pat@ess.gov.uk",
            "sent to Chris Chief (ceo@essex.gov.uk) for sign-off",
        ),
        (
            "eoi_draft",
            "ceo@essex.gov.uk",
            "returned by the certifier: The pooled budget figures need the police's agreement.",
        ),
        (
            "eoi_awaiting_sign_off",
            "pat@ess.gov.uk",
            "sent to Chris Chief (ceo@essex.gov.uk) for sign-off",
        ),
        ("eoi_submitted", "ceo@essex.gov.uk", "eoi submitted"),
    ]


def test_an_incomplete_form_is_not_sent(cbflow_env: Settings) -> None:
    round_with_sign_off()
    application_id = started(complete=False)
    chris = certifier()
    with pytest.raises(ValidationFailed):
        send(application_id, chris.id)
    assert state_of(application_id).state == "eoi_draft"


def test_waiting_for_sign_off_at_the_deadline_is_not_a_submission(cbflow_env: Settings) -> None:
    round_with_sign_off()
    late = started("ESS")
    chris = certifier()
    send(late, chris.id)
    # the certifier is too late: nothing changes
    with pytest.raises(DeadlinePassed):
        approve(late, chris, EOI_CLOSE)
    assert state_of(late).state == "eoi_awaiting_sign_off"
    # the window closes: it is no submission, so the sift never sees it
    with session_scope() as session:
        counts = sift.close_eoi(
            session, round_=rounds.get_round(session, ROUND), actor=STAFF, now=EOI_CLOSE
        )
    assert sum(counts.values()) == 0
    assert state_of(late).eoi_submitted_at is None


def test_a_bid_still_waiting_when_bids_close_is_unsuccessful_and_says_why(
    cbflow_env: Settings,
) -> None:
    round_with_sign_off()
    application_id = started("ESS")
    chris = certifier()
    send(application_id, chris.id)
    approve(application_id, chris)
    with session_scope() as session:
        sift.close_eoi(session, round_=rounds.get_round(session, ROUND), actor=STAFF, now=EOI_CLOSE)
    confirm(ROUND, [f"{ROUND}/ESS"])
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        applications.save_draft(
            session,
            application=application,
            stage="bid",
            answers={
                "pooled_budget": [
                    {"organisation": "Police", "year": "2012-13", "amount_gbp": "50000.00"}
                ],
                "support_requested_gbp": "100000",
            },
            actor="pat",
            now=BID_DAY,
        )
        signoff.send(
            session,
            application=application,
            stage="bid",
            certifier_id=chris.id,
            actor="pat",
            now=BID_DAY,
        )
    with session_scope() as session:
        sift.close_bids(
            session, round_=rounds.get_round(session, ROUND), actor=STAFF, now=BID_CLOSE
        )
    closed = state_of(application_id)
    assert closed.state == "unsuccessful" and closed.bid_submitted_at is None
    assert "still waiting for sign-off at the deadline" in (closed.decision_reason or "")


def test_the_pages_warn_from_48_hours_before_the_deadline(cbflow_env: Settings) -> None:
    round_with_sign_off()
    application_id = started()
    with session_scope() as session:
        prospectus = rounds.prospectus_of(rounds.get_round(session, ROUND))
        application = session.get(Application, application_id)
        assert application is not None

        def warning(before: timedelta) -> str | None:
            return signoff.deadline_warning(prospectus, application, "eoi", EOI_CLOSE - before)

        assert warning(timedelta(hours=48, seconds=1)) is None
        assert warning(timedelta(hours=48)) is not None
        assert "must be sent for sign-off and approved" in (warning(timedelta(hours=2)) or "")
        assert warning(timedelta(0)) is None  # closed: the pages say that instead
        application.state = "eoi_awaiting_sign_off"
        assert "unless the certifier approves it before then, it is not submitted" in (
            warning(timedelta(hours=47)) or ""
        )


@pytest.fixture
def browsers(cbflow_env: Settings) -> Iterator[tuple[TestClient, TestClient, FixedClock]]:
    """Essex's applicant and, once invited, its certifier; on a clock two days before the
    EOI deadline."""
    clock = FixedClock(EOI_CLOSE - timedelta(hours=47))
    app = create_app(cbflow_env, clock=clock)
    with TestClient(app) as applicant, TestClient(app) as ceo:
        sign_in(applicant, "pat@essex.gov.uk", council="ESS")
        yield applicant, ceo, clock


def mail_to(address: str) -> list[OutboxMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.to == address)
                .order_by(col(OutboxMessage.id))
            )
        )


def test_sign_off_through_the_pages(
    browsers: tuple[TestClient, TestClient, FixedClock],
) -> None:
    applicant, ceo, _ = browsers
    round_with_sign_off()
    # the applicant invites their chief executive as the council's certifier
    invited = post(
        applicant,
        "/applications/team",
        {"name": "Chris Chief", "email": "ceo@essex.gov.uk", "role": "certifier"},
    )
    assert invited.status_code == 303
    assert "as a certifier for Essex" in mail_to("ceo@essex.gov.uk")[0].body
    sign_in_path = re.search(r"/sign-in/[\w-]+", mail_to("ceo@essex.gov.uk")[0].body)
    assert sign_in_path is not None

    page = applicant.get("/applications")
    started_at = applicant.post(
        "/applications/start",
        data={"round": ROUND, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    base = str(started_at.headers["location"])
    tasks = applicant.get(base)
    assert "It must be sent for sign-off and approved by the certifier before then" in tasks.text
    saved = post(
        applicant,
        f"{base}/section/place",
        {
            "lead_council": "ESS",
            "partners-rows": "2",
            "partners-0-organisation": "Essex Police",
            "partners-0-role": "Community safety",
            "partners-1-organisation": "NHS North Essex",
            "partners-1-role": "Health",
            "ambition": "One public service for every family in Essex.",
            "action": "save",
        },
    )
    assert saved.status_code == 303
    check = applicant.get(f"{base}/check")
    assert "Send for sign-off" in check.text and "Chris Chief" in check.text
    assert 'name="declaration"' not in check.text  # nobody but the certifier submits it
    with session_scope() as session:
        chris = session.exec(select(User).where(User.email == "ceo@essex.gov.uk")).one()
    sent = applicant.post(
        f"{base}/sign-off",
        data={"certifier": str(chris.id), "csrf_token": csrf(check.text)},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert "Waiting for sign-off by Chris Chief" in applicant.get(f"{base}/check").text
    request = mail_to("ceo@essex.gov.uk")[-1]
    assert request.subject == (
        "Please sign off Essex's expression of interest for Whole-place community budgets"
    )
    link = re.search(r"http://[^/\s]+(/sign-off/\d+/eoi)", request.body)
    assert link is not None

    # the certifier signs in, reads it whole and returns it with a reason
    landing = ceo.get(sign_in_path.group(0))
    ceo.post(sign_in_path.group(0), data={"csrf_token": csrf(landing.text)})
    listed = ceo.get("/sign-off")
    assert "Essex: expression of interest" in listed.text
    reading = ceo.get(link.group(1))
    assert "One public service for every family in Essex." in reading.text
    assert "unless the certifier approves it before then, it is not submitted" in reading.text
    blank = ceo.post(
        f"{link.group(1)}/return", data={"reason": "", "csrf_token": csrf(reading.text)}
    )
    assert blank.status_code == 400 and "Say why you are returning it" in blank.text
    returned = ceo.post(
        f"{link.group(1)}/return",
        data={"reason": "Name the health partner in full.", "csrf_token": csrf(reading.text)},
        follow_redirects=False,
    )
    assert returned.status_code == 303
    told = mail_to("pat@essex.gov.uk")[-1]
    assert "was returned by Chris Chief" in told.subject
    assert "Name the health partner in full." in told.body

    # changed and sent again; approved, which submits it
    post(
        applicant,
        f"{base}/section/place",
        {
            "lead_council": "ESS",
            "partners-rows": "2",
            "partners-0-organisation": "Essex Police",
            "partners-0-role": "Community safety",
            "partners-1-organisation": "NHS North East Essex Clinical Commissioning Group",
            "partners-1-role": "Health",
            "ambition": "One public service for every family in Essex.",
            "action": "save",
        },
    )
    applicant.post(
        f"{base}/sign-off",
        data={"certifier": str(chris.id), "csrf_token": csrf(applicant.get(f"{base}/check").text)},
    )
    reading = ceo.get(link.group(1))
    unticked = ceo.post(f"{link.group(1)}/approve", data={"csrf_token": csrf(reading.text)})
    assert unticked.status_code == 400
    approved = ceo.post(
        f"{link.group(1)}/approve",
        data={"declaration": "agreed", "csrf_token": csrf(reading.text)},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    assert "it is submitted" in ceo.get("/sign-off").text
    assert "signed off and submitted" in mail_to("pat@essex.gov.uk")[-1].subject
    assert "Expression of interest submitted" in applicant.get("/applications").text
    with session_scope() as session:
        application = session.exec(
            select(Application).where(Application.reference == f"{ROUND}/ESS")
        ).one()
    assert application.state == "eoi_submitted"

    # nobody else's certifier sees it
    assert ceo.get(f"/sign-off/{application.id + 1}/eoi").status_code == 404
