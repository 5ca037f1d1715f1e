"""The rolling adoption route for council applicants: "Adopt through the rolling route" on a
model's page while its round keeps the route open, and the adoption's light form (one page:
the model's carried-over answers, pre-filled, then what the council changes, its partners and
its readiness), saved as any draft is (a stale save is refused, 409) and submitted for staff to
approve. Only the adopting council sees its adoption; anyone else is answered 404."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline, local_time, long_date
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, PublishedModel, Round, User
from cbflow.prospectus import FileQuestion, Form
from cbflow.services import adoption_route as route
from cbflow.services import councils as councils_service
from cbflow.services import drafts, rounds
from cbflow.services.drafts import EditConflict
from cbflow.services.implementation import milestones_of
from cbflow.web import forms_ui
from cbflow.web.applications.shared import APP_STATES, BUSY, BUSY_ERRORS
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, FormDep, PagesDep, ReasonField, SessionDep
from cbflow.web.forms_ui import Field
from cbflow.web.templating import Pages, path_for

router = APIRouter()
logger = logging.getLogger(__name__)

Applicant = Annotated[User, require_role("applicant")]


@dataclass(frozen=True)
class RouteOffer:
    """What a model's page offers of the rolling route: the council's adoption through it, or
    the button while the route is open and the council may adopt (None: nothing to offer)."""

    adopted: int | None
    closes: str


def offer(
    session: Session, model: PublishedModel, council: Council, now: datetime
) -> RouteOffer | None:
    existing = route.route_adoption(session, model, council.code)
    if existing is not None:
        return RouteOffer(adopted=existing.id, closes="")
    if route.route_refusal(session, model, council, now) is not None:
        return None
    round_ = session.get(Round, model.round_id)
    assert round_ is not None
    prospectus = rounds.prospectus_of(round_)
    window = route.route_window(prospectus)
    assert window is not None
    return RouteOffer(
        adopted=None, closes=local_deadline(window.closes_at(prospectus.zone), prospectus)
    )


@dataclass(frozen=True)
class FormSection:
    title: str
    fields: list[Field]


@dataclass(frozen=True)
class MilestoneRow:
    title: str
    due: str


@dataclass(frozen=True)
class AdoptionPage:
    application: Application
    model: PublishedModel
    place: str  # the place whose model it is
    round: Round
    council: Council
    state: str
    changeable: bool
    can_withdraw: bool
    sections: list[FormSection]
    error_list: list[dict[str, str]]
    shown: dict[str, str]
    problem: str | None
    submitted: str
    closes: str
    milestones: list[MilestoneRow]


def _council_of(session: Session, user: User) -> Council:
    council = session.get(Council, user.council_code) if user.council_code else None
    if council is None:
        raise HTTPException(status_code=403)
    return council


def _own(session: Session, user: User, application_id: int) -> Application:
    """The council's adoption through the route, or 404."""
    application = session.get(Application, application_id)
    if (
        application is None
        or application.route != route.ROUTE
        or application.council_code != user.council_code
    ):
        raise HTTPException(status_code=404)
    return application


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    application: Application,
    now: datetime,
    *,
    raw: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    shown: drafts.Base | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    model = route.model_of(session, application)
    form = route.light_form(session, model)
    round_ = session.get(Round, application.round_id)
    council = session.get(Council, application.council_code)
    assert round_ is not None and council is not None
    prospectus = rounds.prospectus_of(round_)
    stored = route.stored(application)
    if raw is None:
        raw = {q.id: forms_ui.to_raw(q, stored.answers.get(q.id)) for q in form.questions()}
    errors = errors or {}
    shown = shown or drafts.Base(stored.version, drafts.digests(stored.answers, list(raw)))
    asks = forms_ui.asks_for_council(form.questions())
    choices = councils_service.council_choices(session) if asks else ()
    sections = [
        FormSection(s.title, forms_ui.section_fields(s, raw, errors, choices))
        for s in form.sections
    ]
    anchors = {q.id: forms_ui.error_anchor(q) for q in form.questions()}
    window = route.route_window(prospectus)
    editable = application.state == AppState.ADOPTION_DRAFT and route.route_open(prospectus, now)
    page = AdoptionPage(
        application=application,
        model=model,
        place=model.bundle["council"]["name"],
        round=round_,
        council=council,
        state=APP_STATES.get(application.state, application.state),
        changeable=editable,
        can_withdraw=application.state in route.WITHDRAWABLE,
        sections=sections,
        error_list=[{"text": m, "href": f"#{anchors.get(q, q)}"} for q, m in errors.items()],
        shown=forms_ui.carried(shown),
        problem=problem,
        submitted=(
            local_time(application.eoi_submitted_at, prospectus)
            if application.eoi_submitted_at
            else ""
        ),
        closes=local_deadline(window.closes_at(prospectus.zone), prospectus) if window else "",
        milestones=[
            MilestoneRow(m.title, long_date(m.due)) for m in milestones_of(session, application)
        ],
    )
    return pages.show(request, "adoption/form.html", page, status_code)


@router.post("/models/{model_id}/route")
def route_start(
    request: Request,
    model_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    """Adopt the model through the rolling route (or go to the adoption there is)."""
    council = _council_of(session, user)
    model = session.get(PublishedModel, model_id)
    if model is None:
        raise HTTPException(status_code=404)
    try:
        application, _ = route.start(
            session, model_id=model_id, council_code=council.code, actor=user.email, now=clock()
        )
    except CbflowError as exc:
        return pages.render(
            request,
            "error.html",
            status_code=403,
            title="You cannot adopt this model through the rolling route",
            message=f"{council.name} cannot adopt this model through the rolling route: {exc}.",
        )
    return RedirectResponse(
        path_for(request, "adoption_page", application_id=application.id), status_code=303
    )


@router.get("/adoptions/{application_id}")
def adoption_page(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    application = _own(session, user, application_id)
    return _render(request, pages, session, application, clock())


def _read(form: Form, posted: FormDep) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(raw as typed, answers, errors of what cannot be an answer) of every question."""
    raw: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for question in form.questions():
        if isinstance(question, FileQuestion):
            continue
        raw[question.id] = forms_ui.read_raw(question, posted)
        try:
            answers[question.id] = forms_ui.from_raw(question, raw[question.id])
        except forms_ui.Unreadable as exc:
            errors[question.id] = f"{question.label}: {exc}"
    return raw, answers, errors


def _table_action(form: Form, raw: dict[str, Any], action: str) -> None:
    """A table's add or remove button, without JavaScript: the page again, unsaved."""
    verb, _, target = action.partition(":")
    question_id, _, index = target.partition(":")
    rows = raw.get(question_id)
    if isinstance(rows, list) and form.question(question_id) is not None:
        if verb == "add":
            rows.append({})
        elif index.isdigit() and int(index) < len(rows):
            rows.pop(int(index))


@router.post("/adoptions/{application_id}")
def adoption_save(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    posted: FormDep,
) -> Response:
    """Save the light form ("save"), save and submit it ("submit"), or a table's buttons."""
    application = _own(session, user, application_id)
    now = clock()
    form = route.light_form(session, route.model_of(session, application))
    shown = forms_ui.read_base(posted)
    raw, answers, unreadable = _read(form, posted)
    action = str(posted.get("action") or "save")[:200]

    def again(status: int, **extra: Any) -> Response:
        return _render(
            request, pages, session, application, now, raw=raw, status_code=status, **extra
        )

    if action.startswith(("add:", "remove:")):
        _table_action(form, raw, action)
        return again(200, shown=shown)
    if unreadable:
        return again(400, errors=unreadable, shown=shown)
    try:
        route.save(
            session,
            application=application,
            answers=answers,
            questions=list(raw),
            base=shown,
            actor=user.email,
            now=now,
        )
        if action == "submit":
            route.submit(session, application=application, actor=user.email, now=now)
    except ValidationFailed as failed:
        if action == "submit":  # saved, but not complete: the page shows what is missing
            return _render(
                request, pages, session, application, now, errors=failed.errors, status_code=400
            )
        return again(400, errors=failed.errors, shown=shown)
    except EditConflict as conflict:
        session.rollback()
        names = ", ".join(
            q.label for c in conflict.changes if (q := form.question(c.question_id)) is not None
        )
        problem = (
            "Not saved: someone else changed these answers since this page was drawn: "
            f"{names}. The page now shows their answers; make your changes again."
        )
        return _render(request, pages, session, application, now, problem=problem, status_code=409)
    except BUSY_ERRORS:
        session.rollback()
        return again(503, problem=BUSY, shown=shown)
    except CbflowError as exc:
        session.rollback()
        return _render(
            request,
            pages,
            session,
            application,
            now,
            problem=f"Not saved: {exc}.",
            status_code=409,
        )
    return RedirectResponse(
        path_for(request, "adoption_page", application_id=application_id), status_code=303
    )


@router.post("/adoptions/{application_id}/withdraw")
def adoption_withdraw(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    reason: ReasonField = "",
) -> Response:
    """The council withdraws its adoption, before staff approve it."""
    application = _own(session, user, application_id)
    now = clock()
    try:
        route.withdraw(session, application=application, reason=reason, actor=user.email, now=now)
    except CbflowError as exc:
        return _render(
            request, pages, session, application, now, problem=f"{exc}.", status_code=409
        )
    return RedirectResponse(
        path_for(request, "adoption_page", application_id=application_id), status_code=303
    )


@router.post("/adoptions/{application_id}/autosave")
def adoption_autosave(
    application_id: int,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    posted: FormDep,
) -> JSONResponse:
    """What the page's script sends a moment after typing stops: saved as "Save" saves, in
    JSON; a colleague's change to an answer the person changed too is a conflict (409)."""
    application = _own(session, user, application_id)
    now = clock()
    form = route.light_form(session, route.model_of(session, application))
    shown = forms_ui.read_base(posted)
    _, answers, errors = _read(form, posted)
    questions = [q for q in answers if q not in errors]
    try:
        saved = route.save(
            session,
            application=application,
            answers=answers,
            questions=questions,
            base=shown,
            actor=user.email,
            now=now,
        )
    except ValidationFailed as failed:
        return _not_saved(422, "; ".join(failed.errors.values()), failed.errors)
    except EditConflict:
        session.rollback()
        return _not_saved(409, "someone else changed these answers: select Save to see theirs")
    except CbflowError as exc:
        session.rollback()
        return _not_saved(409, str(exc))
    now_shown = drafts.Base(saved.version, {**shown.digests, **saved.digests})
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    message = f"Saved at {local_time(now, rounds.prospectus_of(round_))}"
    if errors:
        message += ", except: " + "; ".join(errors.values())
    return JSONResponse(
        {
            "saved": True,
            "message": message,
            "errors": errors,
            "version": now_shown.version,
            "base": now_shown.encoded(),
        }
    )


def _not_saved(status: int, why: str, errors: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"saved": False, "message": f"Not saved: {why}", "errors": errors or {}},
        status_code=status,
    )
