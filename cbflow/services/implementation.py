"""Implementation: milestones, the returns cycle (due, submitted, chased) and payment by results."""

from __future__ import annotations

import calendar
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotYet, ValidationFailed
from cbflow.forms import money_to_pence, validate_answers
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, MilestoneRecord, ReturnRecord, Round
from cbflow.prospectus import Form, Prospectus
from cbflow.services import drafts
from cbflow.services.applications import RETURNS_STATES, not_reached
from cbflow.services.audit import record, transition
from cbflow.services.rounds import applications_of, prospectus_of

MONTHS = {"month": 1, "quarter": 3, "half-year": 6}


def _add_months(day: date, months: int) -> date:
    """The same day of the month, `months` later, or that month's last day if it is shorter."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def return_periods(prospectus: Prospectus) -> list[tuple[date, date, datetime]]:
    """(first day, last day, due) of each return: periods from the start of implementation to
    its end, each due at the end of the day `due_within_days` after the period ends (local)."""
    period = prospectus.timetable.implementation
    stage = prospectus.stages.implementation
    if period is None or stage is None or stage.returns is None:
        return []
    step = MONTHS[stage.returns.every]
    periods = []
    number = 0
    start = period.starts
    while start <= period.ends:
        number += 1
        # each boundary counts from the first day, so a start on the 31st does not drift
        end = min(_add_months(period.starts, number * step) - timedelta(days=1), period.ends)
        due_day = end + timedelta(days=stage.returns.due_within_days + 1)
        periods.append((start, end, datetime.combine(due_day, time(0, 0), tzinfo=prospectus.zone)))
        start = end + timedelta(days=1)
    return periods


@dataclass(frozen=True)
class ImplementationActions:
    """What the implementation stage permits for a round in its state."""

    can_start: bool
    start_refusal: str  # why implementation cannot start now ("" when it can)


def implementation_actions(round_: Round) -> ImplementationActions:
    """The one place that says whether implementation may start: once the decisions are
    released, and only once."""
    if round_.state == RoundState.DECIDED:
        return ImplementationActions(can_start=True, start_refusal="")
    return ImplementationActions(
        can_start=False,
        start_refusal="implementation starts once the decisions are released, and only once",
    )


class ReturnStatus(StrEnum):
    NOT_YET_DUE = "not yet due"
    DUE = "due"
    OVERDUE = "overdue"
    SUBMITTED = "submitted"
    LATE = "late"  # submitted after it was due


def return_status(record_: ReturnRecord, now: datetime, prospectus: Prospectus) -> ReturnStatus:
    """Where a return stands for staff: submitted (on time or late), overdue, due from the day
    its period ends, or not yet due."""
    if record_.submitted_at is not None:
        return ReturnStatus.LATE if record_.submitted_at > record_.due else ReturnStatus.SUBMITTED
    opens = datetime.combine(record_.period_end, datetime.min.time(), tzinfo=prospectus.zone)
    if now > record_.due:
        return ReturnStatus.OVERDUE
    return ReturnStatus.DUE if now >= opens else ReturnStatus.NOT_YET_DUE


def start_implementation(session: Session, *, round_: Round, actor: str, now: datetime) -> int:
    """Selected places begin: persists each one's milestones and return schedule, then its move
    to implementing, then the round's. Returns how many places began; run again, it changes
    nothing."""
    if not implementation_actions(round_).can_start:
        if round_.state in (RoundState.IMPLEMENTING, RoundState.COMPLETED):
            return 0
        raise CbflowError(
            f"round {round_.slug} is {round_.state}; implementation follows decisions"
        )
    prospectus = prospectus_of(round_)
    stage = prospectus.stages.implementation
    periods = return_periods(prospectus)
    started = 0
    for application in applications_of(session, round_, AppState.SELECTED):
        assert application.id is not None
        for milestone in stage.milestones if stage else []:
            session.add(
                MilestoneRecord(
                    application_id=application.id,
                    milestone_id=milestone.id,
                    title=milestone.title,
                    due=milestone.due,
                )
            )
        for number, (first, last, due) in enumerate(periods, start=1):
            session.add(
                ReturnRecord(
                    application_id=application.id,
                    period=number,
                    period_start=first,
                    period_end=last,
                    due=due,
                )
            )
        transition(
            session,
            application,
            AppState.IMPLEMENTING,
            actor=actor,
            now=now,
            reason="implementation began",
        )
        started += 1
    transition(
        session,
        round_,
        RoundState.IMPLEMENTING,
        actor=actor,
        now=now,
        reason=f"{started} places implementing",
    )
    return started


def returns_of(session: Session, application: Application) -> list[ReturnRecord]:
    statement = select(ReturnRecord).where(ReturnRecord.application_id == application.id)
    return list(session.exec(statement.order_by(col(ReturnRecord.period))))


def milestones_of(session: Session, application: Application) -> list[MilestoneRecord]:
    statement = select(MilestoneRecord).where(MilestoneRecord.application_id == application.id)
    return list(session.exec(statement.order_by(col(MilestoneRecord.due), col(MilestoneRecord.id))))


def payment_for(prospectus: Prospectus, answers: dict[str, Any]) -> int:
    """Payment by results for one return, in pence: each payment's amount times its answer."""
    stage = prospectus.stages.implementation
    total = Decimal(0)
    for payment in stage.payments if stage else []:
        total += payment.amount_gbp * Decimal(str(answers.get(payment.per) or 0))
    return money_to_pence(total)


def return_opens(record_: ReturnRecord, prospectus: Prospectus) -> datetime:
    """A return can be made from the start of the day after its period ends (local)."""
    return datetime.combine(
        record_.period_end + timedelta(days=1), time(0, 0), tzinfo=prospectus.zone
    )


def stored_draft(record_: ReturnRecord) -> drafts.Stored:
    """A return's draft as its record holds it: answers, version, each answer's last change."""
    return drafts.Stored(dict(record_.draft), record_.draft_version, dict(record_.draft_changes))


def _open_return(
    session: Session, record_: ReturnRecord, now: datetime
) -> tuple[Application, Prospectus, Form]:
    """The application, prospectus and returns form of a return that can be made now."""
    application = session.get(Application, record_.application_id)
    assert application is not None and application.id is not None
    if application.state != AppState.IMPLEMENTING:
        raise CbflowError(f"{application.reference} is not implementing")
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    stage = prospectus.stages.implementation
    assert stage is not None and stage.returns is not None
    opens = return_opens(record_, prospectus)
    if now < opens:
        raise NotYet(f"the return for period {record_.period} can be made from {opens.date()}")
    return application, prospectus, stage.returns.form


def save_return_draft(
    session: Session,
    *,
    record_: ReturnRecord,
    answers: Mapping[str, Any],
    questions: Collection[str],
    base: drafts.Base | None,
    actor: str,
    now: datetime,
) -> drafts.Saved:
    """Keep a return's answers to `questions` to come back to, merged into its draft as
    cbflow.services.drafts describes (a colleague's newer answer is never overwritten: both
    changed raises EditConflict, nothing written). Reads the record afresh under a lock, then
    checks the return can be made and validates the answers as a draft (nothing required).
    Persists, when an answer changed: the draft with its next version and the history of the
    changed answers, then an audit event `return_draft_saved` listing them. Once the return is
    submitted, saving changes nothing."""
    lock_for_update(session, record_)
    stored = stored_draft(record_)
    if record_.submitted_at is not None:
        return drafts.Saved(stored.version, [], [])
    application, _, form = _open_return(session, record_, now)
    proposed = {q: v for q, v in stored.answers.items() if q not in questions}
    proposed |= {q: answers[q] for q in questions if answers.get(q) is not None}
    given = validate_answers(form, proposed, complete=False)
    merged, unseen = drafts.merge(stored, given, questions, base, actor)
    cleaned = validate_answers(form, merged, complete=False)
    changed = drafts.changed_questions(stored.answers, cleaned, [q.id for q in form.questions()])
    shown = drafts.digests(given, questions)
    if not changed:
        return drafts.Saved(drafts.page_version(base, unseen, stored.version), [], unseen, shown)
    version, changes = drafts.next_changes(stored, changed, actor, now)
    record_.draft, record_.draft_version, record_.draft_changes = cleaned, version, changes
    session.add(record_)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="return_draft_saved",
        actor=actor,
        now=now,
        reason=f"period {record_.period}; {drafts.reason(changed)}",
    )
    session.flush()
    return drafts.Saved(drafts.page_version(base, unseen, version), changed, unseen, shown)


def submit_return(
    session: Session,
    *,
    record_: ReturnRecord,
    answers: dict[str, Any],
    actor: str,
    now: datetime,
    base: drafts.Base | None = None,
) -> ReturnRecord:
    """A place's return for one period. Accepted from the day after the period ends (late returns
    are accepted and marked by their time). With the `base` of the page the answers were checked
    on, a colleague's change to the draft since then that the answers do not repeat raises
    EditConflict, nothing changed: what is submitted is what the person checked. Persists the
    validated answers, the submission time and the payment by results, then an audit event.
    Submitting again changes nothing."""
    # a second request racing this one then sees this submission instead of making another
    lock_for_update(session, record_)
    if record_.submitted_at is not None:
        return record_
    application, prospectus, form = _open_return(session, record_, now)
    assert application.id is not None
    cleaned = validate_answers(form, answers, complete=True)
    if base is not None:
        questions = [q.id for q in form.questions()]
        drafts.merge(stored_draft(record_), cleaned, questions, base, actor, strict=True)
    record_.answers = cleaned
    record_.submitted_at = now
    record_.payment_pence = payment_for(prospectus, record_.answers)
    session.add(record_)
    late = " (late)" if now > record_.due else ""
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="return_submitted",
        actor=actor,
        now=now,
        reason=f"period {record_.period}{late}",
    )
    session.flush()
    return record_


def chase_overdue(
    session: Session, *, round_: Round, actor: str, now: datetime
) -> list[ReturnRecord]:
    """Returns past due and not submitted, not yet chased: persists the chase time on each and an
    audit event. Returns the newly chased ones (each gets one reminder, ever)."""
    chased = []
    for application in applications_of(session, round_, AppState.IMPLEMENTING):
        assert application.id is not None
        for record_ in returns_of(session, application):
            if record_.submitted_at is None and record_.chased_at is None and now >= record_.due:
                record_.chased_at = now
                session.add(record_)
                record(
                    session,
                    entity="application",
                    entity_id=application.id,
                    action="return_chased",
                    actor=actor,
                    now=now,
                    reason=f"period {record_.period} overdue",
                )
                chased.append(record_)
    session.flush()
    return chased


def meet_milestone(
    session: Session, *, milestone: MilestoneRecord, met_on: date, actor: str, now: datetime
) -> MilestoneRecord:
    if milestone.met_on is None:
        milestone.met_on = met_on
        session.add(milestone)
        record(
            session,
            entity="application",
            entity_id=milestone.application_id,
            action="milestone_met",
            actor=actor,
            now=now,
            reason=f"{milestone.milestone_id} on {met_on}",
        )
        session.flush()
    return milestone


class AlreadyMet(CbflowError):
    """A milestone marked met that was met already. Nothing was changed."""


def implementation_began(session: Session, application: Application) -> date | None:
    """The day (in the round's time zone) the place began implementing: its move to
    implementing, whether the round started it or staff approved its adoption."""
    began = session.exec(
        select(AuditEvent.at)
        .where(
            AuditEvent.entity == "application",
            AuditEvent.entity_id == application.id,
            AuditEvent.to_state == AppState.IMPLEMENTING.value,
        )
        .order_by(col(AuditEvent.id))
    ).first()
    if began is None:
        return None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return began.astimezone(prospectus_of(round_).zone).date()


def mark_met(
    session: Session, *, milestone: MilestoneRecord, met_on: date, actor: str, now: datetime
) -> MilestoneRecord:
    """Staff mark a milestone met on the day it was met: not in the future, not before the
    place began implementing. Persists the date with its audit event (as `meet_milestone`).
    A milestone met already raises AlreadyMet, naming the day; a bad day, ValidationFailed."""
    lock_for_update(session, milestone)
    if milestone.met_on is not None:
        raise AlreadyMet(
            f"{milestone.title} was already marked met on {milestone.met_on:%-d %B %Y}"
        )
    application = session.get(Application, milestone.application_id)
    assert application is not None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    today = now.astimezone(prospectus_of(round_).zone).date()
    began = implementation_began(session, application)
    if met_on > today:
        problem = f"The day it was met cannot be in the future: today is {today:%-d %B %Y}"
        raise ValidationFailed({"met_on": problem})
    if began is not None and met_on < began:
        problem = f"The day it was met cannot be before implementation began, on {began:%-d %B %Y}"
        raise ValidationFailed({"met_on": problem})
    return meet_milestone(session, milestone=milestone, met_on=met_on, actor=actor, now=now)


def complete(session: Session, *, round_: Round, actor: str, now: datetime) -> int:
    """Close implementation once its period has ended: persists each implementing place's move to
    completed, then the round's. Returns how many completed; run again, it changes nothing."""
    prospectus = prospectus_of(round_)
    period = prospectus.timetable.implementation
    if period is not None:
        ends = datetime.combine(period.ends + timedelta(days=1), time(0, 0), tzinfo=prospectus.zone)
        if now < ends:
            raise not_reached(f"end of {round_.slug}'s implementation", ends, now, prospectus)
    if round_.state == RoundState.COMPLETED:
        return 0
    done = 0
    for application in applications_of(session, round_, AppState.IMPLEMENTING):
        transition(
            session,
            application,
            AppState.COMPLETED,
            actor=actor,
            now=now,
            reason="implementation period ended",
        )
        done += 1
    transition(
        session, round_, RoundState.COMPLETED, actor=actor, now=now, reason="round completed"
    )
    return done


@dataclass(frozen=True)
class ReturnActions:
    """What the council may do with one period's return at one moment."""

    implementing: bool  # returns are being made (once implementation ends they are only read)
    submitted: bool
    opens: datetime  # when it can be made from
    due: datetime
    not_yet_open: bool
    overdue: bool

    @property
    def open(self) -> bool:
        """Its period has ended and it was not submitted: it can be made, late or not."""
        return not self.submitted and not self.not_yet_open

    @property
    def can_make(self) -> bool:
        return self.implementing and self.open

    @property
    def can_view(self) -> bool:
        return self.submitted


def returns_readable(application: Application) -> bool:
    """Whether the application has returns to make or read: implementing or since."""
    return application.state in RETURNS_STATES


def return_actions(
    application: Application, record_: ReturnRecord, prospectus: Prospectus, now: datetime
) -> ReturnActions:
    opens = return_opens(record_, prospectus)
    return ReturnActions(
        implementing=returns_being_made(application),
        submitted=record_.submitted_at is not None,
        opens=opens,
        due=record_.due,
        not_yet_open=now < opens,
        overdue=now >= record_.due,
    )


def returns_being_made(application: Application) -> bool:
    """Whether the application's returns are being made: implementing (once implementation
    ends they are only read)."""
    return application.state == AppState.IMPLEMENTING
