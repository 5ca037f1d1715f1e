"""Clarification requests, as the service keeps them: an assessor asks about named answers of a
bid under assessment; the council changes only those, explains, and replies; both versions are
kept and the bid carries the changed answers. Unanswered requests are reminded once and lapse
at their date, by the round's scheduled run (here called directly). On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import round_walk
from conftest import edit
from portal import add_user
from round_walk import ASSESS_DAY, BID_ANSWERS, SLUG, SOURCE
from sqlmodel import col, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.errors import ValidationFailed
from cbflow.models import Application, AuditEvent, Clarification, OutboxMessage, User
from cbflow.services import clarifications
from cbflow.services.clarifications import ClarificationRefused, StaleReply
from cbflow.settings import Settings

ANSWER_BY = ASSESS_DAY + timedelta(days=3)


def _people(application_id: int) -> tuple[User, User]:
    """The application's first assessor and an assessor of none."""
    with session_scope() as session:
        email = round_walk.assessors_of(application_id)[0]
        mine = session.exec(select(User).where(User.email == email)).one()
    stranger = add_user("stranger@assessors.example", "assessor", name="Sam Stranger")
    return mine, stranger


def _ask(application_id: int, asker: User, **changes: object) -> int:
    given: dict[str, object] = {
        "question_ids": ["support_requested_gbp"],
        "question": "Your request is higher than the pooled budget suggests: please confirm it.",
        "answer_by": ANSWER_BY,
        "now": ASSESS_DAY,
    } | changes
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        clarification = clarifications.ask(
            session,
            application=application,
            asker=asker,
            **given,  # type: ignore[arg-type]
        )
        assert clarification.id is not None
        return clarification.id


def _get(clarification_id: int) -> Clarification:
    with session_scope() as session:
        found = session.get(Clarification, clarification_id)
        assert found is not None
        return found


def _bid(application_id: int) -> dict[str, object]:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return dict(application.bid_answers)


def test_a_clarification_changes_only_the_named_answers_and_keeps_both(
    any_db_env: Settings,
) -> None:
    ids = round_walk.to_assessment(assessors=3)
    birmingham = ids["BIR"]
    add_user("bids@birmingham.example", "applicant", council="BIR")
    assessor, stranger = _people(birmingham)
    before = _bid(birmingham)

    # only an assessor of the application (or staff) may ask, and only about its bid's questions
    with pytest.raises(ClarificationRefused):
        _ask(birmingham, stranger)
    with pytest.raises(ValidationFailed) as refused:
        _ask(birmingham, assessor, question_ids=["no_such_question"], question="x" * 2001)
    assert set(refused.value.errors) == {"questions", "question"}
    with pytest.raises(ValidationFailed) as late:
        _ask(birmingham, assessor, answer_by=ASSESS_DAY - timedelta(hours=1))
    assert set(late.value.errors) == {"answer_by"}

    asked = _ask(birmingham, assessor)
    request = _get(asked)
    assert request.state == "open"
    assert request.original == {"support_requested_gbp": "1500000.00"}
    with session_scope() as session:
        application = session.get(Application, birmingham)
        assert application is not None
        assert [c.id for c in clarifications.pending_of(session, application)] == [asked]
        # the council's officers hear of it (the pages mail each step so)
        request = session.get(Clarification, asked)
        assert request is not None
        clarifications.tell(session, any_db_env, request, "asked", now=ASSESS_DAY)
    with session_scope() as session:
        mail = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "bids@birmingham.example")
        ).all()
        assert [m.subject for m in mail] == [
            "Clarification requested: Birmingham's application to Whole-place community budgets"
        ]
        assert "/clarifications/" in mail[0].body

    officer = "bids@birmingham.example"
    now = ASSESS_DAY + timedelta(hours=2)
    with session_scope() as session:
        request = session.get(Clarification, asked)
        assert request is not None
        # another answer cannot be changed through it
        with pytest.raises(ValidationFailed):
            clarifications.save_draft(
                session,
                clarification=request,
                answers={"pooled_budget": []},
                explanation="",
                version=request.version,
                actor=officer,
                now=now,
            )
        clarifications.save_draft(
            session,
            clarification=request,
            answers={"support_requested_gbp": "1200000"},
            explanation="We",
            version=0,
            actor=officer,
            now=now,
        )
    # a save from the page as it was before that one is refused, and changes nothing
    with session_scope() as session:
        request = session.get(Clarification, asked)
        assert request is not None
        with pytest.raises(StaleReply):
            clarifications.save_draft(
                session,
                clarification=request,
                answers={"support_requested_gbp": "1"},
                explanation="Stale",
                version=0,
                actor=officer,
                now=now,
            )
    assert _get(asked).draft == {"support_requested_gbp": "1200000.00"}
    assert _bid(birmingham) == before  # a draft changes nothing of the bid

    with session_scope() as session:
        request = session.get(Clarification, asked)
        assert request is not None
        with pytest.raises(ValidationFailed) as unexplained:
            clarifications.reply(
                session,
                clarification=request,
                answers={"support_requested_gbp": "1200000"},
                explanation=" ",
                version=request.version,
                actor=officer,
                now=now,
            )
        assert set(unexplained.value.errors) == {"explanation"}
        clarifications.reply(
            session,
            clarification=request,
            answers={"support_requested_gbp": "1200000"},
            explanation="We left out the police authority's second year: the request falls.",
            version=request.version,
            actor=officer,
            now=now,
        )
    answered = _get(asked)
    assert answered.state == "answered"
    assert answered.original == {"support_requested_gbp": "1500000.00"}
    assert answered.changed == {"support_requested_gbp": "1200000.00"}
    after = _bid(birmingham)
    assert after["support_requested_gbp"] == "1200000.00"
    assert after["pooled_budget"] == before["pooled_budget"]  # the other answer as it was
    assert {k for k in after if after[k] != before[k]} == {"support_requested_gbp"}
    with session_scope() as session:
        application = session.get(Application, birmingham)
        assert application is not None
        assert application.support_requested_pence == 120_000_000
        actions = [
            e.action
            for e in session.exec(
                select(AuditEvent)
                .where(AuditEvent.entity == "application", AuditEvent.entity_id == birmingham)
                .order_by(col(AuditEvent.id))
            )
            if e.action.startswith("clarification")
        ]
        assert actions == [
            "clarification_requested",
            "clarification_draft_saved",
            "clarification_answered",
        ]
        # answered: it can no longer change
        request = session.get(Clarification, asked)
        assert request is not None
        with pytest.raises(ClarificationRefused):
            clarifications.reply(
                session,
                clarification=request,
                answers={"support_requested_gbp": "1"},
                explanation="Again",
                version=request.version,
                actor=officer,
                now=now,
            )
    assert BID_ANSWERS["support_requested_gbp"] == "1500000.00"


def test_an_unanswered_request_is_reminded_once_then_lapses_at_its_date(
    any_db_env: Settings,
) -> None:
    ids = round_walk.to_assessment(assessors=3)
    add_user("bids@bolton.example", "applicant", council="BOL")
    assessor, _ = _people(ids["BOL"])
    asked = _ask(ids["BOL"], assessor)
    reminder = ANSWER_BY - clarifications.REMIND_BEFORE

    def run(at_hours_before: float) -> dict[str, int]:
        return stages.clarifications_due(
            SLUG, now=ANSWER_BY - timedelta(hours=at_hours_before)
        ).counts

    assert run(30) == {"reminded": 0, "lapsed": 0}
    assert run(24) == {"reminded": 1, "lapsed": 0, "e-mailed": 1}
    assert run(20) == {"reminded": 0, "lapsed": 0}  # once only
    assert _get(asked).reminded_at == reminder
    assert run(0) == {"reminded": 0, "lapsed": 1, "e-mailed": 1}
    assert run(-1) == {"reminded": 0, "lapsed": 0}
    lapsed = _get(asked)
    assert lapsed.state == "lapsed" and lapsed.lapsed_at == ANSWER_BY
    with session_scope() as session:
        subjects = [
            m.subject
            for m in session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.to == "bids@bolton.example")
                .order_by(col(OutboxMessage.id))
            )
        ]
        assert [s.split(":")[0] for s in subjects] == [
            "Reminder",
            "Clarification request lapsed",
        ]
        request = session.get(Clarification, asked)
        assert request is not None
        with pytest.raises(ClarificationRefused):
            clarifications.reply(
                session,
                clarification=request,
                answers={"support_requested_gbp": "1"},
                explanation="Too late",
                version=request.version,
                actor="bids@bolton.example",
                now=ANSWER_BY + timedelta(hours=1),
            )


def test_where_the_prospectus_asks_the_certifier_signs_off_the_reply(
    cbflow_env: Settings,
) -> None:
    source = edit(
        SOURCE,
        ("capacity:\n", "sign_off: {role: Chief executive, stages: [clarification]}\ncapacity:\n"),
    )
    ids = round_walk.to_assessment(source, assessors=3)
    assessor, _ = _people(ids["BRD"])
    ceo = add_user("ceo@bradford.example", "certifier", council="BRD")
    asked = _ask(ids["BRD"], assessor)
    now = ASSESS_DAY + timedelta(hours=1)
    reply = {
        "answers": {"support_requested_gbp": "900000"},
        "explanation": "Halved the second year.",
        "actor": "bids@bradford.example",
        "now": now,
    }
    with session_scope() as session:
        request = session.get(Clarification, asked)
        assert request is not None
        with pytest.raises(ValidationFailed) as unnamed:
            clarifications.reply(session, clarification=request, version=0, **reply)  # type: ignore[arg-type]
        assert set(unnamed.value.errors) == {"certifier"}
    with session_scope() as session:
        request = session.get(Clarification, asked)
        assert request is not None
        clarifications.reply(
            session,
            clarification=request,
            version=0,
            certifier_id=ceo.id,
            **reply,  # type: ignore[arg-type]
        )
    assert _get(asked).state == "awaiting_sign_off"
    assert _bid(ids["BRD"])["support_requested_gbp"] == "1500000.00"  # not yet
    with session_scope() as session:
        request = session.get(Clarification, asked)
        certifier = session.get(User, ceo.id)
        assert request is not None and certifier is not None
        clarifications.approve(session, clarification=request, certifier=certifier, now=now)
    assert _get(asked).state == "answered"
    assert _bid(ids["BRD"])["support_requested_gbp"] == "900000.00"
