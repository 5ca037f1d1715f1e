"""Reopening a submitted form before the deadline, where the prospectus allows it: the council
changes it and submits it again, as version 2, which replaces version 1 and has a receipt of its
own; a form reopened and not submitted again by the deadline is not a submission. Refused after
the deadline, where the prospectus does not allow it, to another council, and once sifted. On
SQLite and PostgreSQL for the rules, through the portal's pages for the journey."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import edit, example_text, london
from fastapi.testclient import TestClient
from portal import add_user
from portal import sign_in as sign_in_existing
from round_walk import BID_ANSWERS, BID_CLOSE, BID_DAY, EOI_CLOSE, EOI_DAY, INVITE_DAY, SLUG
from round_walk import eoi_answers as walk_eoi_answers
from sqlmodel import col, select
from test_letters import one_line, pdftotext
from test_portal_forms import AFTER_EOI, DURING_EOI, csrf, fill_example, sign_in, start, submit

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.errors import CbflowError, DeadlinePassed, NotFound
from cbflow.lifecycle import AppState
from cbflow.models import Application, AuditEvent, Document, OutboxMessage, Submission, User
from cbflow.services import applications, deadlines, reopening, rounds, sift, signoff
from cbflow.services.applications import Stage
from cbflow.settings import Settings
from cbflow.web import create_app

REOPENING = ("capacity:\n", "reopening: {stages: [eoi, bid]}\ncapacity:\n")
COUNCILS = ("BIR", "BOL", "BRD")


def officer(council: str) -> str:
    return f"officer@{council.lower()}.gov.uk"


def launch(source: str) -> None:
    with session_scope() as session:
        rounds.launch_round(
            session, source=source, path="round.yaml", actor="staff:test", now=london(2011, 10, 17)
        )


def eoi_in(council: str, at_minutes: int = 0) -> int:
    """The council's EOI submitted by its officer on EOI_DAY; returns the application's id."""
    add_user(officer(council), "applicant", council=council)
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code=council,
            actor=officer(council),
            now=EOI_DAY,
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=walk_eoi_answers(council, "Join up services around families."),
            actor=officer(council),
            now=EOI_DAY + timedelta(minutes=at_minutes),
        )
        assert application.id is not None
        return application.id


def invited(source: str = edit(example_text(), REOPENING)) -> dict[str, int]:
    """Launch, take the three councils' EOIs, sift them and invite all three to bid."""
    launch(source)
    ids = {council: eoi_in(council, n) for n, council in enumerate(COUNCILS)}
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.close_eoi(session, round_=round_, actor="staff:test", now=EOI_CLOSE)
        chosen = [session.get(Application, i) for i in ids.values()]
        sift.confirm_shortlist(
            session,
            round_=round_,
            chosen=[a for a in chosen if a is not None],
            actor="staff:test",
            now=INVITE_DAY,
        )
    return ids


def submit_bid(
    application_id: int, council: str, at: datetime, answers: dict[str, Any] | None = None
) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        applications.submit(
            session,
            application=application,
            stage="bid",
            answers=answers or BID_ANSWERS,
            actor=officer(council),
            now=at,
        )


def reopen(application_id: int, stage: Stage, actor: str, at: datetime) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        reopening.reopen(session, application, stage, actor, at)


def application(application_id: int) -> Application:
    with session_scope() as session:
        found = session.get(Application, application_id)
        assert found is not None
        session.expunge(found)
        return found


def versions(application_id: int, stage: str) -> list[Submission]:
    with session_scope() as session:
        found = list(
            session.exec(
                select(Submission)
                .where(Submission.application_id == application_id, Submission.stage == stage)
                .order_by(col(Submission.version))
            )
        )
        for submission in found:
            session.expunge(submission)
        return found


def close_bids() -> int:
    with session_scope() as session:
        return sift.close_bids(
            session, round_=rounds.get_round(session, SLUG), actor="staff:test", now=BID_CLOSE
        )


def test_a_reopened_bid_not_submitted_again_by_the_deadline_is_not_a_submission(
    any_db_env: Settings,
) -> None:
    ids = invited()
    for n, council in enumerate(COUNCILS):
        submit_bid(ids[council], council, BID_DAY + timedelta(minutes=n))
    assert [v.version for v in versions(ids["BIR"], "bid")] == [1]

    # Birmingham reopens its bid and never submits it again
    reopen(ids["BIR"], "bid", officer("BIR"), BID_DAY + timedelta(hours=1))
    birmingham = application(ids["BIR"])
    assert birmingham.state == AppState.BID_DRAFT
    assert birmingham.bid_submitted_at is None
    assert birmingham.bid_answers["support_requested_gbp"] == "1500000.00"  # kept to change
    [kept] = versions(ids["BIR"], "bid")
    assert kept.reopened_at == BID_DAY + timedelta(hours=1)
    assert kept.reopened_by == officer("BIR")

    # Bolton reopens its bid, changes it and submits it again before the deadline
    reopen(ids["BOL"], "bid", officer("BOL"), BID_DAY + timedelta(hours=1))
    changed = BID_ANSWERS | {"support_requested_gbp": "1200000.00"}
    submit_bid(ids["BOL"], "BOL", BID_DAY + timedelta(hours=2), changed)

    assert close_bids() == 2  # Bolton's version 2 and Bradford's version 1
    birmingham = application(ids["BIR"])
    assert birmingham.state == AppState.UNSUCCESSFUL
    assert birmingham.decision_reason == (
        "The bid was reopened at 10:00 on 1 December 2011 and not submitted again by the "
        "deadline, the end of 9 December 2011, so no bid was received."
    )
    bolton = application(ids["BOL"])
    assert bolton.state == AppState.BID_SUBMITTED
    assert bolton.support_requested_pence == 120_000_000
    first, second = versions(ids["BOL"], "bid")
    assert (first.version, second.version) == (1, 2)
    assert first.reopened_at is not None and second.reopened_at is None
    assert first.answers["support_requested_gbp"] == "1500000.00"
    assert second.answers["support_requested_gbp"] == "1200000.00"
    assert second.submitted_by == officer("BOL") and second.prospectus_version == 1
    assert application(ids["BRD"]).state == AppState.BID_SUBMITTED
    with session_scope() as session:
        reasons = session.exec(
            select(AuditEvent.reason).where(
                AuditEvent.entity_id == ids["BIR"], AuditEvent.to_state == AppState.BID_DRAFT
            )
        ).all()
    assert any("bid version 1 reopened to change it" in r for r in reasons)


def test_reopening_is_refused_after_the_deadline_where_not_allowed_and_to_other_councils(
    any_db_env: Settings,
) -> None:
    launch(edit(example_text(), ("capacity:\n", "reopening: {stages: [bid]}\ncapacity:\n")))
    birmingham = eoi_in("BIR")
    add_user(officer("BOL"), "applicant", council="BOL")
    with pytest.raises(CbflowError, match="does not allow a submitted expression of interest"):
        reopen(birmingham, "eoi", officer("BIR"), EOI_DAY + timedelta(hours=1))
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.close_eoi(session, round_=round_, actor="staff:test", now=EOI_CLOSE)
        chosen = session.get(Application, birmingham)
        assert chosen is not None
        sift.confirm_shortlist(
            session, round_=round_, chosen=[chosen], actor="staff:test", now=INVITE_DAY
        )
    submit_bid(birmingham, "BIR", BID_DAY)
    before = application(birmingham)
    # another council's officer: as if there were no such application
    with pytest.raises(NotFound):
        reopen(birmingham, "bid", officer("BOL"), BID_DAY + timedelta(hours=1))
    # at the deadline itself it is too late
    with pytest.raises(DeadlinePassed, match="the deadline has passed: it was the end of 9"):
        reopen(birmingham, "bid", officer("BIR"), BID_CLOSE)
    close_bids()
    # a reopening that was asked a moment before the deadline but reached the database after
    # the close run (it waited for the close's lock on the round): the stage is closed
    with pytest.raises(DeadlinePassed):
        reopen(birmingham, "bid", officer("BIR"), BID_CLOSE - timedelta(seconds=1))
    assert application(birmingham).state == before.state == AppState.BID_SUBMITTED
    assert versions(birmingham, "bid")[0].reopened_at is None


def test_a_sifted_eoi_is_not_reopened_even_with_time_left_on_its_own_extension(
    any_db_env: Settings,
) -> None:
    launch(edit(example_text(), REOPENING))
    add_user(officer("BIR"), "applicant", council="BIR")
    with session_scope() as session:
        found, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code="BIR",
            actor=officer("BIR"),
            now=EOI_DAY,
        )
        deadlines.extend_application(
            session,
            application=found,
            stage="eoi",
            closes=EOI_CLOSE + timedelta(days=2),
            reason="Flooding closed the council offices",
            actor="staff:test",
            now=EOI_DAY,
        )
        applications.submit(
            session,
            application=found,
            stage="eoi",
            answers=walk_eoi_answers("BIR", "Join up services around families."),
            actor=officer("BIR"),
            now=EOI_DAY,
        )
        assert found.id is not None
        birmingham = found.id
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.close_eoi(session, round_=round_, actor="staff:test", now=EOI_CLOSE)
    assert application(birmingham).state == AppState.SIFT_PASS
    with pytest.raises(CbflowError, match="can no longer be reopened: it is already being"):
        reopen(birmingham, "eoi", officer("BIR"), EOI_CLOSE + timedelta(hours=1))
    assert application(birmingham).state == AppState.SIFT_PASS
    assert versions(birmingham, "eoi")[0].reopened_at is None


def test_a_certifiers_approval_makes_each_version_and_the_prospectus_version_is_kept(
    cbflow_env: Settings,
) -> None:
    """The certifier's approval submits, so it keeps the version as a submission does; the
    round's prospectus version in force is kept with the application, each version and each
    document issued."""
    launch(
        edit(
            example_text(),
            (
                "capacity:\n",
                "sign_off: {role: Chief executive, stages: [eoi]}\n"
                "reopening: {stages: [eoi]}\ncapacity:\n",
            ),
        )
    )
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        round_.prospectus_version = 3  # as if amended twice since launch
        session.add(round_)
    add_user(officer("BIR"), "applicant", council="BIR")
    ceo = add_user("ceo@birmingham.gov.uk", "certifier", council="BIR")
    with session_scope() as session:
        found, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code="BIR",
            actor=officer("BIR"),
            now=EOI_DAY,
            answers=walk_eoi_answers("BIR", "Join up services around families."),
        )
        assert found.id is not None and found.prospectus_version == 3
        birmingham = found.id

    def signed_off(hours: int) -> None:
        with session_scope() as session:
            found = session.get(Application, birmingham)
            person = session.get(User, ceo.id)
            assert found is not None and person is not None
            signoff.send(
                session,
                application=found,
                stage="eoi",
                certifier_id=ceo.id,
                actor=officer("BIR"),
                now=EOI_DAY + timedelta(hours=hours),
            )
            signoff.approve(
                session,
                application=found,
                stage="eoi",
                certifier=person,
                now=EOI_DAY + timedelta(hours=hours, minutes=30),
            )

    signed_off(1)
    reopen(birmingham, "eoi", officer("BIR"), EOI_DAY + timedelta(hours=2))
    assert application(birmingham).state == AppState.EOI_DRAFT
    signed_off(3)
    assert application(birmingham).state == AppState.EOI_SUBMITTED
    first, second = versions(birmingham, "eoi")
    assert [(v.version, v.submitted_by, v.prospectus_version) for v in (first, second)] == [
        (1, "ceo@birmingham.gov.uk", 3),
        (2, "ceo@birmingham.gov.uk", 3),
    ]
    assert first.reopened_by == officer("BIR")
    stages.issue_receipts(SLUG, now=EOI_DAY + timedelta(hours=4))
    with session_scope() as session:
        issued = session.exec(
            select(Document.key, Document.prospectus_version).where(
                Document.application_id == birmingham
            )
        ).all()
    assert sorted(issued) == [(f"{SLUG}/BIR/eoi_receipt/v2", 3)]


def receipt_text(settings: Settings, key: str) -> str:
    with session_scope() as session:
        document = session.exec(select(Document).where(Document.key == key)).one()
        path = Path(document.path)
    return one_line(pdftotext(path if path.is_absolute() else settings.documents_dir / path))


def test_version_2_has_a_receipt_of_its_own_saying_what_it_replaces_and_that_it_was_on_time(
    cbflow_env: Settings,
) -> None:
    ids = invited()
    submit_bid(ids["BOL"], "BOL", BID_DAY)
    stages.issue_receipts(SLUG, now=BID_DAY + timedelta(minutes=5))
    reference = application(ids["BOL"]).reference
    first = receipt_text(cbflow_env, f"{reference}/bid_receipt")  # the key receipts always had
    assert (
        "Received at 09:00 on 1 December 2011, on time: the deadline is the end of 9 December "
        "2011" in first
    )
    assert "replaces" not in first

    reopen(ids["BOL"], "bid", officer("BOL"), BID_DAY + timedelta(hours=1))
    changed = BID_ANSWERS | {"support_requested_gbp": "1200000.00"}
    submit_bid(ids["BOL"], "BOL", BID_DAY + timedelta(hours=2), changed)
    # Birmingham has more time of its own, and submits after everyone else's deadline
    with session_scope() as session:
        found = session.get(Application, ids["BIR"])
        assert found is not None
        deadlines.extend_application(
            session,
            application=found,
            stage="bid",
            closes=london(2011, 12, 12, 12, 0),
            reason="Flooding closed the council offices",
            actor="staff:test",
            now=BID_DAY,
        )
    submit_bid(ids["BIR"], "BIR", london(2011, 12, 11, 10, 0))
    stages.issue_receipts(SLUG, now=london(2011, 12, 11, 10, 5))

    second = receipt_text(cbflow_env, f"{reference}/bid_receipt/v2")
    assert "Bid received: version 2" in second
    assert "Version 2, replaces version 1 submitted at 09:00 on 1 December 2011" in second
    assert "1,200,000" in second and "1,500,000" not in second
    extended = receipt_text(cbflow_env, f"{application(ids['BIR']).reference}/bid_receipt")
    assert (
        "Received at 10:00 on 11 December 2011, on time, within the extension to 12:00 on 12 "
        "December 2011 given to your council" in extended
    )
    with session_scope() as session:
        titles = session.exec(
            select(Document.title).where(
                Document.application_id == ids["BOL"], Document.kind == "bid_receipt"
            )
        ).all()
        mail = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.to == officer("BOL"))
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert sorted(titles) == ["Full bid: receipt", "Full bid: receipt, version 2"]
    assert mail is not None
    assert mail.subject == f"Bid received: {reference} (version 2)"
    body = one_line(mail.body)
    assert "This is version 2. It replaces version 1, submitted at 09:00 on 1 December 2011" in (
        body
    )
    assert (
        "for Whole-place community budgets at 11:00 on 1 December 2011, on time: the deadline "
        "is the end of 9 December 2011." in body
    )
    assert "-bid-receipt-v2.pdf" in body


# -- the portal --------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING_EOI)


@pytest.fixture
def portal(cbflow_env: Settings, clock: FixedClock) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env, clock=clock)) as client:
        yield client


def test_a_council_reopens_its_eoi_is_told_plainly_what_that_means_and_submits_it_again(
    portal: TestClient, cbflow_env: Settings, clock: FixedClock
) -> None:
    stages.launch(edit(example_text(), REOPENING), "round.yaml", now=london(2011, 10, 17))
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, SLUG)
    assert fill_example(portal, base).status_code == 303
    assert submit(portal, base).status_code == 303
    deadline = "12:00 on 10 November 2011 (GMT)"

    submitted = portal.get(f"{base}/submitted")
    assert "Reopen to change it" in submitted.text
    assert f"You can reopen it to change it until the deadline, {deadline}" in submitted.text
    assert "Reopen to change it" in portal.get(base).text
    confirm = portal.get(f"{base}/reopen")
    assert confirm.status_code == 200
    assert (
        "It will no longer count as submitted. You must submit it again by "
        f"{deadline} for it to count." in confirm.text
    )
    assert f'action="{base}/reopen"' in confirm.text

    # another council's applicant learns nothing, and changes nothing
    other = TestClient(create_app(cbflow_env, clock=clock))
    with other:
        sign_in(other, "sam@bolton.gov.uk", council="BOL")
        assert other.get(f"{base}/reopen").status_code == 404
        token = csrf(other.get("/applications").text)
        assert other.post(f"{base}/reopen", data={"csrf_token": token}).status_code == 404
    with session_scope() as session:
        assert session.exec(select(Application)).one().state == AppState.EOI_SUBMITTED

    clock.set(DURING_EOI + timedelta(minutes=10))
    reopened = portal.post(
        f"{base}/reopen", data={"csrf_token": csrf(confirm.text)}, follow_redirects=False
    )
    assert reopened.status_code == 303 and reopened.headers["location"] == base
    # a second click finds it reopened already
    again = portal.post(
        f"{base}/reopen", data={"csrf_token": csrf(confirm.text)}, follow_redirects=False
    )
    assert again.status_code == 303
    tasks = portal.get(base).text
    assert (
        "You reopened this expression of interest at 10:10 on 1 November 2011 (GMT): it is "
        f"not submitted. You must submit it again by {deadline} for it to count." in tasks
    )
    assert "Reopen to change it" not in tasks
    assert "You reopened this expression of interest" in portal.get(f"{base}/check").text
    assert portal.get(f"{base}/submitted", follow_redirects=False).status_code == 303

    clock.set(DURING_EOI + timedelta(minutes=20))
    assert submit(portal, base).status_code == 303
    page = portal.get(f"{base}/submitted").text
    assert "This is version 2. It replaces version 1, which no longer counts." in page
    assert "You reopened" not in portal.get(base).text

    # staff see both versions, and when the first was reopened
    add_user("staff@dclg.example", "staff")
    staff = TestClient(create_app(cbflow_env, clock=clock))
    with staff:
        sign_in_existing(staff, "staff@dclg.example")
        with session_scope() as session:
            application_id = session.exec(select(Application.id)).one()
        html = staff.get(f"/staff/rounds/{SLUG}/applications/{application_id}").text
    table = html[html.index("data-submissions") :]
    rows = re.findall(r"<tr class=\"govuk-table__row\">(.*?)</tr>", table, re.S)
    cells = [c for c in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows) if c]
    assert cells[0][:2] == ["Expression of interest", "1"]
    assert cells[0][4] == "10:10 on 1 November 2011 (GMT) by pat@essex.gov.uk"
    assert cells[1][:2] == ["Expression of interest", "2"] and cells[1][4] == "No"

    # after the deadline: no button, and a post is refused with the reason
    clock.set(AFTER_EOI)
    sign_in_existing(portal, "pat@essex.gov.uk")
    confirm = portal.get(f"{base}/reopen")
    assert f'action="{base}/reopen"' not in confirm.text  # no button to reopen it
    assert "Reopen to change it" not in portal.get(f"{base}/submitted").text
    late = portal.post(f"{base}/reopen", data={"csrf_token": csrf(confirm.text)})
    assert late.status_code == 409
    assert "The deadline has passed: it was 12:00 on 10 November 2011 (GMT)" in late.text
    with session_scope() as session:
        assert session.exec(select(Application)).one().state == AppState.EOI_SUBMITTED


def test_without_the_prospectus_allowing_it_there_is_no_button_and_the_page_says_why(
    portal: TestClient,
) -> None:
    stages.launch(example_text(), "round.yaml", now=london(2011, 10, 17))
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, SLUG)
    fill_example(portal, base)
    submit(portal, base)
    assert "Reopen to change it" not in portal.get(f"{base}/submitted").text
    assert "Reopen to change it" not in portal.get(base).text
    page = portal.get(f"{base}/reopen")
    assert page.status_code == 200
    assert "does not allow a submitted expression of interest to be reopened" in page.text
    assert f'action="{base}/reopen"' not in page.text  # no button to reopen it
