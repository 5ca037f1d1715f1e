"""The rolling adoption route: while a round's prospectus keeps it open, a council adopts a
published model with a light form, pre-filled with the model's answers; it saves as any draft
(a stale save is refused, 409), submits, and staff approve it (its implementation starts with
the model's milestones moved to its start) or return it with a reason. Outside the route's
window nothing is offered and a forged post is refused; so is a council the models are not
open to."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
import test_sign_in as mail
from conftest import edit, london
from fastapi.testclient import TestClient
from portal import add_user, csrf, section_form, sign_in
from round_walk import PUBLISH_DAY, SOURCE, to_publication
from sqlmodel import col, select

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import (
    Application,
    AuditEvent,
    MilestoneRecord,
    OutboxMessage,
    PublishedModel,
    ReturnRecord,
)
from cbflow.services import adoption_route, offers, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

smtp = mail.smtp  # a real SMTP server on this machine, keeping what it is sent

ROUTE = edit(
    SOURCE,
    (
        "carry_over: [partners, pooled_budget]",
        "carry_over: [partners, pooled_budget]\n    route: open\n"
        "    opens: 2013-04-01\n    closes: 2013-09-30",
    ),
)
ELIGIBLE_ONLY = edit(
    ROUTE,
    ("council_types: [CTY, UA, MD, LBO, CC, NMD]", "council_types: [CTY, UA, MD, LBO, CC]"),
    ("open_to: all ", "open_to: eligible "),
)
APPROVE_DAY = london(2013, 5, 10, 11, 0)
CHANGES = "We will run it across two districts rather than one city, with help from the county."


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(PUBLISH_DAY)


@pytest.fixture
def app(cbflow_env: Settings, clock: FixedClock) -> Any:
    return create_app(cbflow_env, clock=clock)


def person(app: Any, email: str, role: str, council: str | None = None) -> TestClient:
    add_user(email, role, council)
    client = TestClient(app)
    sign_in(client, email)
    return client


def start(client: TestClient, model_id: int) -> Any:
    token = csrf(client.get(f"/models/{model_id}").text)
    return client.post(
        f"/models/{model_id}/route", data={"csrf_token": token}, follow_redirects=False
    )


def hidden(html: str) -> dict[str, str]:
    """The page's hidden version and base, as it would post them."""
    return {
        name: value.replace("&#34;", '"').replace("&quot;", '"')
        for name, value in re.findall(r'name="(_\w+)" value="([^"]*)"', html)
    }


def light_form_data(model_id: int, answers: dict[str, Any], page: str) -> dict[str, Any]:
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        form = adoption_route.light_form(session, model)
    data: dict[str, Any] = {}
    for section in form.sections:
        fields, _ = section_form(section, answers)
        data |= fields
    return {**data, **hidden(page), "csrf_token": csrf(page)}


def the_adoption(council: str) -> Application:
    with session_scope() as session:
        found = session.exec(
            select(Application).where(
                Application.council_code == council, Application.route == "adoption"
            )
        ).one()
        session.expunge(found)
        return found


def mail_to(address: str) -> list[OutboxMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.to == address, ~col(OutboxMessage.subject).contains("Sign"))
                .order_by(col(OutboxMessage.id))
            )
        )


def submitted_adoption(app: Any, model_id: int) -> tuple[TestClient, Application]:
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    assert start(devon, model_id).status_code == 303
    application = the_adoption("DEV")
    page = devon.get(f"/adoptions/{application.id}").text
    answers = dict(application.eoi_answers)
    answers |= {
        "adoption_changes": CHANGES,
        "adoption_readiness": adoption_route.READY[1],
    }
    data = light_form_data(model_id, answers, page) | {"action": "submit"}
    done = devon.post(f"/adoptions/{application.id}", data=data, follow_redirects=False)
    assert done.status_code == 303, done.text
    return devon, the_adoption("DEV")


def test_an_officer_adopts_through_the_route_and_submits_the_light_form(
    app: Any, clock: FixedClock
) -> None:
    model_id = to_publication(ROUTE)
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    model_page = devon.get(f"/models/{model_id}").text
    assert "Adopt through the rolling route" in model_page
    assert "until the end of 30 September 2013" in model_page

    started = start(devon, model_id)

    assert started.status_code == 303
    application = the_adoption("DEV")
    assert started.headers["location"] == f"/adoptions/{application.id}"
    assert application.state == "adoption_draft" and application.route == "adoption"
    assert application.adopted_from_model_id == model_id
    assert application.reference == f"whole-place-2011/DEV/route-{model_id}"
    with session_scope() as session:
        bundle = session.get(PublishedModel, model_id).bundle  # type: ignore[union-attr]
    # the model's answers, pre-filled: the partners (its EOI's) and the pooled budget (its bid's)
    assert application.eoi_answers == bundle["answers"]
    assert application.eoi_changes == {}
    page = devon.get(started.headers["location"])
    assert page.status_code == 200
    assert "Primary care trust" in page.text and "What you will change from the model" in page.text
    # the council's home for the application is the light form
    assert devon.get(f"/applications/{application.id}", follow_redirects=False).headers[
        "location"
    ] == (f"/adoptions/{application.id}")
    listed = devon.get("/applications")
    assert listed.status_code == 200 and "Adoption in progress" in listed.text
    assert devon.get(f"/applications/{application.id}/eoi").status_code < 500

    # submitting without saying what changes: refused, with the question named
    clock.advance(timedelta(minutes=3))
    data = light_form_data(model_id, application.eoi_answers, page.text) | {"action": "submit"}
    refused = devon.post(f"/adoptions/{application.id}", data=data, follow_redirects=False)
    assert refused.status_code == 400
    assert "What you will change from the model: this question must be answered" in refused.text
    assert the_adoption("DEV").state == "adoption_draft"

    # the autosave saves what is typed, answering the page's new version
    clock.advance(timedelta(minutes=2))
    autosaved = devon.post(
        f"/adoptions/{application.id}/autosave",
        data=light_form_data(
            model_id, {**application.eoi_answers, "adoption_changes": CHANGES}, refused.text
        ),
    )
    assert autosaved.status_code == 200, autosaved.text
    assert autosaved.json()["saved"] is True and autosaved.json()["version"] == 1
    assert the_adoption("DEV").eoi_answers["adoption_changes"] == CHANGES

    clock.advance(timedelta(minutes=4))
    page = devon.get(f"/adoptions/{application.id}")
    answers = {
        **application.eoi_answers,
        "adoption_changes": CHANGES,
        "adoption_partners": "Devon and Cornwall Police; the county's NHS trust.",
        "adoption_readiness": adoption_route.READY[1],
    }
    data = light_form_data(model_id, answers, page.text) | {"action": "submit"}
    submitted = devon.post(f"/adoptions/{application.id}", data=data, follow_redirects=False)

    assert submitted.status_code == 303
    application = the_adoption("DEV")
    assert application.state == "adoption_submitted"
    assert application.eoi_submitted_at == PUBLISH_DAY + timedelta(minutes=9)
    assert "Adoption waiting for approval" in devon.get(f"/adoptions/{application.id}").text
    # measured: three answers typed (the model's two came as they were), nine minutes
    with session_scope() as session:
        measure = adoption_route.measure(session, application)
        actions = session.exec(
            select(AuditEvent.action).where(AuditEvent.entity_id == application.id)
        ).all()
    assert measure == adoption_route.Measure(typed=3, questions=6, seconds_to_submit=540)
    assert actions == ["start", "save_adoption", "save_adoption", "transition"]
    # another council's officer cannot see it
    bristol = person(app, "lead@bst.gov.uk", "applicant", "BST")
    assert bristol.get(f"/adoptions/{application.id}").status_code == 404
    # the lineage report shows what it took, beside the model's answers checked as its own
    # light form asks them
    staff = person(app, "officer@dclg.gov.uk", "staff")
    report = staff.get(f"/staff/rounds/whole-place-2011/models/{model_id}/lineage").text
    assert "The rolling route: 3 answers typed; 9.0 minutes from starting to submitting" in report
    assert "All 2 valid" in report


def test_a_stale_save_is_refused_and_keeps_the_colleagues_answer(app: Any) -> None:
    model_id = to_publication(ROUTE)
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    start(devon, model_id)
    colleague = person(app, "second@dev.gov.uk", "applicant", "DEV")
    application = the_adoption("DEV")
    mine = devon.get(f"/adoptions/{application.id}").text
    theirs = colleague.get(f"/adoptions/{application.id}").text
    answers = dict(application.eoi_answers)

    saved = colleague.post(
        f"/adoptions/{application.id}",
        data=light_form_data(model_id, answers | {"adoption_changes": "Theirs."}, theirs),
        follow_redirects=False,
    )
    assert saved.status_code == 303
    stale = devon.post(
        f"/adoptions/{application.id}",
        data=light_form_data(model_id, answers | {"adoption_changes": "Mine."}, mine),
        follow_redirects=False,
    )

    assert stale.status_code == 409
    assert "someone else changed these answers since this page was drawn" in stale.text
    assert "What you will change from the model" in stale.text
    assert the_adoption("DEV").eoi_answers["adoption_changes"] == "Theirs."
    # the stale page's autosave is refused too
    autosave = devon.post(
        f"/adoptions/{application.id}/autosave",
        data=light_form_data(model_id, answers | {"adoption_changes": "Mine."}, mine),
    )
    assert autosave.status_code == 409 and autosave.json()["saved"] is False


def test_staff_approve_an_adoption_and_its_milestones_start_from_the_approval(
    app: Any, clock: FixedClock
) -> None:
    model_id = to_publication(ROUTE)
    devon, application = submitted_adoption(app, model_id)
    clock.set(APPROVE_DAY)
    staff = person(app, "officer@dclg.gov.uk", "staff")
    listing = staff.get("/staff/rounds/whole-place-2011/adoptions")
    assert listing.status_code == 200
    assert "Devon" in listing.text and CHANGES in listing.text
    assert "2 of 6 answers typed" in listing.text
    assert 'href="/staff/rounds/whole-place-2011/adoptions"' in listing.text  # in the nav

    approved = staff.post(
        f"/staff/rounds/whole-place-2011/adoptions/{application.id}/approve",
        data={"csrf_token": csrf(listing.text)},
        follow_redirects=False,
    )

    assert approved.status_code == 303
    application = the_adoption("DEV")
    assert application.state == "implementing"
    assert application.decided_at == APPROVE_DAY
    with session_scope() as session:
        milestones = session.exec(
            select(MilestoneRecord).where(MilestoneRecord.application_id == application.id)
        ).all()
        returns = session.exec(
            select(ReturnRecord)
            .where(ReturnRecord.application_id == application.id)
            .order_by(col(ReturnRecord.period))
        ).all()
    # Birmingham's implementation began on 1 April 2012 and its plan was due on 31 October
    # 2012, 213 days later; Devon's begins on 10 May 2013, so its plan is due 213 days later
    assert [(m.milestone_id, m.due) for m in milestones] == [
        ("operational-plan", date(2013, 5, 10) + (date(2012, 10, 31) - date(2012, 4, 1)))
    ]
    assert milestones[0].due == date(2013, 12, 9)
    # its returns: the round's four quarters, each moved to start from the same day
    assert [(r.period_start, r.period_end) for r in returns][:2] == [
        (date(2013, 5, 10), date(2013, 8, 8)),
        (date(2013, 8, 9), date(2013, 11, 8)),
    ]
    assert len(returns) == 4
    # approved to implement, not awarded the round's money: no grant offer, not one of its
    # places (selection's totals, the board, open data), and no grant offer page
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        assert application.id not in {a.id for a in rounds.places_of(session, round_)}
    assert not offers.has_offer(application)
    sign_in(devon, "lead@dev.gov.uk")  # again: the clock moved on past the session's end
    assert devon.get(f"/applications/{application.id}/offer").status_code == 404
    [mail] = [m for m in mail_to("lead@dev.gov.uk") if "approved" in m.subject]
    assert mail.subject == "Devon's adoption of Birmingham's model is approved"
    assert "9 December 2013" in mail.body and f"/adoptions/{application.id}" in mail.body
    again = staff.post(
        f"/staff/rounds/whole-place-2011/adoptions/{application.id}/approve",
        data={"csrf_token": csrf(listing.text)},
        follow_redirects=False,
    )
    assert again.status_code == 409 and "is not waiting for approval" in again.text


def test_staff_return_an_adoption_with_a_reason_and_bad_input_is_refused(app: Any) -> None:
    model_id = to_publication(ROUTE)
    devon, application = submitted_adoption(app, model_id)
    staff = person(app, "officer@dclg.gov.uk", "staff")
    page = staff.get("/staff/rounds/whole-place-2011/adoptions").text
    action = f"/staff/rounds/whole-place-2011/adoptions/{application.id}/return"

    empty = staff.post(action, data={"csrf_token": csrf(page), "reason": "  "})
    assert empty.status_code == 400 and "Enter the reason you are returning it" in empty.text
    huge = staff.post(action, data={"csrf_token": csrf(page), "reason": "x" * 6000})
    assert 400 <= huge.status_code < 500
    unknown = staff.post(
        "/staff/rounds/whole-place-2011/adoptions/99999/return",
        data={"csrf_token": csrf(page), "reason": "No."},
    )
    assert unknown.status_code == 404
    assert the_adoption("DEV").state == "adoption_submitted"

    returned = staff.post(
        action,
        data={"csrf_token": csrf(page), "reason": "Say which districts."},
        follow_redirects=False,
    )

    assert returned.status_code == 303
    application = the_adoption("DEV")
    assert application.state == "adoption_draft" and application.eoi_submitted_at is None
    [mail] = [m for m in mail_to("lead@dev.gov.uk") if "returned" in m.subject]
    assert "Say which districts." in mail.body
    with session_scope() as session:
        event = session.exec(
            select(AuditEvent)
            .where(AuditEvent.entity_id == application.id, AuditEvent.action == "transition")
            .order_by(col(AuditEvent.id).desc())
        ).first()
    assert event is not None and event.reason == "Say which districts."
    assert event.actor == "officer@dclg.gov.uk"
    # the council changes it and submits it again
    form_page = devon.get(f"/adoptions/{application.id}").text
    answers = application.eoi_answers | {"adoption_changes": CHANGES + " Exeter and Torbay."}
    data = light_form_data(model_id, answers, form_page) | {"action": "submit"}
    assert devon.post(f"/adoptions/{application.id}", data=data).status_code == 200
    assert the_adoption("DEV").state == "adoption_submitted"


def test_the_council_withdraws_its_adoption_before_it_is_approved(app: Any) -> None:
    model_id = to_publication(ROUTE)
    devon, application = submitted_adoption(app, model_id)
    page = devon.get(f"/adoptions/{application.id}").text
    assert "Withdraw this adoption" in page

    withdrawn = devon.post(
        f"/adoptions/{application.id}/withdraw",
        data={"csrf_token": csrf(page), "reason": "Our partners pulled out."},
        follow_redirects=False,
    )

    assert withdrawn.status_code == 303
    assert the_adoption("DEV").state == "withdrawn"
    page = devon.get(f"/adoptions/{application.id}").text
    assert "Withdrawn" in page and "Withdraw this adoption" not in page
    again = devon.post(f"/adoptions/{application.id}/withdraw", data={"csrf_token": csrf(page)})
    assert again.status_code == 409 and "can no longer be withdrawn" in again.text
    staff = person(app, "officer@dclg.gov.uk", "staff")
    listing = staff.get("/staff/rounds/whole-place-2011/adoptions").text
    assert "Withdrawn" in listing and f"/adoptions/{application.id}/approve" not in listing
    with session_scope() as session:
        event = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity_id == application.id, AuditEvent.to_state == "withdrawn"
            )
        ).one()
    assert event.reason == "Our partners pulled out." and event.actor == "lead@dev.gov.uk"


@pytest.mark.parametrize(
    ("when", "why"),
    [
        (london(2013, 3, 31, 23, 59), "has not opened yet"),
        (london(2013, 10, 1, 0, 0), "has closed"),
    ],
)
def test_outside_the_window_nothing_is_offered_and_a_forged_post_is_refused(
    app: Any, clock: FixedClock, when: Any, why: str
) -> None:
    model_id = to_publication(ROUTE)
    clock.set(when)
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    page = devon.get(f"/models/{model_id}").text
    assert "Adopt through the rolling route" not in page
    assert f"/models/{model_id}/route" not in page

    forged = devon.post(f"/models/{model_id}/route", data={"csrf_token": csrf(page)})

    assert forged.status_code == 403
    assert f"the rolling adoption route of Whole-place community budgets {why}" in forged.text
    with session_scope() as session:
        assert session.exec(select(Application).where(Application.route == "adoption")).all() == []


def test_a_round_without_the_route_offers_nothing(app: Any) -> None:
    model_id = to_publication()
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    assert "Adopt through the rolling route" not in devon.get(f"/models/{model_id}").text
    forged = devon.post(
        f"/models/{model_id}/route", data={"csrf_token": csrf(devon.get("/models").text)}
    )
    assert forged.status_code == 403 and "has no rolling adoption route" in forged.text
    staff = person(app, "officer@dclg.gov.uk", "staff")
    overview = staff.get("/staff/rounds/whole-place-2011").text
    assert "/staff/rounds/whole-place-2011/adoptions" not in overview


def test_a_council_the_models_are_not_open_to_is_refused(app: Any) -> None:
    model_id = to_publication(ELIGIBLE_ONLY)
    adur = person(app, "lead@adu.gov.uk", "applicant", "ADU")  # a district: not eligible
    page = adur.get(f"/models/{model_id}").text
    assert "Adopt through the rolling route" not in page

    refused = adur.post(f"/models/{model_id}/route", data={"csrf_token": csrf(page)})

    assert refused.status_code == 403
    assert "Adur (non-metropolitan district) is not eligible to adopt models of" in refused.text
    devon = person(app, "lead@dev.gov.uk", "applicant", "DEV")
    assert start(devon, model_id).status_code == 303
    # the place itself cannot adopt its own model
    birmingham = person(app, "lead@bir.gov.uk", "applicant", "BIR")
    own = birmingham.post(
        f"/models/{model_id}/route", data={"csrf_token": csrf(birmingham.get("/models").text)}
    )
    assert own.status_code == 403 and "cannot adopt its own model" in own.text


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ("route: open", "an open adoption route needs the dates it opens and closes"),
        (
            "route: open\n    opens: 2013-04-01\n    closes: 2013-03-01",
            "the adoption route must close after it opens",
        ),
        ("opens: 2013-04-01", "opens and closes are the adoption route's: set route: open"),
    ],
)
def test_the_route_keys_are_checked_with_clear_errors(keys: str, problem: str) -> None:
    from cbflow.prospectus import ProspectusError, parse

    replication = parse(ROUTE).stages.replication
    assert replication is not None and replication.route_window is not None
    text = edit(
        SOURCE,
        (
            "carry_over: [partners, pooled_budget]",
            f"carry_over: [partners, pooled_budget]\n    {keys}",
        ),
    )
    with pytest.raises(ProspectusError, match=re.escape(problem)):
        parse(text)


def test_the_route_from_start_to_approval_on_every_database(any_db_env: Settings) -> None:
    """The service alone, on SQLite and on PostgreSQL: start, a stale save refused, submit,
    approve with the milestones moved exactly."""
    from cbflow.services.drafts import Base, EditConflict

    model_id = to_publication(ROUTE)
    with session_scope() as session:
        application, created = adoption_route.start(
            session, model_id=model_id, council_code="DEV", actor="a@dev.gov.uk", now=PUBLISH_DAY
        )
        assert created and application.state == "adoption_draft"
        drawn = Base(0, {})
        adoption_route.save(
            session,
            application=application,
            answers={"adoption_changes": "Theirs."},
            questions=["adoption_changes"],
            base=drawn,
            actor="b@dev.gov.uk",
            now=PUBLISH_DAY,
        )
        with pytest.raises(EditConflict):
            adoption_route.save(
                session,
                application=application,
                answers={"adoption_changes": "Mine."},
                questions=["adoption_changes"],
                base=drawn,
                actor="a@dev.gov.uk",
                now=PUBLISH_DAY,
            )
        adoption_route.save(
            session,
            application=application,
            answers={"adoption_readiness": adoption_route.READY[0]},
            questions=["adoption_readiness"],
            base=Base(application.eoi_version, {}),
            actor="a@dev.gov.uk",
            now=PUBLISH_DAY,
        )
        adoption_route.submit(
            session, application=application, actor="a@dev.gov.uk", now=PUBLISH_DAY
        )
        milestones = adoption_route.approve(
            session, application=application, actor="staff", now=APPROVE_DAY
        )
        assert application.state == "implementing"
    assert [m.due for m in milestones] == [date(2013, 12, 9)]
    with session_scope() as session:
        stored = session.exec(select(MilestoneRecord)).all()
        assert [(m.milestone_id, m.due) for m in stored if m.due.year == 2013] == [
            ("operational-plan", date(2013, 12, 9))
        ]
        adopted = session.exec(select(Application).where(Application.route == "adoption")).one()
        assert adopted.eoi_answers["adoption_changes"] == "Theirs."
        assert adopted.decided_at == APPROVE_DAY


def test_the_council_is_mailed_by_smtp_when_staff_approve(
    cbflow_env: Settings, clock: FixedClock, smtp: tuple[mail.Inbox, int]
) -> None:
    inbox, port = smtp
    settings = cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    model_id = to_publication(ROUTE)
    app = create_app(settings, clock=clock)

    def signed_in(email: str, role: str, council: str | None = None) -> TestClient:
        add_user(email, role, council)
        client = TestClient(app)
        mail.ask_for_link(client, email)
        assert mail.follow_link(client, mail.link_in(inbox.messages[-1])).status_code == 303
        return client

    devon = signed_in("lead@dev.gov.uk", "applicant", "DEV")
    start(devon, model_id)
    application = the_adoption("DEV")
    page = devon.get(f"/adoptions/{application.id}").text
    answers = application.eoi_answers | {
        "adoption_changes": CHANGES,
        "adoption_readiness": adoption_route.READY[0],
    }
    data = light_form_data(model_id, answers, page) | {"action": "submit"}
    assert devon.post(f"/adoptions/{application.id}", data=data).status_code == 200
    staff = signed_in("officer@dclg.gov.uk", "staff")
    listing = staff.get("/staff/rounds/whole-place-2011/adoptions").text

    staff.post(
        f"/staff/rounds/whole-place-2011/adoptions/{application.id}/approve",
        data={"csrf_token": csrf(listing)},
    )

    sent = inbox.messages[-1]
    assert sent["To"] == "lead@dev.gov.uk"
    assert sent["Subject"] == "Devon's adoption of Birmingham's model is approved"
    body = sent.get_payload(decode=True)
    assert isinstance(body, bytes) and b"Operational plan agreed: due 1 November 2013" in body
    with session_scope() as session:  # sent by SMTP, not kept in the outbox
        assert not session.exec(
            select(OutboxMessage).where(col(OutboxMessage.subject).contains("approved"))
        ).all()
