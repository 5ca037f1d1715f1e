"""Clarification requests: during assessment an assessor assigned to an application, or a member
of staff, asks the council a question about named questions of its bid (its expression of
interest, in a round without bids), with a date to answer by.

The council sees the question beside those answers and may change only them, explaining why;
it saves a draft to come back to (each save carries the version it was made from: a stale one
is refused), then submits its reply. Where the prospectus asks for sign-off of clarifications,
the reply waits for the council's certifier to approve it. On reply the request keeps the
answers as they were (`original`) and as changed (`changed`), and the changed answers replace
those of the application's form; the submission as made stays in its Submission row.

A request not answered by its date lapses there, by the scheduled run `due` is the work of; it
is reminded once before (REMIND_BEFORE, or half way for a request asked with less time).
Every step is audited on the application and mailed (the council's officers when asked,
reminded and lapsed; the person who asked when answered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline
from cbflow.forms import money_to_pence, parse_money, validate_answers
from cbflow.lifecycle import AppState
from cbflow.models import Application, Clarification, Round, User
from cbflow.prospectus import FileQuestion, Form, Prospectus, Question
from cbflow.services import applications as service
from cbflow.services import assessment, partnerships, signoff
from cbflow.services.applications import Stage
from cbflow.services.audit import record_application
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings

QUESTION_LIMIT = 2_000  # characters of the question asked
EXPLANATION_LIMIT = 5_000  # characters of the council's explanation of its changes
QUESTIONS_AT_MOST = 50  # questions one request may name
REMIND_BEFORE = timedelta(hours=24)  # the reminder goes this long before the date to answer by

OPEN = "open"
AWAITING_SIGN_OFF = "awaiting_sign_off"
ANSWERED = "answered"
LAPSED = "lapsed"
PENDING = (OPEN, AWAITING_SIGN_OFF)  # not yet answered, nor lapsed
STATE_NAMES = {
    OPEN: "Clarification requested",
    AWAITING_SIGN_OFF: "Reply waiting for sign-off",
    ANSWERED: "Answered",
    LAPSED: "Lapsed: not answered in time",
}
SIGN_OFF_STAGE = "clarification"  # its name in the prospectus's sign_off.stages


class ClarificationRefused(CbflowError):
    """The request cannot be asked, saved or answered now (and nothing changed)."""


class StaleReply(CbflowError):
    """A save made from a page drawn before someone else saved the reply: nothing was saved."""


# ---------------------------------------------------------------------------------------------
# what a request is about


def stage_of(prospectus: Prospectus) -> Stage:
    """The form a round's requests are about: the bid, or the EOI in a round without bids."""
    return "bid" if prospectus.stages.bid is not None else "eoi"


def form_of(prospectus: Prospectus) -> Form:
    return service.form_of(prospectus, stage_of(prospectus))


def askable_questions(prospectus: Prospectus) -> list[Question]:
    """The questions a request may name: every question of the form but a file's (a changed
    file is not taken through a clarification)."""
    return [q for q in form_of(prospectus).questions() if not isinstance(q, FileQuestion)]


def answers_of(application: Application, stage: Stage) -> dict[str, Any]:
    return application.eoi_answers if stage == "eoi" else application.bid_answers


def _prospectus(session: Session, application: Application) -> Prospectus:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return prospectus_of(round_)


def under_assessment(application: Application, prospectus: Prospectus) -> bool:
    """Whether a request may be asked of the application now: it is being assessed, or its
    form is in (its bid submitted; its EOI through the sift, in a round without bids) and
    assessors are not yet assigned."""
    submitted = AppState.BID_SUBMITTED if prospectus.stages.bid else AppState.SIFT_PASS
    return application.state in (AppState.UNDER_ASSESSMENT, submitted)


def may_ask(session: Session, application: Application, user: User) -> bool:
    """Staff, or an assessor assigned to the application (without a conflict declared)."""
    if user.role in ("staff", "admin"):
        return True
    if user.role == "assessor" and application.id is not None:
        return assessment.assignment_of(session, user, application.id) is not None
    return False


def sign_off_required(prospectus: Prospectus) -> bool:
    return prospectus.sign_off is not None and SIGN_OFF_STAGE in prospectus.sign_off.stages


def remind_at(clarification: Clarification) -> datetime:
    """When the reminder goes: REMIND_BEFORE the date to answer by, or half way from the asking
    for a request asked with less than twice that time."""
    span = clarification.answer_by - clarification.asked_at
    if span < 2 * REMIND_BEFORE:
        return clarification.asked_at + span / 2
    return clarification.answer_by - REMIND_BEFORE


def of_application(session: Session, application: Application) -> list[Clarification]:
    """The application's requests, the latest first."""
    return list(
        session.exec(
            select(Clarification)
            .where(Clarification.application_id == application.id)
            .order_by(col(Clarification.id).desc())
        )
    )


def pending_of(session: Session, application: Application) -> list[Clarification]:
    """The requests still waiting for the council's reply (or its certifier's approval)."""
    return [c for c in of_application(session, application) if c.state in PENDING]


def questions_named(prospectus: Prospectus, clarification: Clarification) -> list[Question]:
    """The named questions as the form has them, in the form's order."""
    named = set(clarification.question_ids)
    return [q for q in form_of(prospectus).questions() if q.id in named]


def _restricted(form: Form, question_ids: Sequence[str]) -> Form:
    """The form with only the named questions and those their show_if conditions read, so the
    named answers are validated as the whole form would (not re-validated: a subset of a valid
    form is valid)."""
    wanted = set(question_ids)
    by_id = {q.id: q for q in form.questions()}
    for question_id in list(wanted):
        condition = by_id[question_id].show_if
        while condition is not None and condition.question not in wanted:
            wanted.add(condition.question)
            condition = by_id[condition.question].show_if
    sections = []
    for section in form.sections:
        kept = [q for q in section.questions if q.id in wanted]
        if kept:
            sections.append(section.model_copy(update={"questions": kept}))
    return form.model_copy(update={"sections": sections})


# ---------------------------------------------------------------------------------------------
# asking


def ask(
    session: Session,
    *,
    application: Application,
    asker: User,
    question_ids: Sequence[str],
    question: str,
    answer_by: datetime,
    now: datetime,
) -> Clarification:
    """Ask the council about the named questions of its submitted form, by `answer_by`.
    Persists the request (with the answers as they are now) and an audit event on the
    application; raises ValidationFailed (by field) or ClarificationRefused, changing nothing."""
    lock_for_update(session, application)
    prospectus = _prospectus(session, application)
    if not may_ask(session, application, asker):
        raise ClarificationRefused("only staff or an assessor of this application may ask")
    if not under_assessment(application, prospectus):
        raise ClarificationRefused("this application is not being assessed")
    errors: dict[str, str] = {}
    askable = {q.id for q in askable_questions(prospectus)}
    ids = list(dict.fromkeys(question_ids))
    if not ids:
        errors["questions"] = "Select the questions you are asking about"
    elif len(ids) > QUESTIONS_AT_MOST or any(i not in askable for i in ids):
        errors["questions"] = "Select questions of the council’s form"
    text = question.strip()
    if not text:
        errors["question"] = "Enter your question for the council"
    elif len(text) > QUESTION_LIMIT:
        errors["question"] = f"Your question must be {QUESTION_LIMIT:,} characters or fewer"
    if answer_by <= now:
        errors["answer_by"] = "The date to answer by must be in the future"
    if errors:
        raise ValidationFailed(errors)
    stage = stage_of(prospectus)
    answers = answers_of(application, stage)
    ordered = [q.id for q in form_of(prospectus).questions() if q.id in set(ids)]
    assert application.id is not None
    clarification = Clarification(
        round_id=application.round_id,
        application_id=application.id,
        stage=stage,
        question_ids=ordered,
        question=text,
        answer_by=answer_by,
        asked_by=asker.email,
        asked_at=now,
        original={i: answers.get(i) for i in ordered},
    )
    session.add(clarification)
    session.flush()
    record_application(
        session,
        application,
        "clarification_requested",
        asker.email,
        now,
        f"clarification {clarification.id} asked about {', '.join(ordered)}, to answer by "
        f"{local_deadline(answer_by, prospectus)}",
    )
    return clarification


# ---------------------------------------------------------------------------------------------
# the council's reply


def _check_replying(session: Session, clarification: Clarification, now: datetime) -> None:
    lock_for_update(session, clarification)
    if clarification.state == AWAITING_SIGN_OFF:
        raise ClarificationRefused("your reply is waiting for sign-off: it can no longer change")
    if clarification.state != OPEN:
        raise ClarificationRefused("this request is no longer open")
    if now >= clarification.answer_by:
        raise ClarificationRefused("the date to answer by has passed")


def _check_version(clarification: Clarification, version: int) -> None:
    if version != clarification.version:
        raise StaleReply(
            "Someone else saved this reply since you opened it, so your changes were not saved. "
            "The page now shows theirs: make your changes again."
        )


def _explanation(text: str, *, required: bool) -> str:
    text = text.strip()
    if len(text) > EXPLANATION_LIMIT:
        raise ValidationFailed(
            {"explanation": f"Your explanation must be {EXPLANATION_LIMIT:,} characters or fewer"}
        )
    if required and not text:
        raise ValidationFailed({"explanation": "Explain what you changed and why"})
    return text


def _validated(
    session: Session,
    clarification: Clarification,
    prospectus: Prospectus,
    answers: Mapping[str, Any],
    *,
    complete: bool,
) -> dict[str, Any]:
    """The named answers, checked as the form checks them; every other key is refused."""
    named = clarification.question_ids
    unknown = [key for key in answers if key not in named]
    if unknown:
        raise ValidationFailed(
            {key: "only the questions asked about can change" for key in unknown}
        )
    application = session.get(Application, clarification.application_id)
    assert application is not None
    stage: Stage = "bid" if clarification.stage == "bid" else "eoi"
    current = answers_of(application, stage)
    restricted = _restricted(form_of(prospectus), named)
    # the answers the named ones' conditions read, as they stand
    given = {q.id: current.get(q.id) for q in restricted.questions() if q.id not in named}
    given |= {key: value for key, value in answers.items() if value is not None}
    cleaned = validate_answers(
        restricted, given, complete=complete, councils=service.council_codes(session)
    )
    return {key: cleaned.get(key) for key in named}


def save_draft(
    session: Session,
    *,
    clarification: Clarification,
    answers: Mapping[str, Any],
    explanation: str,
    version: int,
    actor: str,
    now: datetime,
) -> Clarification:
    """Save the council's changes to come back to. `version` is the one the page showed: a save
    made from an older one is refused (StaleReply) and changes nothing. Persists the draft,
    the explanation and the next version, with an audit event."""
    _check_replying(session, clarification, now)
    _check_version(clarification, version)
    prospectus = prospectus_of(_round(session, clarification))
    text = _explanation(explanation, required=False)
    draft = _validated(session, clarification, prospectus, answers, complete=False)
    clarification.draft = {key: value for key, value in draft.items() if value is not None}
    clarification.explanation = text
    clarification.version += 1
    session.add(clarification)
    application = _application(session, clarification)
    record_application(
        session,
        application,
        "clarification_draft_saved",
        actor,
        now,
        f"clarification {clarification.id}: reply saved",
    )
    session.flush()
    return clarification


def reply(
    session: Session,
    *,
    clarification: Clarification,
    answers: Mapping[str, Any],
    explanation: str,
    version: int,
    actor: str,
    now: datetime,
    certifier_id: int | None = None,
) -> Clarification:
    """Submit the council's reply: the named answers, complete and valid, and an explanation.
    Where the prospectus asks for sign-off of clarifications it goes to the council's certifier
    (`certifier_id`) and waits for their approval; otherwise it is answered at once (see
    `_answer`). Raises ValidationFailed, StaleReply or ClarificationRefused, changing
    nothing."""
    _check_replying(session, clarification, now)
    _check_version(clarification, version)
    prospectus = prospectus_of(_round(session, clarification))
    application = _application(session, clarification)
    errors: dict[str, str] = {}
    try:
        text = _explanation(explanation, required=True)
    except ValidationFailed as failed:
        errors |= failed.errors
        text = ""
    try:
        changed = _validated(session, clarification, prospectus, answers, complete=True)
    except ValidationFailed as failed:
        errors |= failed.errors
        changed = {}
    certifier = None
    if sign_off_required(prospectus):
        certifier = session.get(User, certifier_id) if certifier_id else None
        if (
            certifier is None
            or certifier.role != signoff.CERTIFIER
            or certifier.council_code != application.council_code
        ):
            errors["certifier"] = "Choose your council’s certifier"
    if errors:
        raise ValidationFailed(errors)
    clarification.draft = changed
    clarification.explanation = text
    clarification.version += 1
    clarification.answered_by = actor
    if certifier is not None:
        clarification.state = AWAITING_SIGN_OFF
        session.add(clarification)
        record_application(
            session,
            application,
            "clarification_sent_for_sign_off",
            actor,
            now,
            f"clarification {clarification.id}: reply sent to {certifier.name} "
            f"({certifier.email}) for sign-off",
        )
        session.flush()
        return clarification
    return _answer(session, clarification, application, actor, now)


def _answer(
    session: Session,
    clarification: Clarification,
    application: Application,
    actor: str,
    now: datetime,
) -> Clarification:
    """Answered: the changed answers kept beside the original, and put in the application's
    form. Persists both and an audit event."""
    lock_for_update(session, application)
    changed = dict(clarification.draft)
    clarification.changed = changed
    clarification.state = ANSWERED
    clarification.answered_at = now
    session.add(clarification)
    stage: Stage = "bid" if clarification.stage == "bid" else "eoi"
    updated = dict(answers_of(application, stage))
    for key in clarification.question_ids:
        if changed.get(key) is None:
            updated.pop(key, None)
        else:
            updated[key] = changed[key]
    differ = [
        k for k in clarification.question_ids if changed.get(k) != clarification.original.get(k)
    ]
    if stage == "eoi":
        application.eoi_answers = updated
        application.eoi_version += 1
    else:
        application.bid_answers = updated
        application.bid_version += 1
    prospectus = _prospectus(session, application)
    support = prospectus.support_question()
    if support is not None and support in differ and updated.get(support) is not None:
        application.support_requested_pence = money_to_pence(parse_money(updated[support]))
    session.add(application)
    record_application(
        session,
        application,
        "clarification_answered",
        actor,
        now,
        f"clarification {clarification.id} answered; changed: {', '.join(differ) or 'nothing'}",
    )
    session.flush()
    return clarification


def approve(
    session: Session, *, clarification: Clarification, certifier: User, now: datetime
) -> Clarification:
    """The council's certifier approves a reply waiting for sign-off, which answers it (before
    the date to answer by only)."""
    lock_for_update(session, clarification)
    application = _application(session, clarification)
    if clarification.state != AWAITING_SIGN_OFF:
        raise ClarificationRefused("this reply is not waiting for sign-off")
    if certifier.role != signoff.CERTIFIER or certifier.council_code != application.council_code:
        raise ClarificationRefused("only the council’s certifier may sign it off")
    if now >= clarification.answer_by:
        raise ClarificationRefused("the date to answer by has passed")
    return _answer(session, clarification, application, certifier.email, now)


def _round(session: Session, clarification: Clarification) -> Round:
    round_ = session.get(Round, clarification.round_id)
    assert round_ is not None
    return round_


def _application(session: Session, clarification: Clarification) -> Application:
    application = session.get(Application, clarification.application_id)
    assert application is not None
    return application


# ---------------------------------------------------------------------------------------------
# reminders and lapses, by the scheduled run


@dataclass
class Due:
    """What a run of `due` did: the requests it reminded and those it lapsed."""

    reminded: list[Clarification]
    lapsed: list[Clarification]


def due(session: Session, *, round_: Round, now: datetime, actor: str) -> Due:
    """Remind once each pending request whose reminder moment has come, and lapse each past its
    date to answer by. Run again, it does nothing more. Persists the changes and their audit
    events."""
    pending = list(
        session.exec(
            select(Clarification)
            .where(
                Clarification.round_id == round_.id,
                col(Clarification.state).in_(PENDING),
            )
            .order_by(col(Clarification.id))
        )
    )
    done = Due([], [])
    for clarification in pending:
        application = _application(session, clarification)
        if now >= clarification.answer_by:
            lock_for_update(session, clarification)
            if clarification.state not in PENDING:
                continue
            clarification.state = LAPSED
            clarification.lapsed_at = now
            session.add(clarification)
            record_application(
                session,
                application,
                "clarification_lapsed",
                actor,
                now,
                f"clarification {clarification.id} lapsed: not answered by its date",
            )
            done.lapsed.append(clarification)
        elif clarification.reminded_at is None and now >= remind_at(clarification):
            if clarification.state != OPEN:
                continue  # the council has replied: its certifier has it
            lock_for_update(session, clarification)
            if clarification.reminded_at is not None:
                continue
            clarification.reminded_at = now
            session.add(clarification)
            record_application(
                session,
                application,
                "clarification_reminded",
                actor,
                now,
                f"clarification {clarification.id}: the council was reminded",
            )
            done.reminded.append(clarification)
    session.flush()
    return done


# ---------------------------------------------------------------------------------------------
# mail


def officers(session: Session, application: Application) -> list[User]:
    """The applicants of the application's councils (its lead and partners), who hear of it."""
    codes = [m.code for m in partnerships.place_of(session, application).councils]
    return list(
        session.exec(
            select(User)
            .where(User.role == "applicant", col(User.council_code).in_(codes))
            .order_by(col(User.id))
        )
    )


def page_link(settings: Settings, clarification: Clarification) -> str:
    """The council's page of the request."""
    return (
        f"{settings.resolved_portal_base_url}/applications/{clarification.application_id}"
        f"/clarifications/{clarification.id}"
    )


def messages(
    session: Session,
    settings: Settings,
    clarification: Clarification,
    kind: str,
    *,
    link: str | None = None,
    to: Sequence[User] | None = None,
) -> list[notify.Message]:
    """The e-mails of one step (`kind`: asked, reminder, lapsed, answered, sign-off)."""
    application = _application(session, clarification)
    prospectus = _prospectus(session, application)
    round_ = _round(session, clarification)
    place = partnerships.place_of(session, application).name
    labels = [q.label for q in questions_named(prospectus, clarification)]
    context: dict[str, Any] = {
        "place": place,
        "round": round_.title,
        "reference": application.reference,
        "question": clarification.question,
        "questions": labels,
        "answer_by": local_deadline(clarification.answer_by, prospectus),
        "link": link or page_link(settings, clarification),
    }
    if to is not None:
        recipients = list(to)
    elif kind == "answered":
        recipients = list(
            session.exec(select(User).where(User.email == clarification.asked_by))
        ) or [User(email=clarification.asked_by, name=clarification.asked_by, role="")]
    elif kind == "sign-off":
        recipients = signoff.certifiers(session, application.council_code)
    else:
        recipients = officers(session, application)
    return [
        notify.compose(
            settings.templates_dir,
            f"clarification-{kind}",
            to=user.email,
            name=user.name,
            explanation=clarification.explanation,
            **context,
        )
        for user in recipients
    ]


def tell(
    session: Session,
    settings: Settings,
    clarification: Clarification,
    kind: str,
    *,
    now: datetime,
    link: str | None = None,
    to: Sequence[User] | None = None,
) -> list[notify.Message]:
    """Mail one step of a request from a page: without SMTP into the outbox, in the request's
    transaction; with SMTP the messages are returned, for `notify.deliver` once it has
    committed."""
    found = messages(session, settings, clarification, kind, link=link, to=to)
    return [
        message
        for message in found
        if notify.send_after_commit(message, settings=settings, session=session, now=now)
    ]
