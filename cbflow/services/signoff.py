"""Certified sign-off: where the prospectus asks for it (`sign_off: {role, stages}`), a council's
applicants do not submit a form themselves. They send it, complete, to one of their council's
certifiers (people with the certifier role for that council; a partnership's, its lead
council's). The certifier reads the whole application and approves it, which submits it, or
returns it with a reason, which reopens it for the applicants. Only before the deadline: an
application still waiting for sign-off when the window closes is not submitted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline, local_time
from cbflow.forms import validate_answers
from cbflow.lifecycle import AppState
from cbflow.models import Application, Round, User
from cbflow.prospectus import Prospectus
from cbflow.services import applications as service
from cbflow.services import deadlines
from cbflow.services.applications import NotReadyToSubmit, SignOffRequired, Stage
from cbflow.services.audit import transition
from cbflow.services.rounds import prospectus_of

CERTIFIER = "certifier"  # the role of a council's officers who sign off its applications
WARN_WITHIN = timedelta(hours=48)  # from then on the pages say what the deadline means for it
REASON_LIMIT = 5000

WAITING: dict[Stage, AppState] = {"eoi": AppState.EOI_SIGN_OFF, "bid": AppState.BID_SIGN_OFF}
DRAFT: dict[Stage, AppState] = {"eoi": AppState.EOI_DRAFT, "bid": AppState.BID_DRAFT}


__all__ = ["CERTIFIER", "SignOffRequired", "approve", "give_back", "required", "send"]


def required(prospectus: Prospectus, stage: Stage) -> bool:
    """Whether the stage's form is submitted by the council's certifier's approval."""
    return prospectus.sign_off is not None and stage in prospectus.sign_off.stages


def role_asked(prospectus: Prospectus) -> str:
    """The role the prospectus asks to sign off, as it names it."""
    assert prospectus.sign_off is not None
    return prospectus.sign_off.role


def certifiers(session: Session, council_code: str) -> list[User]:
    """The council's certifiers, by name."""
    return list(
        session.exec(
            select(User)
            .where(User.role == CERTIFIER, User.council_code == council_code)
            .order_by(col(User.name))
        ).all()
    )


def certifier_of(session: Session, application: Application) -> User | None:
    return session.get(User, application.certifier_id) if application.certifier_id else None


def waiting(application: Application, stage: Stage) -> bool:
    return application.state == WAITING[stage]


def awaiting(session: Session, certifier: User) -> list[Application]:
    """The applications waiting for this certifier's sign-off, oldest request first."""
    return list(
        session.exec(
            select(Application)
            .where(
                Application.certifier_id == certifier.id,
                col(Application.state).in_([s.value for s in WAITING.values()]),
            )
            .order_by(col(Application.sign_off_requested_at))
        ).all()
    )


def stage_waiting(application: Application) -> Stage | None:
    """The stage whose form waits for sign-off, if one does."""
    for stage, state in WAITING.items():
        if application.state == state:
            return stage
    return None


def deadline_warning(
    prospectus: Prospectus,
    application: Application,
    stage: Stage,
    now: datetime,
    closes: datetime | None = None,
) -> str | None:
    """From 48 hours before the stage's deadline, what it means for a form that needs sign-off
    and has not been submitted: said on every page of it, to applicants and certifier."""
    if not required(prospectus, stage):
        return None
    submitted = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    if submitted is not None:
        return None
    closes = closes or service.window_of(prospectus, stage).closes_at(prospectus.zone)
    if not (closes - WARN_WITHIN <= now < closes):
        return None
    deadline = local_deadline(closes, prospectus)
    if waiting(application, stage):
        return (
            f"The deadline is {deadline}. This application is waiting for sign-off: unless the "
            "certifier approves it before then, it is not submitted."
        )
    return (
        f"The deadline is {deadline}. It must be sent for sign-off and approved by the "
        "certifier before then: an application waiting for sign-off at the deadline is not "
        "submitted."
    )


def _round_and_prospectus(session: Session, application: Application) -> tuple[Round, Prospectus]:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return round_, prospectus_of(round_)


def send(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    certifier_id: int | None,
    actor: str,
    now: datetime,
) -> User:
    """An applicant sends the stage's form, complete, to one of their council's certifiers.
    Checked as a submission is (the window, the partnership and the answers), then persisted:
    the certifier named, who sent it when, and the move to waiting for sign-off with its audit
    event. Returns the certifier."""
    lock_for_update(session, application)
    _, prospectus = _round_and_prospectus(session, application)
    if not required(prospectus, stage):
        raise CbflowError(f"{prospectus.title} does not ask for sign-off")
    if waiting(application, stage):
        raise CbflowError("this application is already waiting for sign-off")
    if not service.stage_open_to_change(application, stage):
        raise CbflowError(f"this {service.STAGE_NAMES[stage].lower()} can no longer be sent")
    service.check_window(prospectus, stage, now, deadlines.closes_for(session, application, stage))
    certifier = session.get(User, certifier_id) if certifier_id else None
    if (
        certifier is None
        or certifier.role != CERTIFIER
        or certifier.council_code != application.council_code
    ):
        raise ValidationFailed({"certifier": "Choose your council’s certifier"})
    found = service.readiness(session, application, stage)
    if found:
        raise NotReadyToSubmit(found)
    form = service.form_of(prospectus, stage)
    answers = application.eoi_answers if stage == "eoi" else application.bid_answers
    validate_answers(form, answers, complete=True, councils=service.council_codes(session))
    if stage == "bid" and application.state == AppState.INVITED:
        transition(
            session, application, AppState.BID_DRAFT, actor=actor, now=now, reason="bid started"
        )
    application.certifier_id = certifier.id
    application.sign_off_requested_at, application.sign_off_requested_by = now, actor
    transition(
        session,
        application,
        WAITING[stage],
        actor=actor,
        now=now,
        reason=f"sent to {certifier.name} ({certifier.email}) for sign-off",
    )
    return certifier


def _certifying(session: Session, application: Application, stage: Stage, certifier: User) -> None:
    lock_for_update(session, application)
    if not waiting(application, stage):
        raise CbflowError("this application is not waiting for sign-off")
    if certifier.id != application.certifier_id:
        raise CbflowError("this application was sent to another certifier")


def approve(
    session: Session, *, application: Application, stage: Stage, certifier: User, now: datetime
) -> Application:
    """The certifier approves the form, which submits it: before the deadline only (after it,
    DeadlinePassed and nothing changes). Persists what a submission persists, with the
    certifier as the one who submitted it."""
    _certifying(session, application, stage, certifier)
    application, _ = service.submit(
        session,
        application=application,
        stage=stage,
        actor=certifier.email,
        now=now,
        certified=True,
    )
    application.sign_off_requested_at = None
    session.add(application)
    return application


def give_back(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    certifier: User,
    reason: str,
    now: datetime,
) -> Application:
    """The certifier returns the form to the council with a reason, which reopens it for
    changes (before the deadline, so that it can still be sent again). Persists the move back
    to a draft with the reason in its audit event."""
    _certifying(session, application, stage, certifier)
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": "Say why you are returning it, so the council can act"})
    if len(reason) > REASON_LIMIT:
        raise ValidationFailed(
            {"reason": f"The reason must be {REASON_LIMIT:,} characters or fewer"}
        )
    application.sign_off_requested_at = None
    transition(
        session,
        application,
        DRAFT[stage],
        actor=certifier.email,
        now=now,
        reason=f"returned by the certifier: {reason}",
    )
    return application


def requested_words(prospectus: Prospectus, application: Application) -> str:
    """`sent by pat@essex.gov.uk at 10:15 on 3 November 2011 (GMT)`."""
    if application.sign_off_requested_at is None:
        return ""
    when = local_time(application.sign_off_requested_at, prospectus)
    return f"sent by {application.sign_off_requested_by} at {when}"
