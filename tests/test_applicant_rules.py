"""What a council may do with its application in each state, as the services decide it once for
the portal's pages and posts alike: edit and submit a form while its state and window allow,
see a receipt once submitted, withdraw until the work is done, accept a grant offer once, make
returns while implementing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import example_text, london
from sqlmodel import Session

from cbflow import stages
from cbflow.db import session_scope
from cbflow.errors import CbflowError
from cbflow.lifecycle import AppState
from cbflow.models import Application, ReturnRecord, Round
from cbflow.prospectus import Prospectus
from cbflow.services import applications, implementation, offers, rounds
from cbflow.settings import Settings

LAUNCHED = datetime(2011, 10, 17, 9, 0, tzinfo=UTC)
DURING_EOI = london(2011, 11, 1, 10, 0)
AFTER_EOI = london(2011, 11, 10, 12, 0)  # the deadline itself is already too late
DURING_BID = london(2011, 12, 1, 9, 0)


@pytest.fixture
def started(cbflow_env: Settings) -> Iterator[tuple[Session, Prospectus, Application]]:
    """A launched round of the format example and Essex's expression of interest in it."""
    slug = stages.launch(example_text(), "round.yaml", now=LAUNCHED).round
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        application, _ = applications.start_application(
            session, round_=round_, council_code="ESS", actor="ann@essex.gov.uk", now=DURING_EOI
        )
        yield session, rounds.prospectus_of(round_), application
        session.rollback()  # the states the tests set are not kept


def test_an_eoi_in_progress_can_be_changed_and_submitted_until_its_deadline(
    started: tuple[Session, Prospectus, Application],
) -> None:
    _, prospectus, application = started
    assert applications.current_stage(application) == "eoi"
    assert applications.applicant_page(application) == "form"

    now = applications.applicant_actions(prospectus, application, "eoi", DURING_EOI)
    assert (now.can_edit, now.can_submit, now.submitted, now.closed) == (True, True, False, False)
    assert now.refusal is None
    assert now.can_withdraw
    assert not now.can_see_receipt
    assert now.deadline == "12:00 on 10 November 2011 (GMT)"

    late = applications.applicant_actions(prospectus, application, "eoi", AFTER_EOI)
    assert late.closed and late.open_to_change
    assert not late.can_edit and not late.can_submit
    assert late.refusal == "the deadline has passed: it was 12:00 on 10 November 2011 (GMT)"


def test_there_is_no_bid_to_make_until_the_council_is_invited(
    started: tuple[Session, Prospectus, Application],
) -> None:
    _, prospectus, application = started
    assert not applications.has_stage(application, "bid")
    with pytest.raises(CbflowError):
        applications.applicant_actions(prospectus, application, "bid", DURING_EOI)

    application.state = AppState.INVITED
    assert applications.has_stage(application, "bid")
    assert applications.current_stage(application) == "bid"
    bid = applications.applicant_actions(prospectus, application, "bid", DURING_BID)
    assert bid.can_edit and bid.can_submit and bid.stage_name == "Bid"
    # the EOI can still be read, never changed
    eoi = applications.applicant_actions(prospectus, application, "eoi", DURING_BID)
    assert not eoi.open_to_change and not eoi.can_edit
    assert eoi.refusal == "this expression of interest can no longer be changed"


def test_a_submitted_form_has_its_receipt_and_is_submitted_once(
    started: tuple[Session, Prospectus, Application],
) -> None:
    _, prospectus, application = started
    application.state = AppState.EOI_SUBMITTED
    application.eoi_submitted_at = DURING_EOI
    actions = applications.applicant_actions(prospectus, application, "eoi", DURING_EOI)
    assert actions.submitted and actions.can_see_receipt
    assert not actions.can_edit and not actions.can_submit
    assert actions.can_withdraw


def test_a_withdrawn_or_finished_application_cannot_be_withdrawn(
    started: tuple[Session, Prospectus, Application],
) -> None:
    _, prospectus, application = started
    for state in (AppState.WITHDRAWN, AppState.COMPLETED, AppState.SIFT_FAIL):
        application.state = state
        actions = applications.applicant_actions(prospectus, application, "eoi", DURING_EOI)
        assert not actions.can_withdraw, state
        assert not actions.can_edit, state


def test_a_selected_place_has_a_grant_offer_to_accept_once_the_decision_is_released(
    started: tuple[Session, Prospectus, Application],
) -> None:
    _, _, application = started
    application.state = AppState.SELECTED
    assert applications.applicant_page(application) == "form"  # not yet released
    assert not offers.offer_actions(application).offered

    application.decided_at = london(2011, 12, 20, 9, 0)
    assert applications.applicant_page(application) == "offer"
    assert offers.offer_actions(application) == offers.OfferActions(offered=True, accepted=False)
    assert offers.offer_actions(application).can_accept

    application.offer_accepted_at = london(2011, 12, 21, 9, 0)
    assert not offers.offer_actions(application).can_accept

    application.state = AppState.UNSUCCESSFUL
    assert not offers.offer_actions(application).offered


def test_returns_are_made_while_implementing_and_read_afterwards(
    started: tuple[Session, Prospectus, Application],
) -> None:
    session, prospectus, application = started
    assert not implementation.returns_readable(application)
    application.state = AppState.IMPLEMENTING
    assert applications.applicant_page(application) == "returns"
    assert implementation.returns_readable(application)
    assert implementation.returns_being_made(application)

    assert application.id is not None
    due = london(2012, 7, 31, 0, 0)
    record_ = ReturnRecord(
        application_id=application.id,
        period=1,
        period_start=date(2012, 4, 1),
        period_end=date(2012, 6, 30),
        due=due,
    )
    opens = london(2012, 7, 1, 0, 0)

    before = implementation.return_actions(application, record_, prospectus, opens - timedelta(1))
    assert before.not_yet_open and not before.open and not before.can_make
    assert before.opens == opens

    due_now = implementation.return_actions(application, record_, prospectus, opens)
    assert due_now.open and due_now.can_make and not due_now.overdue

    overdue = implementation.return_actions(application, record_, prospectus, due)
    assert overdue.overdue and overdue.can_make  # late returns are still taken

    record_.submitted_at = due
    submitted = implementation.return_actions(application, record_, prospectus, due)
    assert submitted.can_view and not submitted.open and not submitted.can_make

    application.state = AppState.COMPLETED
    record_.submitted_at = None
    ended = implementation.return_actions(application, record_, prospectus, due)
    assert implementation.returns_readable(application)
    assert not implementation.returns_being_made(application)
    assert ended.open and not ended.can_make
    assert session.get(Round, application.round_id) is not None
