"""The rolling adoption route: while a round's prospectus keeps it open (`stages.replication:
{route: open, opens, closes}`), a council adopts a published model at any time, apart from the
competitive windows, with a light form that staff approve or return; no scoring.

The light form is the model's carried-over questions (as the source round's forms ask them),
pre-filled with the model's answers, and three of its own: what the council will change from
the model, its partners and its readiness. It is kept in the application's eoi_* columns, so
the draft's versions and history (services.drafts) apply to it as to any form: a save from a
page drawn before a colleague changed the same answer is refused (EditConflict). The history
also measures the route: the questions whose answers the adopter typed (every answer in it; the
model's answers arrive without an entry), and the time from starting to submitting.

Approval starts the adopter's own implementation: its milestones are the model's, each as far
from the adopter's start (the day of approval) as it was from the source place's, and its
returns are the round's schedule moved by the same distance.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.forms import validate_answers
from cbflow.lifecycle import AppState
from cbflow.models import (
    Application,
    AuditEvent,
    Council,
    MilestoneRecord,
    PublishedModel,
    ReturnRecord,
    Round,
)
from cbflow.prospectus import (
    ChoiceQuestion,
    Form,
    Prospectus,
    Question,
    Section,
    TextareaQuestion,
    Window,
)
from cbflow.services import drafts, replication
from cbflow.services.applications import council_codes
from cbflow.services.audit import record, transition
from cbflow.services.implementation import return_periods
from cbflow.services.rounds import prospectus_of

ROUTE = "adoption"
CHANGES, PARTNERS, READINESS, READINESS_NOTE = (
    "adoption_changes",
    "adoption_partners",
    "adoption_readiness",
    "adoption_readiness_note",
)
READY = (
    "Ready to start as soon as it is approved",
    "Ready within three months",
    "Ready within six months",
    "Not yet ready",
)
# the route's own questions, after the model's
OWN_SECTION = Section(
    id="adoption",
    title="Your adoption",
    questions=[
        TextareaQuestion(
            id=CHANGES,
            type="textarea",
            label="What you will change from the model",
            hint="What your place will do differently, and why.",
            required=True,
            max_words=500,
        ),
        TextareaQuestion(
            id=PARTNERS,
            type="textarea",
            label="Your partners",
            hint="The organisations that will work with you on it.",
            max_words=300,
        ),
        ChoiceQuestion(
            id=READINESS,
            type="choice",
            label="Readiness",
            options=list(READY),
            required=True,
        ),
        TextareaQuestion(
            id=READINESS_NOTE,
            type="textarea",
            label="A note on your readiness",
            hint="For example, what you are waiting for.",
            max_words=200,
        ),
    ],
)


def route_window(prospectus: Prospectus) -> Window | None:
    replication_ = prospectus.stages.replication
    return replication_.route_window if replication_ is not None else None


def route_open(prospectus: Prospectus, now: datetime) -> bool:
    window = route_window(prospectus)
    return window is not None and window.is_open(prospectus.zone, now)


def _source(session: Session, model: PublishedModel) -> tuple[Round, Prospectus]:
    round_ = session.get(Round, model.round_id)
    assert round_ is not None
    return round_, prospectus_of(round_)


def route_refusal(
    session: Session, model: PublishedModel, council: Council, now: datetime
) -> str | None:
    """Why the council may not adopt the model through the rolling route now, or None: the
    model's round must keep the route open at `now`, and take the council as its models do."""
    round_, prospectus = _source(session, model)
    window = route_window(prospectus)
    if window is None:
        return f"{round_.title} has no rolling adoption route"
    zone = prospectus.zone
    if now < window.opens_at(zone):
        return f"the rolling adoption route of {round_.title} has not opened yet"
    if now >= window.closes_at(zone):
        return f"the rolling adoption route of {round_.title} has closed"
    return replication.adoption_refusal(session, model, council)


def light_form(session: Session, model: PublishedModel) -> Form:
    """The route's form for this model: the carried-over questions the model answers, as the
    source round's forms ask them, then the route's own."""
    _, prospectus = _source(session, model)
    asked: list[Question] = list(prospectus.stages.eoi.form.questions())
    if prospectus.stages.bid is not None:
        asked += prospectus.stages.bid.form.questions()
    carried_ids = set(model.bundle.get("answers", {}))
    carried = []
    for question in asked:
        if question.id in carried_ids:
            shown_if = question.show_if
            if shown_if is not None and shown_if.question not in carried_ids:
                question = question.model_copy(update={"show_if": None})
            carried.append(question)
    sections = [OWN_SECTION]
    if carried:
        sections.insert(
            0, Section(id="model", title="What you take from the model", questions=carried)
        )
    return Form(sections=sections)


def carried_ids(form: Form) -> list[str]:
    return [q.id for s in form.sections if s.id == "model" for q in s.questions]


def route_adoption(
    session: Session, model: PublishedModel, council_code: str
) -> Application | None:
    """The council's adoption of any version of the model through the route, if any."""
    versions = session.exec(
        select(PublishedModel.id).where(PublishedModel.application_id == model.application_id)
    )
    return session.exec(
        select(Application)
        .where(
            Application.council_code == council_code,
            Application.route == ROUTE,
            col(Application.adopted_from_model_id).in_(list(versions)),
        )
        .order_by(col(Application.id))
    ).first()


def model_of(session: Session, application: Application) -> PublishedModel:
    model = session.get(PublishedModel, application.adopted_from_model_id or 0)
    if application.route != ROUTE or model is None:
        raise NotFound(f"{application.reference} is not an adoption through the route")
    return model


def start(
    session: Session, *, model_id: int, council_code: str, actor: str, now: datetime
) -> tuple[Application, bool]:
    """Adopt a model through the route: a new application in ADOPTION_DRAFT in the model's
    round, its light form pre-filled with the model's answers; returns (application, created).
    Adopting again (any version) returns the adoption there is. Persists the application, then
    its audit event."""
    model = session.get(PublishedModel, model_id)
    if model is None:
        raise NotFound(f"no published model {model_id}")
    council = session.get(Council, council_code)
    if council is None:
        raise NotFound(f"no council with code {council_code!r} in the register")
    existing = route_adoption(session, model, council_code)
    if existing is not None:
        return existing, False
    refusal = route_refusal(session, model, council, now)
    if refusal is not None:
        raise CbflowError(refusal)
    round_, _ = _source(session, model)
    form = light_form(session, model)
    answers = {q: v for q, v in model.bundle.get("answers", {}).items() if form.question(q)}
    cleaned = validate_answers(form, answers, complete=False, councils=council_codes(session))
    assert round_.id is not None and model.id is not None
    application = Application(
        reference=f"{round_.slug}/{council_code}/route-{model.id}",
        round_id=round_.id,
        council_code=council_code,
        state=AppState.ADOPTION_DRAFT.value,
        eoi_answers=cleaned,
        adopted_from_model_id=model.id,
        created_at=now,
        prospectus_version=round_.prospectus_version,
        route=ROUTE,
    )
    session.add(application)
    session.flush()
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="start",
        actor=actor,
        now=now,
        to_state=AppState.ADOPTION_DRAFT.value,
        reason=f"adopting model {model.id} (version {model.version}) through the rolling route",
    )
    return application, True


def _open_draft(session: Session, application: Application, now: datetime) -> Form:
    """The light form, if the adoption is a draft and the route is open."""
    model = model_of(session, application)
    if application.state != AppState.ADOPTION_DRAFT:
        raise CbflowError(f"{application.reference} can no longer be changed")
    _, prospectus = _source(session, model)
    if not route_open(prospectus, now):
        raise CbflowError("the rolling adoption route is closed: nothing can be changed")
    return light_form(session, model)


def stored(application: Application) -> drafts.Stored:
    return drafts.Stored(
        dict(application.eoi_answers), application.eoi_version, dict(application.eoi_changes)
    )


def save(
    session: Session,
    *,
    application: Application,
    answers: Mapping[str, Any],
    questions: Collection[str],
    base: drafts.Base | None,
    actor: str,
    now: datetime,
) -> drafts.Saved:
    """Save the page's answers to `questions` into the draft, merged as services.drafts says
    (an answer a colleague changed since the page's base: EditConflict, nothing written).
    Persists the answers with the draft's next version and each changed answer's history, then
    an audit event `save_adoption`; a save that changes nothing writes nothing."""
    lock_for_update(session, application)
    form = _open_draft(session, application, now)
    councils = council_codes(session)
    before = stored(application)
    proposed = {q: v for q, v in before.answers.items() if q not in questions}
    proposed |= {q: answers[q] for q in questions if answers.get(q) is not None}
    given = validate_answers(form, proposed, complete=False, councils=councils)
    merged, unseen = drafts.merge(before, given, questions, base, actor)
    cleaned = validate_answers(form, merged, complete=False, councils=councils)
    changed = drafts.changed_questions(before.answers, cleaned, [q.id for q in form.questions()])
    if not changed:
        return drafts.Saved(
            drafts.page_version(base, unseen, before.version),
            [],
            unseen,
            drafts.digests(given, questions),
        )
    version, changes = drafts.next_changes(before, changed, actor, now)
    application.eoi_answers, application.eoi_version = cleaned, version
    application.eoi_changes = changes
    session.add(application)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="save_adoption",
        actor=actor,
        now=now,
        reason=drafts.reason(changed),
    )
    session.flush()
    return drafts.Saved(
        drafts.page_version(base, unseen, version),
        changed,
        unseen,
        drafts.digests(given, questions),
    )


def submit(
    session: Session, *, application: Application, actor: str, now: datetime
) -> tuple[Application, bool]:
    """Submit the adoption for staff to approve; returns (application, newly_submitted). Its
    answers are validated as a submission of the light form (the carried-over answers as the
    source round's forms ask them): ValidationFailed, per question. Persists the submission
    time and the move to ADOPTION_SUBMITTED with its audit event. Submitting again changes
    nothing."""
    lock_for_update(session, application)
    if application.state == AppState.ADOPTION_SUBMITTED:
        return application, False
    form = _open_draft(session, application, now)
    cleaned = validate_answers(
        form, application.eoi_answers, complete=True, councils=council_codes(session)
    )
    application.eoi_answers, application.eoi_submitted_at = cleaned, now
    transition(
        session,
        application,
        AppState.ADOPTION_SUBMITTED,
        actor=actor,
        now=now,
        reason="adoption submitted",
    )
    return application, True


def submitted_by(session: Session, application: Application) -> str | None:
    """Who last submitted the adoption (the person to tell of staff's decision)."""
    return session.exec(
        select(AuditEvent.actor)
        .where(
            AuditEvent.entity == "application",
            AuditEvent.entity_id == application.id,
            AuditEvent.to_state == AppState.ADOPTION_SUBMITTED.value,
        )
        .order_by(col(AuditEvent.id).desc())
    ).first()


def _waiting(application: Application) -> None:
    if application.route != ROUTE:
        raise NotFound(f"{application.reference} is not an adoption through the route")
    if application.state != AppState.ADOPTION_SUBMITTED:
        raise CbflowError(
            f"{application.reference} is not waiting for approval: it may have been decided "
            "already, or returned, or withdrawn"
        )


def source_start(session: Session, model: PublishedModel) -> date:
    """The day the source place's implementation started: the round's implementation period
    where the prospectus sets one, otherwise the day the place began implementing."""
    _, prospectus = _source(session, model)
    period = prospectus.timetable.implementation
    if period is not None:
        return period.starts
    began = session.exec(
        select(AuditEvent.at)
        .where(
            AuditEvent.entity == "application",
            AuditEvent.entity_id == model.application_id,
            AuditEvent.to_state == AppState.IMPLEMENTING.value,
        )
        .order_by(col(AuditEvent.id))
    ).first()
    return (began or model.published_at).astimezone(prospectus.zone).date()


def approve(
    session: Session, *, application: Application, actor: str, now: datetime
) -> list[MilestoneRecord]:
    """Staff approve an adoption: its implementation starts today. Persists its milestones (the
    model's, each moved by the distance from the source place's start to today), its returns
    (the round's schedule moved by the same distance, where the prospectus asks for returns),
    the decision time, then its move to IMPLEMENTING with the audit event. Returns the
    milestones."""
    lock_for_update(session, application)
    _waiting(application)
    model = model_of(session, application)
    _, prospectus = _source(session, model)
    starts = now.astimezone(prospectus.zone).date()
    shift = starts - source_start(session, model)
    assert application.id is not None
    milestones = []
    for milestone in model.bundle.get("milestones", []):
        made = MilestoneRecord(
            application_id=application.id,
            milestone_id=milestone["id"],
            title=milestone["title"],
            due=date.fromisoformat(milestone["due"]) + shift,
        )
        session.add(made)
        milestones.append(made)
    for number, (first, last, due) in enumerate(return_periods(prospectus), start=1):
        session.add(
            ReturnRecord(
                application_id=application.id,
                period=number,
                period_start=first + shift,
                period_end=last + shift,
                due=due + shift,
            )
        )
    application.decided_at = now
    transition(
        session,
        application,
        AppState.IMPLEMENTING,
        actor=actor,
        now=now,
        reason=f"adoption approved: implementation starts on {starts.isoformat()}",
    )
    return milestones


def return_to_council(
    session: Session, *, application: Application, reason: str, actor: str, now: datetime
) -> None:
    """Staff return an adoption to the council with a reason: a draft again, to change and
    submit again while the route is open. Persists the move with the reason in its audit."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": "Enter the reason you are returning it"})
    lock_for_update(session, application)
    _waiting(application)
    application.eoi_submitted_at = None
    transition(session, application, AppState.ADOPTION_DRAFT, actor=actor, now=now, reason=reason)


WITHDRAWABLE = frozenset({AppState.ADOPTION_DRAFT.value, AppState.ADOPTION_SUBMITTED.value})


def withdraw(
    session: Session, *, application: Application, reason: str, actor: str, now: datetime
) -> None:
    """The council withdraws its adoption before staff approve it. Persists the move to
    WITHDRAWN with the reason (or a default one) in its audit event."""
    lock_for_update(session, application)
    if application.route != ROUTE:
        raise NotFound(f"{application.reference} is not an adoption through the route")
    if application.state not in WITHDRAWABLE:
        raise CbflowError(f"{application.reference} can no longer be withdrawn")
    transition(
        session,
        application,
        AppState.WITHDRAWN,
        actor=actor,
        now=now,
        reason=reason.strip() or "withdrawn by the council",
    )


def waiting(session: Session, round_: Round) -> list[Application]:
    """The round's adoptions through the route, oldest first."""
    return list(
        session.exec(
            select(Application)
            .where(Application.round_id == round_.id, Application.route == ROUTE)
            .order_by(col(Application.created_at), col(Application.id))
        )
    )


# ---------------------------------------------------------------------------------------------
# measuring the route


@dataclass(frozen=True)
class Measure:
    """What an adoption through the route took: the answers the adopter typed (changed or
    filled: every question in the draft's history), of how many on the form, and the time from
    starting to submitting."""

    typed: int
    questions: int
    seconds_to_submit: int | None

    @property
    def minutes(self) -> str:
        if self.seconds_to_submit is None:
            return ""
        return f"{self.seconds_to_submit / 60:.1f}"


def typed(application: Application) -> int:
    """How many answers the council typed (changed or filled) in its forms: every question in
    the drafts' histories, which the answers it started from (a model's) are not in."""
    return len(set(application.eoi_changes) | set(application.bid_changes))


def carried_answers(session: Session, application: Application) -> list[replication.CarriedAnswer]:
    """Each carried-over answer of an adoption through the route, checked as a submission of
    its light form would check it."""
    form = light_form(session, model_of(session, application))
    try:
        validate_answers(
            form, application.eoi_answers, complete=True, councils=council_codes(session)
        )
        problems: dict[str, str] = {}
    except ValidationFailed as failed:
        problems = failed.errors
    return [
        replication.CarriedAnswer(q, question.label, problems.get(q))
        for q in carried_ids(form)
        if q in application.eoi_answers and (question := form.question(q)) is not None
    ]


def measure(session: Session, application: Application) -> Measure | None:
    """The route's figures for an adoption, None for any other application."""
    if application.route != ROUTE:
        return None
    form = light_form(session, model_of(session, application))
    asked = {q.id for q in form.questions()}
    submitted = application.eoi_submitted_at
    return Measure(
        typed=len([q for q in application.eoi_changes if q in asked]),
        questions=len(asked),
        seconds_to_submit=(
            round((submitted - application.created_at).total_seconds()) if submitted else None
        ),
    )
