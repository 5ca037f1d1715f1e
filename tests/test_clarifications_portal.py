"""Clarification requests through the portal's pages: an assessor asks from the scoring page,
the council answers beside the named answers (only those), a stale save is refused, another
council finds nothing, input past its bounds is refused with a clear message, every post needs
its CSRF token; the assessor then reads both versions side by side. Staff ask too, and with no
Prefect server the request still stands and the page says its reminder was not scheduled."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import edit
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from round_walk import ASSESS_DAY, SLUG, SOURCE, assessors_of, to_assessment
from sqlmodel import col, select
from test_portal_forms import csrf

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, Clarification, OutboxMessage
from cbflow.settings import Settings
from cbflow.web import create_app

ASK = {
    "questions": "support_requested_gbp",
    "question": "Your request is higher than the pooled budget suggests: please confirm it.",
    "answer_by-day": "15",
    "answer_by-month": "12",
    "answer_by-year": "2011",
}


@pytest.fixture
def world(cbflow_env: Settings) -> dict[str, Any]:
    ids = to_assessment(assessors=3)
    add_user("bids@birmingham.example", "applicant", council="BIR")
    add_user("bids@bolton.example", "applicant", council="BOL")
    add_user("lead@staff.example", "staff")
    clock = FixedClock(ASSESS_DAY)
    return {"ids": ids, "clock": clock, "app": create_app(cbflow_env, clock=clock)}


def signed_in(world: dict[str, Any], email: str) -> TestClient:
    client = TestClient(world["app"])
    sign_in(client, email)
    return client


def post(client: TestClient, path: str, data: dict[str, Any], form: str | None = None) -> Any:
    token = csrf(client.get(form or path).text)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)


def requests_of(application_id: int) -> list[Clarification]:
    with session_scope() as session:
        return list(
            session.exec(
                select(Clarification)
                .where(Clarification.application_id == application_id)
                .order_by(col(Clarification.id))
            )
        )


def test_an_assessor_asks_the_council_answers_and_the_assessor_sees_both(
    world: dict[str, Any],
) -> None:
    birmingham = world["ids"]["BIR"]
    assessor = signed_in(world, assessors_of(birmingham)[0])
    scoring = assessor.get(f"/assess/{birmingham}")
    assert "Ask the council for clarification" in scoring.text
    clarify = f"/assess/{birmingham}/clarify"

    # nothing chosen, no question, no date: every error at its field, nothing asked
    refused = post(assessor, clarify, {"question": " "})
    assert refused.status_code == 400
    for said in (
        "Select the questions you are asking about",
        "Enter your question for the council",
        "Enter the date the council must answer by",
    ):
        assert said in refused.text
    # past its bound: refused at once, with what to do
    long = post(assessor, clarify, ASK | {"question": "x" * 2001})
    assert long.status_code == 400
    assert "Your question must be 2,000 characters or fewer" in long.text
    # a question that is not the form's
    other = post(assessor, clarify, ASK | {"questions": "nonsense"})
    assert other.status_code == 400 and "Select questions of the council" in other.text
    # without its CSRF token
    bare = assessor.post(clarify, data=ASK, follow_redirects=False)
    assert bare.status_code == 403
    assert requests_of(birmingham) == []

    asked = post(assessor, clarify, ASK)
    assert asked.status_code == 303
    page = assessor.get(asked.headers["location"])
    # no Prefect server in this test: the request stands, and the page says what was not done
    assert "its reminder and its lapse could not be scheduled" in page.text
    assert "Clarification requested: the council has not answered yet" in page.text
    (request,) = requests_of(birmingham)
    assert request.question_ids == ["support_requested_gbp"]
    with session_scope() as session:
        mail = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "bids@birmingham.example")
        ).one()
    link = f"/applications/{birmingham}/clarifications/{request.id}"
    assert link in mail.body

    # the council: its task list says so, its page shows the question beside the answer
    council = signed_in(world, "bids@birmingham.example")
    tasks = council.get(f"/applications/{birmingham}/bid")
    assert "Clarification requested" in tasks.text and link in tasks.text
    listed = council.get("/applications")
    assert "Clarification requested: answer it" in listed.text and link in listed.text
    reply = council.get(link)
    assert ASK["question"] in reply.text
    assert "Your answer as submitted" in reply.text
    assert 'name="support_requested_gbp"' in reply.text
    assert 'name="pooled_budget' not in reply.text  # only the answers asked about

    # another council finds nothing there
    bolton = signed_in(world, "bids@bolton.example")
    assert bolton.get(link).status_code == 404
    assert post(bolton, link, {"action": "save"}, form="/applications").status_code == 404

    version = re.search(r'name="version" value="(\d+)"', reply.text)
    assert version is not None
    saved = post(
        council,
        link,
        {
            "support_requested_gbp": "1,200,000",
            "explanation": "We",
            "version": version.group(1),
            "action": "save",
        },
    )
    assert saved.status_code == 303
    # a save from the page as it was before: refused, with what to do, and nothing changes
    stale = post(
        council,
        link,
        {"support_requested_gbp": "1", "version": version.group(1), "action": "save"},
    )
    assert stale.status_code == 409
    assert "Someone else saved this reply since you opened it" in stale.text
    assert requests_of(birmingham)[0].draft == {"support_requested_gbp": "1200000.00"}
    # an explanation past its bound
    page = council.get(link)
    now_version = re.search(r'name="version" value="(\d+)"', page.text)
    assert now_version is not None
    too_long = post(
        council,
        link,
        {"explanation": "x" * 5001, "version": now_version.group(1), "action": "submit"},
    )
    assert too_long.status_code == 400
    assert "5,000 characters or fewer" in too_long.text

    sent = post(
        council,
        link,
        {
            "support_requested_gbp": "1200000",
            "explanation": "We left out the second year of the police authority's budget.",
            "version": now_version.group(1),
            "action": "submit",
        },
    )
    assert sent.status_code == 303
    done = council.get(link)
    assert "Your reply has been sent" in done.text
    assert 'name="support_requested_gbp"' not in done.text  # answered: no longer changes
    assert assessors_of(birmingham)[0] not in done.text  # nor which assessor asked
    with session_scope() as session:
        application = session.get(Application, birmingham)
        assert application is not None
        assert application.bid_answers["support_requested_gbp"] == "1200000.00"
        asker = session.exec(
            select(OutboxMessage).where(OutboxMessage.subject.startswith("Birmingham has answered"))  # type: ignore[attr-defined]
        ).one()
        assert asker.to == assessors_of(birmingham)[0]
        assert f"/assess/{birmingham}" in asker.body
        actions = {
            e.action
            for e in session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application", AuditEvent.entity_id == birmingham
                )
            )
        }
        assert {"clarification_requested", "clarification_answered"} <= actions

    # the assessor: both versions side by side, with the explanation; now they may score
    scoring = assessor.get(f"/assess/{birmingham}")
    assert "The answers as submitted and as changed" in scoring.text
    assert "£1,500,000.00" in scoring.text and "£1,200,000.00" in scoring.text
    assert "We left out the second year" in scoring.text
    assert "the council has not answered yet" not in scoring.text


def test_scores_wait_for_an_open_request(world: dict[str, Any]) -> None:
    bolton = world["ids"]["BOL"]
    assessor = signed_in(world, assessors_of(bolton)[0])
    assert post(assessor, f"/assess/{bolton}/clarify", ASK).status_code == 303
    scores = {f"score-{c}": "3" for c in ("ambition", "partnership", "replicability")}
    scores |= {f"justification-{c}": "Fine." for c in ("ambition", "partnership", "replicability")}
    held = post(assessor, f"/assess/{bolton}", scores | {"action": "submit"})
    assert held.status_code == 409
    assert "has not yet answered the clarification requested" in held.text


def test_staff_ask_from_the_application_page_and_see_the_requests_there(
    world: dict[str, Any],
) -> None:
    bradford = world["ids"]["BRD"]
    staff = signed_in(world, "lead@staff.example")
    page = f"/staff/rounds/{SLUG}/applications/{bradford}"
    assert "Ask the council for clarification" in staff.get(page).text
    asked = post(staff, f"{page}/clarify", ASK | {"question": "Which year is the second?"})
    assert asked.status_code == 303 and asked.headers["location"] == page
    shown = staff.get(page)
    assert "Which year is the second?" in shown.text
    assert "Clarification requested" in shown.text
    assert "could not be scheduled" in shown.text
    # a date in the past is refused
    late = post(staff, f"{page}/clarify", ASK | {"answer_by-year": "2010"})
    assert late.status_code == 400
    assert "The date to answer by must be in the future" in late.text
    assert len(requests_of(bradford)) == 1


def test_where_the_prospectus_asks_the_certifier_approves_the_reply(cbflow_env: Settings) -> None:
    source = edit(
        SOURCE,
        ("capacity:\n", "sign_off: {role: Chief executive, stages: [clarification]}\ncapacity:\n"),
    )
    ids = to_assessment(source, assessors=3)
    birmingham = ids["BIR"]
    add_user("bids@birmingham.example", "applicant", council="BIR")
    ceo = add_user("ceo@birmingham.example", "certifier", council="BIR", name="Chris Chief")
    add_user("ceo@bolton.example", "certifier", council="BOL")
    world = {"app": create_app(cbflow_env, clock=FixedClock(ASSESS_DAY))}
    assessor = signed_in(world, assessors_of(birmingham)[0])
    assert post(assessor, f"/assess/{birmingham}/clarify", ASK).status_code == 303
    (request,) = requests_of(birmingham)
    link = f"/applications/{birmingham}/clarifications/{request.id}"
    council = signed_in(world, "bids@birmingham.example")
    page = council.get(link)
    assert "Send for sign-off" in page.text and "Chris Chief" in page.text
    answer = {
        "support_requested_gbp": "1200000",
        "explanation": "The second year was counted twice.",
        "version": "0",
        "action": "submit",
    }
    unnamed = post(council, link, answer)
    assert unnamed.status_code == 400 and "Choose your council’s certifier" in unnamed.text
    assert post(council, link, answer | {"certifier": str(ceo.id)}).status_code == 303
    assert requests_of(birmingham)[0].state == "awaiting_sign_off"
    with session_scope() as session:
        mail = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "ceo@birmingham.example")
        ).one()
    sign_off = f"/sign-off/clarifications/{request.id}/reply"
    assert sign_off in mail.body
    # another council's certifier finds nothing
    other = signed_in(world, "ceo@bolton.example")
    assert other.get(sign_off).status_code == 404
    certifier = signed_in(world, "ceo@birmingham.example")
    assert sign_off in certifier.get("/sign-off/clarifications").text
    assert sign_off not in other.get("/sign-off/clarifications").text
    shown = certifier.get(sign_off)
    assert "The second year was counted twice." in shown.text
    assert "£1,200,000.00" in shown.text
    approve = f"/sign-off/clarifications/{request.id}/approve-reply"
    assert post(certifier, approve, {}, form=sign_off).status_code == 400
    assert post(certifier, approve, {"declaration": "agreed"}, form=sign_off).status_code == 303
    assert requests_of(birmingham)[0].state == "answered"
    with session_scope() as session:
        application = session.get(Application, birmingham)
        assert application is not None
        assert application.bid_answers["support_requested_gbp"] == "1200000.00"
