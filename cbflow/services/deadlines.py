"""When a stage's window closes: for everyone, and for one application.

The prospectus (as amended) says when each window closes. Staff may give one council more time
(an extension for its application, seen only by that council and staff), or everyone (by hand,
with a reason); the deadline run gives everyone more time by itself when the portal was degraded
before the deadline (see services.availability). Every page, submission, deadline run and
receipt asks here, so an extension is honoured everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from cbflow import notify
from cbflow.errors import CbflowError, DeadlinePassed, NotYet
from cbflow.formatting import local_deadline, local_time
from cbflow.lifecycle import AppState
from cbflow.models import Application, Extension, Round, User
from cbflow.prospectus import Prospectus, Window
from cbflow.services import partnerships
from cbflow.services.audit import record
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings

Stage = Literal["eoi", "bid"]
STAGES: tuple[Stage, ...] = ("eoi", "bid")
STAGE_NAMES = {"eoi": "expressions of interest", "bid": "bids"}
COUNCIL, EVERYONE, DEGRADED = "council", "everyone", "degraded"
REASON_LIMIT = 1000


def window(prospectus: Prospectus, stage: Stage) -> Window:
    found = prospectus.timetable.eoi if stage == "eoi" else prospectus.timetable.bid
    if found is None:
        raise CbflowError(f"round {prospectus.id} has no {stage} stage")
    return found


def planned_close(prospectus: Prospectus, stage: Stage) -> datetime:
    """When the prospectus (as amended) says the stage's window closes."""
    return window(prospectus, stage).closes_at(prospectus.zone)


def _latest(session: Session, statement: SelectOfScalar[Extension]) -> Extension | None:
    return session.exec(
        statement.order_by(col(Extension.closes_at).desc(), col(Extension.id).desc())
    ).first()


def for_everyone(session: Session, round_: Round, stage: Stage) -> Extension | None:
    """The extension for everyone in force: the one that closes latest, if any closes after
    the prospectus's own deadline."""
    found = _latest(
        session,
        select(Extension).where(
            Extension.round_id == round_.id,
            Extension.stage == stage,
            col(Extension.application_id).is_(None),
        ),
    )
    if found is None or found.closes_at <= planned_close(prospectus_of(round_), stage):
        return None
    return found


def for_application(session: Session, application: Application, stage: Stage) -> Extension | None:
    """One council's own extension for the stage, if any."""
    return _latest(
        session,
        select(Extension).where(
            Extension.application_id == application.id, Extension.stage == stage
        ),
    )


def stage_closes(session: Session, round_: Round, stage: Stage) -> datetime:
    """When the stage's window closes for everyone."""
    extended = for_everyone(session, round_, stage)
    return extended.closes_at if extended else planned_close(prospectus_of(round_), stage)


def closes_for(session: Session, application: Application, stage: Stage) -> datetime:
    """When the stage's window closes for this application: the later of everyone's deadline
    and its own extension."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    closes = stage_closes(session, round_, stage)
    own = for_application(session, application, stage)
    return max(closes, own.closes_at) if own else closes


def check_open(
    prospectus: Prospectus, stage: Stage, now: datetime, closes: datetime | None = None
) -> None:
    """Refuse an action outside the stage's window (opens <= now < closes), where `closes` is
    the deadline that applies (see closes_for; the prospectus's own when not given)."""
    opens = window(prospectus, stage).opens_at(prospectus.zone)
    closes = closes or planned_close(prospectus, stage)
    if now < opens:
        raise NotYet(
            f"the {stage} window of {prospectus.id} opens at {local_time(opens, prospectus)}"
        )
    if now >= closes:
        raise DeadlinePassed(
            f"the {stage} window of {prospectus.id} closed at "
            f"{local_deadline(closes, prospectus)}; "
            "drafts can still be read but no longer submitted"
        )


@dataclass(frozen=True)
class Standing:
    """The deadline that applies to one application at a stage, and why, as pages say it."""

    closes: datetime
    deadline: str  # "11:59pm on 14 December 2011" or as extended
    extension: Extension | None  # the application's own, or everyone's, in force
    own: bool  # the extension is this council's alone

    @property
    def note(self) -> str:
        """What the council reads about an extension ("" without one)."""
        if self.extension is None:
            return ""
        if self.own:
            return (
                f"Your council has been given more time: the deadline for you is {self.deadline}."
            )
        if self.extension.kind == DEGRADED:
            return (
                f"The deadline has been extended for everyone to {self.deadline}, because this "
                "service was not working properly in the hours before the original deadline."
            )
        return f"The deadline has been extended for everyone to {self.deadline}."


def standing(session: Session, application: Application, stage: Stage) -> Standing:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    everyone = for_everyone(session, round_, stage)
    own = for_application(session, application, stage)
    closes = everyone.closes_at if everyone else planned_close(prospectus, stage)
    extension, mine = everyone, False
    if own is not None and own.closes_at > closes:
        closes, extension, mine = own.closes_at, own, True
    return Standing(closes, local_deadline(closes, prospectus), extension, mine)


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise CbflowError("give the reason for the extension")
    if len(text) > REASON_LIMIT:
        raise CbflowError(f"keep the reason to {REASON_LIMIT} characters")
    return text


def _check_new_close(
    prospectus: Prospectus, stage: Stage, current: datetime, closes: datetime, now: datetime
) -> None:
    if closes.tzinfo is None:
        raise CbflowError("an extension's deadline needs a time zone")
    if closes <= now:
        raise CbflowError("the new deadline must be in the future")
    if closes <= current:
        raise CbflowError(
            f"the new deadline must be after the one that applies now, "
            f"{local_deadline(current, prospectus)}"
        )


def extend_application(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    closes: datetime,
    reason: str,
    actor: str,
    now: datetime,
) -> Extension:
    """Give one council more time for a stage. Refused for a stage its application is past (a
    submitted form is not reopened by more time) and for a deadline no later than the one that
    applies now. Persists the extension and its audit event."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    window(prospectus, stage)
    text = _reason(reason)
    submitted = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    if submitted is not None:
        raise CbflowError(f"{application.reference} has already submitted its {stage}")
    _check_new_close(prospectus, stage, closes_for(session, application, stage), closes, now)
    assert round_.id is not None and application.id is not None
    extension = Extension(
        round_id=round_.id,
        stage=stage,
        application_id=application.id,
        closes_at=closes,
        kind=COUNCIL,
        reason=text,
        granted_by=actor,
        granted_at=now,
    )
    session.add(extension)
    record(
        session,
        entity="application",
        entity_id=application.id,
        action=f"extend_{stage}",
        actor=actor,
        now=now,
        reason=f"{stage} deadline extended to {local_deadline(closes, prospectus)}: {text}",
    )
    return extension


def extend_everyone(
    session: Session,
    *,
    round_: Round,
    stage: Stage,
    closes: datetime,
    reason: str,
    actor: str,
    now: datetime,
    kind: str = EVERYONE,
    evidence: dict[str, object] | None = None,
) -> Extension:
    """Give everyone more time for a stage whose window has not closed for everyone yet (by
    hand, or by the deadline run when the portal was degraded). Persists the extension and its
    audit event; the caller reschedules the deadline runs."""
    prospectus = prospectus_of(round_)
    text = _reason(reason)
    current = stage_closes(session, round_, stage)
    if kind != DEGRADED and now >= current:
        raise CbflowError(
            f"the {STAGE_NAMES[stage]} deadline, {local_deadline(current, prospectus)}, has "
            "passed: it can no longer be extended for everyone"
        )
    _check_new_close(prospectus, stage, current, closes, now)
    assert round_.id is not None
    extension = Extension(
        round_id=round_.id,
        stage=stage,
        application_id=None,
        closes_at=closes,
        kind=kind,
        reason=text,
        evidence=evidence or {},
        granted_by=actor,
        granted_at=now,
    )
    session.add(extension)
    record(
        session,
        entity="round",
        entity_id=round_.id,
        action=f"extend_{stage}_for_everyone",
        actor=actor,
        now=now,
        reason=f"{stage} deadline extended for everyone to "
        f"{local_deadline(closes, prospectus)}: {text}",
    )
    return extension


def extensions_of(session: Session, round_: Round) -> list[Extension]:
    return list(
        session.exec(
            select(Extension)
            .where(Extension.round_id == round_.id)
            .order_by(col(Extension.granted_at), col(Extension.id))
        )
    )


def close_moments(session: Session, round_: Round) -> dict[Stage, list[datetime]]:
    """Every moment a stage's deadline run must act at: everyone's deadline, then each
    individual extension that ends after it (the run then closes that application alone)."""
    prospectus = prospectus_of(round_)
    moments: dict[Stage, list[datetime]] = {}
    for stage in STAGES:
        if (prospectus.timetable.eoi if stage == "eoi" else prospectus.timetable.bid) is None:
            continue
        if stage == "bid" and prospectus.stages.bid is None:
            continue
        everyone = stage_closes(session, round_, stage)
        later = {
            e.closes_at
            for e in extensions_of(session, round_)
            if e.stage == stage and e.application_id is not None and e.closes_at > everyone
        }
        moments[stage] = [everyone, *sorted(later)]
    return moments


# the states of an application whose council still has the stage's form to submit
UNSUBMITTED: dict[Stage, tuple[str, ...]] = {
    "eoi": (AppState.EOI_DRAFT.value, AppState.EOI_SIGN_OFF.value),
    "bid": (AppState.INVITED.value, AppState.BID_DRAFT.value, AppState.BID_SIGN_OFF.value),
}


def drafts_of(session: Session, round_: Round, stage: Stage) -> list[Application]:
    """The round's applications whose council has still to submit the stage's form."""
    return list(
        session.exec(
            select(Application)
            .where(
                Application.round_id == round_.id,
                col(Application.state).in_(UNSUBMITTED[stage]),
            )
            .order_by(col(Application.id))
        )
    )


def everyone_told(
    session: Session,
    round_: Round,
    stage: Stage,
    extension: Extension,
    original: datetime,
    settings: Settings,
) -> list[notify.Message]:
    """The e-mails that tell the officers of every council with the stage's form still to
    submit that everyone has more time, and why."""
    prospectus = prospectus_of(round_)
    base_url = settings.resolved_portal_base_url
    messages = []
    for application in drafts_of(session, round_, stage):
        codes = partnerships.council_codes_of(session, application)
        officers = session.exec(
            select(User)
            .where(User.role == "applicant", col(User.council_code).in_(codes))
            .order_by(col(User.id))
        )
        place = partnerships.place_of(session, application).name
        for officer in officers:
            messages.append(
                notify.compose(
                    settings.templates_dir,
                    "deadline-extended",
                    to=officer.email,
                    name=officer.name,
                    stage_name=STAGE_NAMES[stage],
                    round_title=round_.title,
                    deadline=local_deadline(extension.closes_at, prospectus),
                    original=local_deadline(original, prospectus),
                    degraded=extension.kind == DEGRADED,
                    reason=extension.reason,
                    place=place,
                    link=f"{base_url}/applications/{application.id}/{stage}",
                )
            )
    return messages
