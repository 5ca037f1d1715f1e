"""Reminders before a deadline: who is due one at a moment, what it says is still missing, and
sending each once.

The prospectus says when (`reminders: {before_deadline: [10, 3, 1]}`, in working days; see
cbflow.workdays for the moment each means). At such a moment:

- before the EOI and bid deadlines, every application with its form still a draft (being
  written, or waiting for sign-off) is reminded against its own deadline (an extension given to
  its council moves it): each officer (applicant account) of its lead and member councils, and,
  where sign-off is awaited, the certifier it was sent to;
- before the assessment closes, every assessor with scores still unsubmitted.

Each reminder names what is still missing (sections not complete, partners or member councils
unconfirmed, sign-off awaited; for an assessor, the applications not yet scored). One Reminder
row per person, date and application, written in the transaction that keeps its message in the
outbox, so a run again sends nothing again; never to anyone whose form is submitted. Each is
audited on the application it is about, so it shows in the application's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Literal

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import ValidationFailed
from cbflow.formatting import local_deadline, long_date
from cbflow.forms import validate_answers
from cbflow.lifecycle import RoundState
from cbflow.models import Application, Assignment, Reminder, Round, User
from cbflow.prospectus import Prospectus
from cbflow.services import applications, assessment, deadlines, partnerships, signoff
from cbflow.services.audit import record
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings
from cbflow.wording import and_list, plural
from cbflow.workdays import parse_time_of_day, reminder_moment

Kind = Literal["deadline", "assessment"]
REMINDED = "reminded"  # the audit action on the application
APPLICANT = "applicant"

WHAT = {
    "eoi": "expression of interest",
    "bid": "bid",
    "assessment": "assessment scores",
}


def moments(
    prospectus: Prospectus, opens: datetime, closes: datetime, at: time
) -> list[tuple[int, datetime]]:
    """(working days before, when) of each reminder before a window closing at `closes`, while
    the window is open, earliest first."""
    found = []
    for days in prospectus.reminders.before_deadline:
        when = reminder_moment(closes, days, prospectus.zone, at)
        if opens <= when < closes:
            found.append((days, when))
    return sorted(found, key=lambda pair: pair[1])


def current(
    prospectus: Prospectus, opens: datetime, closes: datetime, at: time, now: datetime
) -> tuple[int, datetime] | None:
    """The reminder that is due at `now` against a window closing at `closes`: the latest one
    whose moment has come, on that same day (a run that comes a day late sends the next
    reminder, not a stale one), and only while the window is open."""
    if now >= closes:
        return None
    zone = prospectus.zone
    today = now.astimezone(zone).date()
    due = [
        (days, when)
        for days, when in moments(prospectus, opens, closes, at)
        if when <= now and when.astimezone(zone).date() == today
    ]
    return due[-1] if due else None


@dataclass(frozen=True)
class Due:
    """One reminder due: to whom, about what, and what it says is missing."""

    kind: Kind
    stage: str  # "eoi" | "bid" | "assessment"
    recipient: User
    role: Literal["officer", "certifier", "assessor"]
    deadline: datetime
    days: int  # working days before the deadline
    moment: datetime  # when it was due
    application: Application | None  # None for an assessor's (about several)
    about: tuple[Application, ...] = ()  # an assessor's applications not yet scored
    missing: tuple[str, ...] = field(default_factory=tuple)

    def key(self, round_: Round, zone_day: date) -> str:
        about = self.application.id if self.application is not None else "all"
        return f"{round_.slug}/{self.stage}/{zone_day.isoformat()}/{about}/user-{self.recipient.id}"


def _sections_not_complete(
    prospectus: Prospectus, application: Application, stage: deadlines.Stage
) -> list[str]:
    form = applications.form_of(prospectus, stage)
    answers = application.eoi_answers if stage == "eoi" else application.bid_answers
    try:
        validate_answers(form, answers, complete=True)
    except ValidationFailed as failed:
        errors = set(failed.errors)
    else:
        return []
    return [s.title for s in form.sections if {q.id for q in s.questions} & errors]


def missing_for_council(
    session: Session, prospectus: Prospectus, application: Application, stage: deadlines.Stage
) -> list[str]:
    """What the council still has to do before its form is submitted, each a sentence without
    its full stop, in the order it would do them."""
    if signoff.waiting(application, stage):
        certifier = signoff.certifier_of(session, application)
        who = f"{certifier.name}, " if certifier is not None else ""
        return [f"sign-off by {who}the council's {signoff.role_asked(prospectus).lower()}"]
    found = []
    sections = _sections_not_complete(prospectus, application, stage)
    if sections:
        found.append(
            f"{'section' if len(sections) == 1 else 'sections'} not complete: {and_list(sections)}"
        )
    found += [text for text, _ in applications.readiness(session, application, stage)]
    if signoff.required(prospectus, stage):
        found.append(
            f"sending it to the council's {signoff.role_asked(prospectus).lower()} to sign off"
        )
    else:
        found.append(f"submitting the {WHAT[stage]}")
    return found


def _officers(session: Session, application: Application) -> list[User]:
    codes = partnerships.council_codes_of(session, application)
    return list(
        session.exec(
            select(User)
            .where(User.role == APPLICANT, col(User.council_code).in_(codes))
            .order_by(col(User.id))
        )
    )


def due_at(session: Session, round_: Round, now: datetime, at: time) -> list[Due]:
    """Every reminder due at `now` in the round (sent or not)."""
    prospectus = prospectus_of(round_)
    if not prospectus.reminders.before_deadline or round_.state == RoundState.CANCELLED:
        return []
    found: list[Due] = []
    for stage, opens in _council_stages(prospectus):
        for application in deadlines.drafts_of(session, round_, stage):
            closes = deadlines.closes_for(session, application, stage)
            due = current(prospectus, opens, closes, at, now)
            if due is None:
                continue
            days, moment = due
            missing = tuple(missing_for_council(session, prospectus, application, stage))
            people: list[tuple[User, Literal["officer", "certifier"]]] = [
                (user, "officer") for user in _officers(session, application)
            ]
            if signoff.waiting(application, stage):
                certifier = signoff.certifier_of(session, application)
                if certifier is not None:
                    people.append((certifier, "certifier"))
            found += [
                Due("deadline", stage, user, role, closes, days, moment, application, (), missing)
                for user, role in people
            ]
    found += _assessors_due(session, round_, prospectus, now, at)
    return found


def _council_stages(prospectus: Prospectus) -> list[tuple[deadlines.Stage, datetime]]:
    zone, timetable = prospectus.zone, prospectus.timetable
    stages: list[tuple[deadlines.Stage, datetime]] = [("eoi", timetable.eoi.opens_at(zone))]
    if prospectus.stages.bid and timetable.bid:
        stages.append(("bid", timetable.bid.opens_at(zone)))
    return stages


def _assessors_due(
    session: Session, round_: Round, prospectus: Prospectus, now: datetime, at: time
) -> list[Due]:
    window = prospectus.timetable.assessment
    if window is None or prospectus.stages.assessment is None:
        return []
    zone = prospectus.zone
    closes = window.closes_at(zone)
    due = current(prospectus, window.opens_at(zone), closes, at, now)
    if due is None:
        return []
    days, moment = due
    open_work: dict[int, list[Assignment]] = {}
    for assignment in assessment.all_assignments(session, round_):
        if assignment.submitted_at is None:
            open_work.setdefault(assignment.assessor_id, []).append(assignment)
    if not open_work:
        return []
    ids = {a.application_id for work in open_work.values() for a in work}
    apps = {a.id: a for a in session.exec(select(Application).where(col(Application.id).in_(ids)))}
    places = partnerships.places_where(session, col(Application.id).in_(ids))
    found = []
    for assessor_id, work in sorted(open_work.items()):
        assessor = session.get(User, assessor_id)
        if assessor is None:
            continue
        about = tuple(apps[a.application_id] for a in work)
        missing = tuple(
            f"scores for {places[a.id].name if a.id in places else a.reference} ({a.reference})"
            for a in about
            if a.id is not None
        )
        found.append(
            Due(
                "assessment",
                "assessment",
                assessor,
                "assessor",
                closes,
                days,
                moment,
                None,
                about,
                missing,
            )
        )
    return found


def _message(
    due: Due, round_: Round, prospectus: Prospectus, place: str | None, settings: Settings
) -> notify.Message:
    base = settings.resolved_portal_base_url
    if due.role == "assessor":
        link = f"{base}/assess"
    elif due.role == "certifier":
        assert due.application is not None
        link = f"{base}/sign-off/{due.application.id}/{due.stage}"
    else:
        assert due.application is not None
        link = f"{base}/applications/{due.application.id}/{due.stage}"
    return notify.compose(
        settings.templates_dir,
        "reminder-assessor" if due.role == "assessor" else "reminder",
        to=due.recipient.email,
        name=due.recipient.name,
        round=round_.title,
        what=WHAT[due.stage],
        place=place or "",
        certifier=due.role == "certifier",
        deadline=local_deadline(due.deadline, prospectus),
        days=plural(due.days, "working day"),
        missing=list(due.missing),
        link=link,
    )


def send(
    session: Session, round_: Round, now: datetime, settings: Settings
) -> tuple[list[Reminder], list[notify.Message]]:
    """Record each reminder due at `now` that has not gone yet, audit it on its application(s),
    and return the rows and their messages for the caller to send (into the outbox in this
    transaction, or by SMTP once it has committed). Concurrent runs of the round wait for each
    other (the round is locked), so each reminder is recorded once."""
    lock_for_update(session, round_)
    prospectus = prospectus_of(round_)
    dues = due_at(session, round_, now, parse_time_of_day(settings.reminder_time))
    if not dues:
        return [], []
    assert round_.id is not None
    keys = {due.key(round_, due.moment.astimezone(prospectus.zone).date()): due for due in dues}
    sent = set(session.exec(select(Reminder.key).where(col(Reminder.key).in_(list(keys)))))
    ids = {d.application.id for d in dues if d.application is not None}
    places = partnerships.places_where(session, col(Application.id).in_(ids)) if ids else {}
    rows, messages = [], []
    for key, due in keys.items():
        if key in sent:
            continue
        application = due.application
        on_date = due.moment.astimezone(prospectus.zone).date()
        row = Reminder(
            key=key,
            round_id=round_.id,
            application_id=application.id if application is not None else None,
            kind=due.kind,
            stage=due.stage,
            recipient=due.recipient.email,
            on_date=on_date,
            missing=list(due.missing),
            sent_at=now,
        )
        session.add(row)
        rows.append(row)
        place = places.get(application.id) if application is not None and application.id else None
        messages.append(_message(due, round_, prospectus, place.name if place else None, settings))
        deadline = local_deadline(due.deadline, prospectus)
        for about in (application,) if application is not None else due.about:
            assert about.id is not None
            record(
                session,
                entity="application",
                entity_id=about.id,
                action=REMINDED,
                actor="system:cbflow",
                now=now,
                reason=_audit_reason(due, deadline),
            )
    session.flush()
    return rows, messages


def _audit_reason(due: Due, deadline: str) -> str:
    if due.role == "assessor":
        return (
            f"{due.recipient.name} ({due.recipient.email}), assessor, reminded to submit scores "
            f"before the assessment closes at {deadline}"
        )
    who = "certifier" if due.role == "certifier" else "council officer"
    still = "; ".join(due.missing)
    return (
        f"{due.recipient.name} ({due.recipient.email}), {who}, reminded that the "
        f"{WHAT[due.stage]} deadline is {deadline} ({plural(due.days, 'working day')} away); "
        f"still to do: {still}"
    )


@dataclass(frozen=True)
class SentSummary:
    """Reminders sent on one date about one deadline, as the round's overview lists them."""

    on_date: str  # "8 December 2026"
    what: str  # "Expression of interest deadline"
    people: int
    recipients: tuple[str, ...]


SUMMARY_TITLES = {
    "eoi": "Expression of interest deadline",
    "bid": "Bid deadline",
    "assessment": "Assessment scores",
}


def summary(session: Session, round_: Round) -> list[SentSummary]:
    """The round's reminders sent, by date (latest first) and what they were about."""
    rows: Sequence[Reminder] = list(
        session.exec(
            select(Reminder)
            .where(Reminder.round_id == round_.id)
            .order_by(col(Reminder.on_date).desc(), col(Reminder.stage), col(Reminder.id))
        )
    )
    grouped: dict[tuple[date, str], list[str]] = {}
    for row in rows:
        people = grouped.setdefault((row.on_date, row.stage), [])
        if row.recipient not in people:
            people.append(row.recipient)
    return [
        SentSummary(long_date(day), SUMMARY_TITLES.get(stage, stage), len(people), tuple(people))
        for (day, stage), people in grouped.items()
    ]
