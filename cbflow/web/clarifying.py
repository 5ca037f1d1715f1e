"""What the pages of clarification requests share: the form that asks one (an assessor's and
staff's), scheduling its reminder and lapse, and a request as assessors and staff read it
(the question, and once answered the original and changed answers side by side)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi.responses import Response
from sqlmodel import Session
from starlette.background import BackgroundTasks
from starlette.datastructures import FormData

from cbflow import notify
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.flowlist import CLARIFICATIONS_DUE
from cbflow.formatting import local_deadline, local_time
from cbflow.models import Application, Clarification, User
from cbflow.prospectus import Prospectus
from cbflow.services import clarifications
from cbflow.services.councils import council_names
from cbflow.settings import Settings
from cbflow.web.answers import answer_view
from cbflow.web.deps import in_own_thread
from cbflow.web.templating import errors_as_list

DATE_PARTS = ("day", "month", "year")


@dataclass(frozen=True)
class AskForm:
    """The form asking a council for clarification: its questions as checkboxes, the question
    and the date to answer by, as typed."""

    items: tuple[dict[str, Any], ...]
    question: str
    day: str
    month: str
    year: str
    limit: int
    errors: dict[str, str]
    error_list: list[dict[str, str]]


@dataclass(frozen=True)
class Asked:
    """What was typed into the form, read and bounded."""

    question_ids: list[str]
    question: str
    parts: dict[str, str]
    answer_by: datetime | None
    errors: dict[str, str]


def ask_form(
    prospectus: Prospectus, asked: Asked | None = None, errors: dict[str, str] | None = None
) -> AskForm:
    chosen = set(asked.question_ids) if asked else set()
    items = tuple(
        {"value": q.id, "text": q.label, "checked": q.id in chosen}
        for q in clarifications.askable_questions(prospectus)
    )
    errors = errors or {}
    parts = asked.parts if asked else {}
    return AskForm(
        items=items,
        question=asked.question if asked else "",
        day=parts.get("day", ""),
        month=parts.get("month", ""),
        year=parts.get("year", ""),
        limit=clarifications.QUESTION_LIMIT,
        errors=errors,
        error_list=errors_as_list(errors),
    )


def read_ask(posted: FormData, prospectus: Prospectus) -> Asked:
    """The posted form, each value bounded before it is looked at: a question past its limit,
    or a date that is no date, is an error at its field."""
    errors: dict[str, str] = {}
    chosen = posted.getlist("questions")[: clarifications.QUESTIONS_AT_MOST + 1]
    question_ids = [v[:200] for v in chosen if isinstance(v, str)]
    question = posted.get("question")
    text = question if isinstance(question, str) else ""
    if len(text) > clarifications.QUESTION_LIMIT:
        errors["question"] = (
            f"Your question must be {clarifications.QUESTION_LIMIT:,} characters or fewer"
        )
    parts = {}
    for part in DATE_PARTS:
        value = posted.get(f"answer_by-{part}")
        parts[part] = value.strip()[:10] if isinstance(value, str) else ""
    answer_by = None
    if not any(parts.values()):
        errors["answer_by"] = "Enter the date the council must answer by"
    else:
        try:
            day = date(int(parts["year"]), int(parts["month"]), int(parts["day"]))
            # the end of the day chosen, in the round's time zone: it shows as "midnight at
            # the end of" that day
            answer_by = datetime.combine(day + timedelta(days=1), time(0), tzinfo=prospectus.zone)
        except (ValueError, OverflowError):
            errors["answer_by"] = "Enter a real date, with a day, month and year"
    return Asked(question_ids, text, parts, answer_by, errors)


def ask(
    session: Session, application: Application, user: User, asked: Asked, now: datetime
) -> Clarification:
    """Ask, or raise ValidationFailed (every error of the form the page finds, else the
    service's) or ClarificationRefused; nothing is saved unless it is asked."""
    errors = dict(asked.errors)
    if not asked.question_ids:
        errors["questions"] = "Select the questions you are asking about"
    if not asked.question.strip() and "question" not in errors:
        errors["question"] = "Enter your question for the council"
    if errors or asked.answer_by is None:
        raise ValidationFailed(errors)
    return clarifications.ask(
        session,
        application=application,
        asker=user,
        question_ids=asked.question_ids,
        question=asked.question,
        answer_by=asked.answer_by,
        now=now,
    )


def schedule(settings: Settings, clarification: Clarification, slug: str) -> str | None:
    """Ask Prefect for the round's two runs of the request: at its reminder and at its date to
    answer by. Returns what to tell the person when Prefect could not be reached (the request
    stands: any later run of the round's requests reminds and lapses it), else None."""
    if not settings.resolved_prefect_api_url:  # not connected: say so without loading Prefect
        return _unscheduled("the portal is not connected to a Prefect server")
    from flows.deployments import schedule_once

    moments = {
        "reminder": clarifications.remind_at(clarification),
        "lapse": clarification.answer_by,
    }
    try:
        for what, when in moments.items():
            key = f"clarification-{clarification.id}-{what}"
            schedule_once(settings, CLARIFICATIONS_DUE, slug, when, key)
    except CbflowError as exc:  # FlowsUnavailable among them
        return _unscheduled(str(exc))
    return None


def _unscheduled(why: str) -> str:
    return (
        f"The request was sent, but its reminder and its lapse could not be scheduled: {why}. "
        f"Ask an administrator to run “{CLARIFICATIONS_DUE.title}” for the round once the date "
        "to answer by has passed."
    )


def mail_after_all(
    response: Response, messages: Sequence[notify.Message], settings: Settings
) -> Response:
    """Mail `messages` once `response` has gone (the route's transaction has committed)."""
    if messages:
        after = BackgroundTasks()
        for message in messages:
            after.add_task(in_own_thread, notify.deliver, message, settings)
        response.background = after
    return response


# ---------------------------------------------------------------------------------------------
# a request as assessors and staff read it


@dataclass(frozen=True)
class AnswerPair:
    """One named question: its answer as submitted and as the council changed it."""

    label: str
    original: dict[str, Any]  # cbflow.web.answers.answer_view
    changed: dict[str, Any] | None  # None until answered
    differs: bool


@dataclass(frozen=True)
class RequestView:
    id: int
    state: str  # in words
    pending: bool
    answered: bool
    replied: bool  # answered, or the reply waits for sign-off: both versions can be shown
    question: tuple[str, ...]  # its lines
    asked: str  # "by ann@... at 10:00 on 12 December 2011 (GMT)"
    answer_by: str
    explanation: tuple[str, ...]
    answered_at: str
    pairs: tuple[AnswerPair, ...]


def request_views(
    session: Session,
    prospectus: Prospectus,
    found: Sequence[Clarification],
    *,
    asker: bool = True,
) -> tuple[RequestView, ...]:
    """The requests as a page shows them; without `asker` (the council's pages) nobody learns
    which assessor asked."""
    names = council_names(session)
    views = []
    for clarification in found:
        answered = clarification.state == clarifications.ANSWERED
        # the reply waiting for sign-off is read as it will stand
        replied = answered or clarification.state == clarifications.AWAITING_SIGN_OFF
        reply = clarification.changed if answered else clarification.draft
        pairs = []
        for question in clarifications.questions_named(prospectus, clarification):
            before = clarification.original.get(question.id)
            after = reply.get(question.id) if replied else None
            pairs.append(
                AnswerPair(
                    label=question.label,
                    original=answer_view(question, before, names),
                    changed=answer_view(question, after, names) if replied else None,
                    differs=replied and after != before,
                )
            )
        assert clarification.id is not None
        views.append(
            RequestView(
                id=clarification.id,
                state=clarifications.STATE_NAMES.get(clarification.state, clarification.state),
                pending=clarification.state in clarifications.PENDING,
                answered=answered,
                replied=replied,
                question=tuple(clarification.question.splitlines()),
                asked=(f"by {clarification.asked_by} at " if asker else "at ")
                + local_time(clarification.asked_at, prospectus),
                answer_by=local_deadline(clarification.answer_by, prospectus),
                explanation=tuple(clarification.explanation.splitlines()) if replied else (),
                answered_at=local_time(clarification.answered_at, prospectus)
                if clarification.answered_at
                else "",
                pairs=tuple(pairs),
            )
        )
    return tuple(views)
