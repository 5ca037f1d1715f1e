"""Each stage's rules, asked directly: what may be done to a round or an application in each
state. The staff pages show, and the actions refuse, by these same functions."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
from conftest import london
from round_walk import (
    ASSESS_DAY,
    BID_CLOSE,
    COUNCILS,
    CRITERIA,
    DECIDE_DAY,
    END_DAY,
    EOI_CLOSE,
    EOI_DAY,
    FINAL_DAY,
    LAUNCH_AT,
    SCORES,
    SLUG,
    SOURCE,
    assessors_of,
    bids_in,
    score_everything,
    submit_eoi,
    to_assessment,
)
from sqlmodel import Session, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.errors import CbflowError
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, Assignment, ReturnRecord, Round, User
from cbflow.services import assessment, implementation, replication, rounds, selection, sift
from cbflow.services.implementation import ReturnStatus
from cbflow.settings import Settings


def _round(state: RoundState) -> Round:
    """The walk's round, unsaved, in `state`: for the rules that read the round alone."""
    return Round(
        slug=SLUG,
        title="Whole-place community budgets",
        state=state.value,
        prospectus_source=SOURCE,
        source_sha256=hashlib.sha256(SOURCE.encode()).hexdigest(),
        launched_at=LAUNCH_AT,
        launched_by="staff@example.org",
    )


def _walk_round(session: Session) -> Round:
    return rounds.get_round(session, SLUG)


def _application(session: Session, code: str) -> Application:
    round_ = _walk_round(session)
    return session.exec(
        select(Application).where(
            Application.round_id == round_.id, Application.council_code == code
        )
    ).one()


# ---------------------------------------------------------------------------------------------
# deadlines


@pytest.mark.parametrize(
    ("event", "done_from"),
    [
        ("close-eoi", RoundState.EOI_CLOSED),
        ("close-bids", RoundState.BIDS_CLOSED),
        ("decide", RoundState.DECIDED),
        ("returns-cycle", RoundState.COMPLETED),
        ("complete-round", RoundState.COMPLETED),
    ],
)
def test_a_deadline_can_be_run_by_hand_once_due_until_the_round_has_moved_past_it(
    event: str, done_from: RoundState
) -> None:
    order = [s for s in RoundState if s != RoundState.CANCELLED]
    for state in order:
        round_ = _round(state)
        done = order.index(state) >= order.index(done_from)
        assert rounds.deadline_done(round_, event) is done, (event, state)
        due = rounds.deadline_actions(round_, event, due=True)
        assert (due.due, due.done, due.can_run) == (True, done, not done), (event, state)
        early = rounds.deadline_actions(round_, event, due=False)
        assert (early.done, early.can_run) == (done, False), (event, state)
    # a cancelled round has nothing left to run; a completed scheduled run is done
    assert rounds.deadline_actions(_round(RoundState.CANCELLED), event, due=True).done
    ran = rounds.deadline_actions(_round(RoundState.LAUNCHED), event, due=True, run_completed=True)
    assert ran.done and not ran.can_run


# ---------------------------------------------------------------------------------------------
# the sift


def test_the_shortlist_is_confirmed_once_the_sift_is_done_and_every_referral_decided(
    cbflow_env: Settings,
) -> None:
    stages.launch(SOURCE, f"{SLUG}.yaml", now=LAUNCH_AT)
    with session_scope() as session:
        actions = sift.sift_actions(session, _walk_round(session))
    assert actions.eoi_open and actions.has_bid
    assert not actions.can_confirm_shortlist
    assert actions.shortlist_refusal == (
        "The shortlist can be confirmed once the sift is done, in a round with bids"
    )

    councils = _to_eoi_closed()
    with session_scope() as session:
        actions = sift.sift_actions(session, _walk_round(session))
        assert not actions.eoi_open
        assert actions.can_confirm_shortlist and actions.shortlist_refusal == ""
        assert actions.referrals_waiting == 0
        # one EOI referred to staff: nothing is confirmed until it is decided
        referred = _application(session, councils[0])
        referred.state = AppState.SIFT_REFER
        session.add(referred)
        session.flush()
        assert sift.referral_open(referred)
        assert not sift.referral_open(_application(session, councils[1]))
        actions = sift.sift_actions(session, _walk_round(session))
        assert actions.referrals_waiting == 1
        assert not actions.can_confirm_shortlist
        assert actions.shortlist_refusal == "Decide the referred expressions of interest first"
        sift.review_referral(
            session,
            application=referred,
            passed=True,
            actor="staff@example.org",
            now=LAUNCH_AT + timedelta(days=30),
            reason="The partners are named in the attachment.",
        )
        assert not sift.referral_open(referred)
        assert sift.sift_actions(session, _walk_round(session)).can_confirm_shortlist


def _to_eoi_closed() -> list[str]:
    """Five EOIs in, the EOI window closed; returns the councils' codes."""
    for n, council in enumerate(COUNCILS):
        submit_eoi(SLUG, council, EOI_DAY + timedelta(minutes=n), "Pool budgets around families.")
    stages.close_eoi(SLUG, now=EOI_CLOSE)
    return COUNCILS


def test_once_the_shortlist_is_confirmed_it_cannot_be_confirmed_again(
    cbflow_env: Settings,
) -> None:
    bids_in(SOURCE, SLUG, "Pool budgets around families.")
    with session_scope() as session:
        actions = sift.sift_actions(session, _walk_round(session))
    assert not actions.eoi_open and not actions.can_confirm_shortlist
    assert actions.shortlist_refusal.startswith("The shortlist can be confirmed once")


# ---------------------------------------------------------------------------------------------
# assessment, selection and implementation, through one round


def test_each_stage_permits_its_work_only_in_its_own_states(cbflow_env: Settings) -> None:
    ids = bids_in(SOURCE, SLUG, "Pool budgets around families.")
    with session_scope() as session:
        round_ = _walk_round(session)
        assert round_.state == RoundState.BIDS_CLOSED
        actions = assessment.assessment_actions(session, round_)
        # three bids wait for assessors; nothing is scored, so nothing to moderate or finalise
        assert actions.waiting == 3 and actions.can_assign
        assert not actions.can_open_moderation and not actions.can_finalise
        assert actions.has_results and not actions.final
        chosen = selection.selection_actions(round_)
        assert chosen.ready_state == RoundState.ASSESSED
        assert not chosen.ready and not chosen.released and not chosen.can_release
        assert not chosen.shows_plan
        with pytest.raises(CbflowError, match="decisions follow assessed"):
            selection.decide(session, round_=round_, actor="staff", now=BID_CLOSE)
        assert not implementation.implementation_actions(round_).can_start

        session.add_all(
            User(email=f"assessor{n}@assessors.example", name=f"Assessor {n}", role="assessor")
            for n in range(4)
        )
    stages.assign_assessors(SLUG, now=ASSESS_DAY)

    bolton = ids["BOL"]
    skipped = assessors_of(bolton)[0]
    score_everything(skip=frozenset({(bolton, skipped)}))
    with session_scope() as session:
        round_ = _walk_round(session)
        actions = assessment.assessment_actions(session, round_)
        assert actions.waiting == 0 and not actions.can_assign
        # one assessment is still out: no moderation, no finalising
        assert not actions.can_open_moderation and not actions.can_finalise
        for assignment in session.exec(
            select(Assignment).where(Assignment.application_id == bolton)
        ):
            application = session.get(Application, bolton)
            assert application is not None
            refusal = assessment.reassign_refusal(assignment, application)
            if assignment.submitted_at is None:
                assert refusal is None
            else:
                assert refusal == "these scores are submitted: a submitted assessment cannot move"
                other = session.exec(select(User).where(User.role == "assessor")).first()
                assert other is not None
                with pytest.raises(CbflowError, match="a submitted assessment cannot move"):
                    assessment.reassign(
                        session,
                        assignment=assignment,
                        to=other,
                        actor="staff",
                        now=ASSESS_DAY,
                        reason="workload",
                    )

    _submit_the_last(bolton, skipped)
    with session_scope() as session:
        actions = assessment.assessment_actions(session, _walk_round(session))
        # every score in and no moderation opened yet: both may be done (finalising opens it)
        assert actions.can_open_moderation and actions.can_finalise

    stages.open_moderation(SLUG, now=ASSESS_DAY)
    with session_scope() as session:
        round_ = _walk_round(session)
        assert assessment.moderation_tasks(session, round_)
        actions = assessment.assessment_actions(session, round_)
        assert actions.can_open_moderation and not actions.can_finalise
        for task in assessment.moderation_tasks(session, round_):
            assessment.moderate(
                session, task=task, score=3, reason="panel agreed", actor="staff", now=FINAL_DAY
            )
        assert assessment.assessment_actions(session, round_).can_finalise

    stages.finalise_assessment(SLUG, now=FINAL_DAY)
    with session_scope() as session:
        round_ = _walk_round(session)
        assert round_.state == RoundState.ASSESSED
        actions = assessment.assessment_actions(session, round_)
        assert actions.final and actions.has_results
        assert not (actions.can_assign or actions.can_open_moderation or actions.can_finalise)
        assert assessment.assessment_final(round_)
        application = session.get(Application, bolton)
        assignment = session.exec(
            select(Assignment).where(Assignment.application_id == bolton)
        ).first()
        assert application is not None and assignment is not None
        assignment.submitted_at = None  # even unsubmitted, a moderated application's stays
        assert assessment.reassign_refusal(assignment, application) == (
            f"{application.reference} is not under assessment"
        )
        session.rollback()
        chosen = selection.selection_actions(_walk_round(session))
        assert chosen.ready and chosen.can_release and chosen.shows_plan
        assert not chosen.released
        assert not implementation.implementation_actions(_walk_round(session)).can_start

    stages.decide(SLUG, now=DECIDE_DAY)
    with session_scope() as session:
        round_ = _walk_round(session)
        chosen = selection.selection_actions(round_)
        assert chosen.released and chosen.shows_plan
        assert not chosen.ready and not chosen.can_release
        assert assessment.assessment_actions(session, round_).final
        started = implementation.implementation_actions(round_)
        assert started.can_start and started.start_refusal == ""
        prospectus = rounds.prospectus_of(round_)
        birmingham = session.get(Application, ids["BIR"])
        assert birmingham is not None and birmingham.state == AppState.SELECTED
        refused = replication.publish_actions(birmingham, prospectus)
        assert not refused.can_publish
        assert refused.refusal == (
            "a place is published as a model once it has completed, and only once"
        )

    stages.start_implementation(SLUG, now=DECIDE_DAY + timedelta(days=100))
    with session_scope() as session:
        round_ = _walk_round(session)
        again = implementation.implementation_actions(round_)
        assert not again.can_start
        assert again.start_refusal == (
            "implementation starts once the decisions are released, and only once"
        )
        assert selection.selection_actions(round_).released

    stages.complete(SLUG, now=END_DAY)
    with session_scope() as session:
        round_ = _walk_round(session)
        prospectus = rounds.prospectus_of(round_)
        birmingham = session.get(Application, ids["BIR"])
        assert birmingham is not None and birmingham.state == AppState.COMPLETED
        assert replication.publish_actions(birmingham, prospectus).can_publish
        # a round without a replication stage publishes no models
        without = prospectus.model_copy(
            update={"stages": prospectus.stages.model_copy(update={"replication": None})}
        )
        refused = replication.publish_actions(birmingham, without)
        assert not refused.can_publish
        assert refused.refusal == "this round does not publish its places as models"
        assert not implementation.implementation_actions(round_).can_start
        assert selection.selection_actions(round_).released


def _submit_the_last(application_id: int, email: str) -> None:
    with session_scope() as session:
        assessor = session.exec(select(User).where(User.email == email)).one()
        assignment = session.exec(
            select(Assignment).where(
                Assignment.application_id == application_id,
                Assignment.assessor_id == assessor.id,
            )
        ).one()
        application = session.get(Application, application_id)
        assert application is not None
        given = SCORES[application.council_code]
        assessment.submit_scores(
            session,
            assignment=assignment,
            scores={
                criterion: (scores[0], "Read closely.")
                for criterion, scores in zip(CRITERIA, given, strict=True)
            },
            actor=email,
            now=ASSESS_DAY,
        )


def test_assessors_are_assigned_once_and_only_after_the_bids_close(cbflow_env: Settings) -> None:
    to_assessment(assessors=4)
    with session_scope() as session:
        actions = assessment.assessment_actions(session, _walk_round(session))
    assert actions.waiting == 0 and not actions.can_assign
    assert not actions.final


def test_assessment_results_are_not_shown_while_expressions_of_interest_are_open(
    cbflow_env: Settings,
) -> None:
    stages.launch(SOURCE, f"{SLUG}.yaml", now=LAUNCH_AT)
    with session_scope() as session:
        actions = assessment.assessment_actions(session, _walk_round(session))
    assert not actions.has_results and not actions.can_assign and not actions.final


# ---------------------------------------------------------------------------------------------
# returns


def test_a_returns_status_follows_its_period_its_due_date_and_when_it_was_made() -> None:
    prospectus = rounds.prospectus_of(_round(RoundState.IMPLEMENTING))

    def record_(submitted_days: int | None = None) -> ReturnRecord:
        due = london(2012, 7, 31, 0, 0)
        return ReturnRecord(
            application_id=1,
            period=1,
            period_start=date(2012, 4, 1),
            period_end=date(2012, 6, 30),
            due=due,
            submitted_at=due + timedelta(days=submitted_days)
            if submitted_days is not None
            else None,
        )

    status = implementation.return_status
    assert status(record_(), london(2012, 6, 29, 9, 0), prospectus) == ReturnStatus.NOT_YET_DUE
    assert status(record_(), london(2012, 6, 30, 9, 0), prospectus) == ReturnStatus.DUE
    assert status(record_(), london(2012, 8, 1, 9, 0), prospectus) == ReturnStatus.OVERDUE
    assert status(record_(-3), london(2012, 8, 1, 9, 0), prospectus) == ReturnStatus.SUBMITTED
    assert status(record_(2), london(2012, 8, 1, 9, 0), prospectus) == ReturnStatus.LATE
