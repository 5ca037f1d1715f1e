"""The rolling adoption route for staff: the round's adoptions through it, each with what the
council changes, its partners and readiness, and how long it took; staff approve one (its
implementation starts, with the model's milestones moved to its start) or return it with a
reason. No scoring. The council is told either way by e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow import notify
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline, local_time, long_date
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Round
from cbflow.prospectus import Prospectus
from cbflow.services import adoption_route as route
from cbflow.services import rounds
from cbflow.settings import Settings
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    mail_after,
)
from cbflow.web.staff.shared import (
    RoundPage,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.templating import Pages, path_for

router = stage_router()


@dataclass(frozen=True)
class AdoptionRow:
    application: Application
    council: str
    model: str  # "Birmingham's model, version 2"
    started: str
    submitted: str
    state: str
    changes: str
    partners: str
    readiness: str
    typed: str  # "3 of 6 answers typed"
    minutes: str  # "12.5 minutes", or ""
    can_decide: bool
    error: str | None  # the return's reason, when it was refused
    reason: str


@dataclass(frozen=True, kw_only=True)
class AdoptionsPage(RoundPage):
    route_open: bool
    window: str
    rows: list[AdoptionRow]
    errors: dict[str, str]


def _window(prospectus: Prospectus) -> str:
    window = route.route_window(prospectus)
    if window is None:
        return ""
    opens = long_date(window.opens_at(prospectus.zone).date())
    return f"from {opens} until {local_deadline(window.closes_at(prospectus.zone), prospectus)}"


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    round_: Round,
    now: Any,
    *,
    errors: dict[int, str] | None = None,
    reasons: dict[int, str] | None = None,
    status_code: int = 200,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    errors, reasons = errors or {}, reasons or {}
    rows = []
    for application in route.waiting(session, round_):
        assert application.id is not None
        model = route.model_of(session, application)
        council = session.get(Council, application.council_code)
        measure = route.measure(session, application)
        assert council is not None and measure is not None
        answers = application.eoi_answers
        rows.append(
            AdoptionRow(
                application=application,
                council=council.name,
                model=f"{model.bundle['council']['name']}'s model, version {model.version}",
                started=local_time(application.created_at, prospectus),
                submitted=(
                    local_time(application.eoi_submitted_at, prospectus)
                    if application.eoi_submitted_at
                    else ""
                ),
                state=APP_STATES.get(application.state, application.state),
                changes=str(answers.get(route.CHANGES, "")),
                partners=str(answers.get(route.PARTNERS, "")),
                readiness=" ".join(
                    str(answers[k]) for k in (route.READINESS, route.READINESS_NOTE) if k in answers
                ),
                typed=f"{measure.typed} of {measure.questions} answers typed",
                minutes=f"{measure.minutes} minutes" if measure.minutes else "",
                can_decide=application.state == AppState.ADOPTION_SUBMITTED,
                error=errors.get(application.id),
                reason=reasons.get(application.id, ""),
            )
        )
    page = AdoptionsPage(
        **round_header(request, round_, prospectus, "adoptions"),
        route_open=route.route_open(prospectus, now),
        window=_window(prospectus),
        rows=rows,
        errors={f"reason-{k}": v for k, v in errors.items()},
    )
    return pages.show(request, "staff/adoptions.html", page, status_code)


@router.get("/rounds/{slug}/adoptions")
def adoptions_page(
    request: Request,
    slug: str,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    return _render(request, pages, session, round_, clock())


def _adoption(session: Session, round_: Round, application_id: int) -> Application:
    application = application_or_404(session, round_, application_id)
    if application.route != route.ROUTE:
        raise HTTPException(status_code=404)
    return application


def _tell(
    request: Request,
    session: Session,
    settings: Settings,
    application: Application,
    template: str,
    now: Any,
    **context: Any,
) -> notify.Message | None:
    """E-mail whoever submitted the adoption what staff decided (through the outbox without
    SMTP, in this transaction)."""
    to = route.submitted_by(session, application)
    if not to:
        return None
    model = route.model_of(session, application)
    round_ = session.get(Round, application.round_id)
    council = session.get(Council, application.council_code)
    assert round_ is not None and council is not None
    message = notify.compose(
        settings.templates_dir,
        template,
        to=to,
        council=council.name,
        place=model.bundle["council"]["name"],
        round=round_.title,
        reference=application.reference,
        link=settings.resolved_portal_base_url
        + path_for(request, "adoption_page", application_id=application.id),
        **context,
    )
    return notify.send_after_commit(message, settings=settings, session=session, now=now)


@router.post("/rounds/{slug}/adoptions/{application_id}/approve")
def approve_adoption(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    application = _adoption(session, round_, application_id)
    now = clock()
    try:
        milestones = route.approve(session, application=application, actor=user.email, now=now)
    except CbflowError as exc:
        return _render(
            request, pages, session, round_, now, errors={application_id: str(exc)}, status_code=409
        )
    listed = "\n".join(f"- {m.title}: due {long_date(m.due)}" for m in milestones)
    mail = _tell(
        request,
        session,
        settings,
        application,
        "adoption-approved",
        now,
        milestones=listed or "- none",
    )
    return mail_after(
        RedirectResponse(path_for(request, "adoptions_page", slug=slug), status_code=303),
        mail,
        settings,
    )


@router.post("/rounds/{slug}/adoptions/{application_id}/return")
def return_adoption(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    user: Staff,
    reason: ReasonField = "",
) -> Response:
    round_ = round_or_404(session, slug)
    application = _adoption(session, round_, application_id)
    now = clock()
    try:
        route.return_to_council(
            session, application=application, reason=reason, actor=user.email, now=now
        )
    except ValidationFailed as failed:
        return _render(
            request,
            pages,
            session,
            round_,
            now,
            errors={application_id: failed.errors["reason"]},
            status_code=400,
        )
    except CbflowError as exc:
        return _render(
            request, pages, session, round_, now, errors={application_id: str(exc)}, status_code=409
        )
    mail = _tell(request, session, settings, application, "adoption-returned", now, reason=reason)
    return mail_after(
        RedirectResponse(path_for(request, "adoptions_page", slug=slug), status_code=303),
        mail,
        settings,
    )
