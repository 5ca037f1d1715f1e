"""Submissions kept as versions, and reopening a submitted EOI or bid before the deadline.

Every submission of a stage's form is kept as it was sent (a `Submission`: version 1, 2, ...).
Where the prospectus allows it (`reopening: {stages: [...]}`), one of the council's own people
may reopen its submitted form before the deadline that applies to it (deadlines.closes_for) and
before anything has been done with it (sifted, assessed): it goes back to a draft with its
answers, and no longer counts as submitted. Only submitting it again by the deadline makes it
count, as the next version, which replaces the one before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, DeadlinePassed, NotFound
from cbflow.formatting import local_deadline, local_time
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Round, Submission, User
from cbflow.prospectus import Prospectus
from cbflow.services import deadlines, partnerships
from cbflow.services.audit import transition
from cbflow.services.deadlines import Stage
from cbflow.services.rounds import prospectus_of

SUBMITTED = {"eoi": AppState.EOI_SUBMITTED, "bid": AppState.BID_SUBMITTED}
DRAFT = {"eoi": AppState.EOI_DRAFT, "bid": AppState.BID_DRAFT}
NAMES = {"eoi": "expression of interest", "bid": "bid"}


def submissions_of(
    session: Session, application: Application, stage: Stage | None = None
) -> list[Submission]:
    """The application's submissions (of one stage, or both), oldest first."""
    statement = select(Submission).where(Submission.application_id == application.id)
    if stage is not None:
        statement = statement.where(Submission.stage == stage)
    return list(
        session.exec(statement.order_by(col(Submission.stage).desc(), col(Submission.version)))
    )


def latest(session: Session, application: Application, stage: Stage) -> Submission | None:
    """The stage's latest submission, reopened or not."""
    return session.exec(
        select(Submission)
        .where(Submission.application_id == application.id, Submission.stage == stage)
        .order_by(col(Submission.version).desc())
    ).first()


def latest_of(
    session: Session, applications: Iterable[Application], stage: Stage
) -> dict[int, list[Submission]]:
    """Each application's submissions of the stage, oldest first, in one read."""
    ids = [a.id for a in applications]
    found: dict[int, list[Submission]] = {}
    for submission in session.exec(
        select(Submission)
        .where(col(Submission.application_id).in_(ids), Submission.stage == stage)
        .order_by(col(Submission.version))
    ):
        found.setdefault(submission.application_id, []).append(submission)
    return found


def current_version(session: Session, application: Application, stage: Stage) -> int:
    """The version that counts now (1 for a form submitted before versions were kept)."""
    found = latest(session, application, stage)
    return found.version if found else 1


def record_submission(
    session: Session,
    *,
    application: Application,
    round_: Round,
    stage: Stage,
    answers: dict[str, object],
    actor: str,
    now: datetime,
) -> Submission:
    """Keep a submission as it was sent: the next version, under the prospectus version in
    force. The caller holds the application's lock, so versions are never taken twice."""
    assert application.id is not None
    before = latest(session, application, stage)
    submission = Submission(
        application_id=application.id,
        stage=stage,
        version=before.version + 1 if before else 1,
        answers=dict(answers),
        submitted_at=now,
        submitted_by=actor,
        prospectus_version=round_.prospectus_version,
    )
    session.add(submission)
    return submission


def allowed(prospectus: Prospectus, stage: Stage) -> bool:
    """Whether the prospectus lets councils reopen the stage's submitted form."""
    return prospectus.reopening is not None and stage in prospectus.reopening.stages


def reopenable(prospectus: Prospectus, application: Application, stage: Stage) -> bool:
    """Whether the form could be reopened (the deadline aside): the prospectus allows it and
    it is submitted with nothing yet done with it."""
    return allowed(prospectus, stage) and application.state == SUBMITTED[stage]


def _refusal(prospectus: Prospectus, application: Application, stage: Stage) -> str | None:
    name = NAMES[stage]
    if not allowed(prospectus, stage):
        return f"{prospectus.title} does not allow a submitted {name} to be reopened"
    if application.state != SUBMITTED[stage]:
        submitted = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
        if submitted is None:
            return f"this {name} is not submitted"
        return f"this {name} can no longer be reopened: it is already being considered"
    return None


def refusal(session: Session, application: Application, stage: Stage, now: datetime) -> str | None:
    """Why the form cannot be reopened now (None when it can)."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    found = _refusal(prospectus, application, stage)
    if found is None:
        closes = deadlines.closes_for(session, application, stage)
        if now >= closes:
            return (
                f"the deadline has passed: it was {local_deadline(closes, prospectus)}, "
                f"so the {NAMES[stage]} can no longer be reopened"
            )
    return found


def _check_person(session: Session, application: Application, actor: str) -> None:
    """Only the council's own people (of its lead or a member council) reopen its form."""
    person = session.exec(select(User).where(User.email == actor)).first()
    if (
        person is None
        or not person.council_code
        or not partnerships.belongs(session, application, person.council_code)
    ):
        raise NotFound(f"no application {application.reference!r} for {actor}")


def reopen(
    session: Session, application: Application, stage: Stage, actor: str, now: datetime
) -> Application:
    """Reopen the council's submitted form to change it (see the module's docstring): refused
    (NotFound) for anyone outside the council, (CbflowError) where the prospectus does not allow
    it or the form is not submitted or already sifted or assessed, (DeadlinePassed) at or after
    the deadline that applies. Persists, under the application's lock: the move back to the
    draft with its audit event and reason, the submission time cleared, and the latest
    submission marked reopened (when, by whom). The answers stay in the draft to change."""
    _check_person(session, application, actor)
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    # the round first, as the close runs take it: a reopening that waited for a close run then
    # sees the stage closed, rather than leave a draft behind a close that has been
    lock_for_update(session, round_)
    lock_for_update(session, application)
    prospectus = prospectus_of(round_)
    found = _refusal(prospectus, application, stage)
    if found is not None:
        raise CbflowError(found)
    closes = deadlines.closes_for(session, application, stage)
    deadline = local_deadline(closes, prospectus)
    still_open = RoundState.LAUNCHED if stage == "eoi" else RoundState.BIDS_INVITED
    closed_for_everyone = round_.state != still_open.value
    if now >= closes or (
        closed_for_everyone and closes <= deadlines.stage_closes(session, round_, stage)
    ):
        raise DeadlinePassed(
            f"the deadline has passed: it was {deadline}, so the {NAMES[stage]} can no longer "
            "be reopened"
        )
    submitted = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    assert submitted is not None
    if stage == "eoi":
        application.eoi_submitted_at = None
    else:
        application.bid_submitted_at = None
    submission = latest(session, application, stage) or _kept_before_versions(
        session, application, stage, submitted
    )
    submission.reopened_at, submission.reopened_by = now, actor
    session.add(submission)
    transition(
        session,
        application,
        DRAFT[stage],
        actor=actor,
        now=now,
        reason=f"{stage} version {submission.version} reopened to change it: it no longer "
        f"counts as submitted unless submitted again by {deadline}",
    )
    return application


def _kept_before_versions(
    session: Session, application: Application, stage: Stage, submitted: datetime
) -> Submission:
    """Version 1 of a form submitted before submissions were kept, as the application holds
    it, so that the version submitted next is version 2 (and has a receipt of its own)."""
    assert application.id is not None
    by = session.exec(
        select(AuditEvent.actor)
        .where(
            AuditEvent.entity == "application",
            AuditEvent.entity_id == application.id,
            AuditEvent.to_state == SUBMITTED[stage].value,
        )
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return Submission(
        application_id=application.id,
        stage=stage,
        version=1,
        answers=dict(application.eoi_answers if stage == "eoi" else application.bid_answers),
        submitted_at=submitted,
        submitted_by=by or "",
        prospectus_version=application.prospectus_version,
    )


def reopened(session: Session, application: Application, stage: Stage) -> Submission | None:
    """The latest submission, if the council reopened it and has not submitted again."""
    submitted = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    if submitted is not None:
        return None
    found = latest(session, application, stage)
    return found if found is not None and found.reopened_at is not None else None


def reopened_warning(
    session: Session,
    application: Application,
    stage: Stage,
    now: datetime,
    closes: datetime | None = None,
) -> str:
    """What the council reads while its form is reopened ("" when it is not); `closes`: the
    deadline that applies (deadlines.closes_for), read when not given."""
    found = reopened(session, application, stage)
    if found is None or found.reopened_at is None:
        return ""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    closes = closes or deadlines.closes_for(session, application, stage)
    deadline = local_deadline(closes, prospectus)
    when = local_time(found.reopened_at, prospectus)
    name = NAMES[stage]
    if now >= closes:
        return (
            f"You reopened this {name} at {when} and it was not submitted again by the "
            f"deadline, {deadline}, so it does not count as submitted."
        )
    return (
        f"You reopened this {name} at {when}: it is not submitted. You must submit it again "
        f"by {deadline} for it to count."
    )


def version_rows(
    session: Session, application: Application, prospectus: Prospectus
) -> list[dict[str, str]]:
    """The application's submissions as staff read them: stage, version, when, by whom, and
    when reopened (and by whom)."""
    return [
        {
            "stage": "Expression of interest" if s.stage == "eoi" else "Bid",
            "version": str(s.version),
            "submitted": local_time(s.submitted_at, prospectus),
            "by": s.submitted_by,
            "reopened": f"{local_time(s.reopened_at, prospectus)} by {s.reopened_by}"
            if s.reopened_at
            else "",
        }
        for s in submissions_of(session, application)
    ]
