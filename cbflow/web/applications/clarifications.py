"""A clarification request as its council answers it: the question beside the answers it names,
with fields to change only those, an explanation, a save to come back to (refused when someone
else saved since the page was drawn) and the reply (sent to the certifier first, where the
prospectus asks for sign-off of clarifications)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, select
from starlette.datastructures import FormData

from cbflow.errors import ValidationFailed
from cbflow.formatting import local_deadline
from cbflow.models import Application, Clarification, Round, User
from cbflow.prospectus import Prospectus, Question
from cbflow.services import clarifications, partnerships, rounds, signoff
from cbflow.services import councils as councils_service
from cbflow.services.clarifications import ClarificationRefused, StaleReply
from cbflow.web import forms_ui
from cbflow.web.answers import answer_view
from cbflow.web.applications.shared import Applicant, own_application
from cbflow.web.clarifying import RequestView, mail_after_all, request_views
from cbflow.web.deps import ClockDep, FormDep, PagesDep, SessionDep, SettingsDep
from cbflow.web.templating import Pages, errors_as_list, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/applications")

NOTICE = "clarification_notice"  # a one-off message for the next page, kept in the session
VERSION = "version"


@dataclass(frozen=True)
class Named:
    """A question asked about: its answer as submitted, and its field."""

    label: str
    original: dict[str, Any]  # cbflow.web.answers.answer_view
    field: forms_ui.Field


@dataclass(frozen=True)
class ClarificationPage:
    application: Application
    round: Round
    place: str
    asked: RequestView
    editable: bool  # open, and its date not passed
    named: tuple[Named, ...]
    explanation: str
    explanation_limit: int
    version: int
    sign_off: bool  # the reply goes to the certifier
    certifiers: tuple[dict[str, Any], ...]  # radio items
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    notice: str | None


class Reply:
    """The application's request, as the council's page has it."""

    def __init__(
        self, session: Session, user: User, application_id: int, clarification_id: int
    ) -> None:
        self.application = own_application(session, user, application_id)
        found = session.get(Clarification, clarification_id)
        if found is None or found.application_id != self.application.id:
            raise HTTPException(status_code=404)
        self.session = session
        self.clarification = found
        round_ = session.get(Round, found.round_id)
        assert round_ is not None
        self.round = round_
        self.prospectus: Prospectus = rounds.prospectus_of(round_)
        self.questions: list[Question] = clarifications.questions_named(self.prospectus, found)

    def raw(self) -> dict[str, Any]:
        """What the fields show: the draft saved, else the answers as submitted."""
        kept = self.clarification.draft
        given = self.clarification.original
        return {
            q.id: forms_ui.to_raw(q, kept[q.id] if q.id in kept else given.get(q.id))
            for q in self.questions
        }

    def address(self, request: Request) -> str:
        return path_for(
            request,
            "clarification_page",
            application_id=self.application.id,
            clarification_id=self.clarification.id,
        )


def _render(
    request: Request,
    pages: Pages,
    reply: Reply,
    now: datetime,
    *,
    raw: dict[str, Any] | None = None,
    explanation: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    problem: str | None = None,
) -> Response:
    session, clarification = reply.session, reply.clarification
    raw = raw if raw is not None else reply.raw()
    errors = errors or {}
    asks = forms_ui.asks_for_council(reply.questions)
    councils = councils_service.council_choices(session) if asks else []
    names = councils_service.council_names(session)
    named = tuple(
        Named(
            label=q.label,
            original=answer_view(q, clarification.original.get(q.id), names),
            field=forms_ui.field_for(
                q,
                raw.get(q.id),
                forms_ui.field_message(q, errors[q.id]) if q.id in errors else None,
                councils,
                name=q.id,
                hint=q.hint,
            ),
        )
        for q in reply.questions
    )
    sign_off = clarifications.sign_off_required(reply.prospectus)
    choices = signoff.certifiers(session, reply.application.council_code) if sign_off else []
    notice = request.session.pop(NOTICE, None)
    page = ClarificationPage(
        application=reply.application,
        round=reply.round,
        place=partnerships.place_of(session, reply.application).name,
        asked=request_views(session, reply.prospectus, [clarification], asker=False)[0],
        editable=clarification.state == clarifications.OPEN and now < clarification.answer_by,
        named=named,
        explanation=explanation if explanation is not None else clarification.explanation,
        explanation_limit=clarifications.EXPLANATION_LIMIT,
        version=clarification.version,
        sign_off=sign_off,
        certifiers=tuple(
            {"value": str(c.id), "text": c.name, "hint": {"text": c.email}} for c in choices
        ),
        errors=errors,
        error_list=errors_as_list(
            {forms_ui.error_anchor(q): errors[q.id] for q in reply.questions if q.id in errors}
            | {k: v for k, v in errors.items() if k in ("explanation", "certifier")}
        ),
        problem=problem,
        notice=notice if isinstance(notice, str) else None,
    )
    return pages.show(request, "application/clarification.html", page, status_code)


@router.get("/{application_id}/clarifications/{clarification_id}")
def clarification_page(
    request: Request,
    application_id: int,
    clarification_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    reply = Reply(session, user, application_id, clarification_id)
    return _render(request, pages, reply, clock())


def _read(reply: Reply, posted: FormData) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The posted answers to the named questions: as typed (raw), as answers, and the errors
    of those that cannot be answers."""
    raw, answers, errors = {}, {}, {}
    for question in reply.questions:
        raw[question.id] = forms_ui.read_raw(question, posted)
        try:
            answers[question.id] = forms_ui.from_raw(question, raw[question.id])
        except forms_ui.Unreadable as exc:
            errors[question.id] = f"{question.label}: {exc}"
    return raw, answers, errors


def _int(value: object) -> int | None:
    text = value if isinstance(value, str) else ""
    return int(text) if text.isdigit() and len(text) < 10 else None


@router.post("/{application_id}/clarifications/{clarification_id}")
def reply_clarification(
    request: Request,
    application_id: int,
    clarification_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    posted: FormDep,
) -> Response:
    reply = Reply(session, user, application_id, clarification_id)
    now = clock()
    action = str(posted.get("action") or "save")[:100]
    raw, answers, errors = _read(reply, posted)
    text = posted.get("explanation")
    explanation = text if isinstance(text, str) else ""
    if len(explanation) > clarifications.EXPLANATION_LIMIT:
        limit = clarifications.EXPLANATION_LIMIT
        errors["explanation"] = f"Your explanation must be {limit:,} characters or fewer"
        explanation = explanation[:limit]

    def again(status: int, problem: str | None = None, **kept: Any) -> Response:
        return _render(request, pages, reply, now, status_code=status, problem=problem, **kept)

    if action.startswith(("add:", "remove:")):  # a table's buttons, without JavaScript
        verb, _, target = action.partition(":")
        question_id, _, index = target.partition(":")
        rows = raw.get(question_id)
        if isinstance(rows, list):
            row = _int(index)
            if verb == "add":
                rows.append({})
            elif row is not None and row < len(rows):
                rows.pop(row)
        return again(200, raw=raw, explanation=explanation)
    if errors:
        return again(400, raw=raw, explanation=explanation, errors=errors)
    version = _int(posted.get(VERSION))
    submit = action == "submit"
    clarification = reply.clarification
    try:
        if submit:
            clarifications.reply(
                session,
                clarification=clarification,
                answers=answers,
                explanation=explanation,
                version=-1 if version is None else version,
                actor=user.email,
                now=now,
                certifier_id=_int(posted.get("certifier")),
            )
        else:
            clarifications.save_draft(
                session,
                clarification=clarification,
                answers=answers,
                explanation=explanation,
                version=-1 if version is None else version,
                actor=user.email,
                now=now,
            )
    except ValidationFailed as failed:
        return again(400, raw=raw, explanation=explanation, errors=failed.errors)
    except StaleReply as exc:
        session.rollback()
        session.refresh(clarification)
        return again(409, problem=str(exc))
    except ClarificationRefused as exc:
        return again(409, problem=opening(f"{exc}: nothing was saved."))
    place = partnerships.place_of(session, reply.application).name
    if not submit:
        request.session[NOTICE] = "Your reply has been saved. You can come back to it later."
        return RedirectResponse(reply.address(request), status_code=303)
    deadline = local_deadline(clarification.answer_by, reply.prospectus)
    if clarification.state == clarifications.AWAITING_SIGN_OFF:
        certifier = session.get(User, _int(posted.get("certifier")))
        mail = clarifications.tell(
            session,
            settings,
            clarification,
            "sign-off",
            now=now,
            to=[certifier] if certifier else None,
            link=settings.resolved_portal_base_url
            + path_for(request, "clarification_sign_off_page", clarification_id=clarification.id),
        )
        request.session[NOTICE] = (
            f"Your reply has been sent to {certifier.name if certifier else 'your certifier'} "
            f"to sign off. It reaches the assessors once they approve it, by {deadline}."
        )
    else:
        mail = clarifications.tell(
            session,
            settings,
            clarification,
            "answered",
            now=now,
            link=_asker_link(request, session, settings.resolved_portal_base_url, reply),
        )
        request.session[NOTICE] = (
            f"Your reply has been sent: {place}’s changed answers are now those of its "
            f"{'bid' if clarification.stage == 'bid' else 'expression of interest'}."
        )
    return mail_after_all(RedirectResponse(reply.address(request), status_code=303), mail, settings)


def _asker_link(request: Request, session: Session, base: str, reply: Reply) -> str:
    """Where the person who asked reads the reply: their scoring page, or staff's page of the
    application."""
    asker = session.exec(select(User).where(User.email == reply.clarification.asked_by)).first()
    if asker is not None and asker.role == "assessor":
        return base + path_for(request, "scoring_page", application_id=reply.application.id)
    return base + path_for(
        request,
        "application_page",
        slug=reply.round.slug,
        application_id=reply.application.id,
    )
