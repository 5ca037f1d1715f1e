"""A council certifier's pages: the applications sent to them for sign-off, each read whole, then
approved (which submits it) or returned to the council with a reason.

A certifier sees only what was sent to them: any other application is 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session
from starlette.background import BackgroundTasks

from cbflow import notify
from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.forms import display_answer, is_shown
from cbflow.models import Application, Council, Round, User
from cbflow.prospectus import Prospectus
from cbflow.services import applications as service
from cbflow.services import councils as councils_service
from cbflow.services import deadlines, partnerships, rounds, signoff
from cbflow.services.applications import STAGE_NAMES, Stage
from cbflow.services.partnerships import Place
from cbflow.settings import Settings
from cbflow.web.applications.submit import ask_for_receipt
from cbflow.web.auth import require_role
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    ShortField,
    in_own_thread,
    mail_after,
)
from cbflow.web.templating import Pages, errors_as_list, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/sign-off")

Certifier = Annotated[User, require_role(signoff.CERTIFIER)]
NOTICE = "sign_off_notice"


@dataclass(frozen=True)
class Waiting:
    href: str
    place: str
    round: str
    stage_name: str
    requested: str
    warning: str | None


@dataclass(frozen=True)
class SignOffList:
    council: str
    waiting: tuple[Waiting, ...]
    notice: str | None


@dataclass(frozen=True)
class AnswerSection:
    title: str
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SignOffPage:
    application: Application
    stage: Stage
    stage_name: str
    round: Round
    place: Place
    role: str
    council: str
    requested: str
    waiting: bool  # still to answer; otherwise answered already (read only)
    warning: str | None
    closed: bool
    deadline: str
    forms: tuple[tuple[str, tuple[AnswerSection, ...]], ...]  # (form's name, its sections)
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    reason: str


def _mine(session: Session, user: User, application_id: int) -> Application:
    application = session.get(Application, application_id)
    if application is None or application.certifier_id != user.id:
        raise HTTPException(status_code=404)
    return application


def _sections(
    session: Session, prospectus: Prospectus, application: Application, stage: Stage
) -> tuple[AnswerSection, ...]:
    names = councils_service.council_names(session)
    answers = application.eoi_answers if stage == "eoi" else application.bid_answers
    sections = []
    for section in service.form_of(prospectus, stage).sections:
        rows = tuple(
            {
                "key": {"text": question.label},
                "value": {
                    "html": Markup("<br>").join(
                        display_answer(question, answers.get(question.id), names).splitlines()
                        or ["Not answered"]
                    )
                },
            }
            for question in section.questions
            if is_shown(question, answers)
        )
        sections.append(AnswerSection(section.title, rows))
    return tuple(sections)


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    application: Application,
    stage: Stage,
    now: datetime,
    *,
    errors: dict[str, str] | None = None,
    reason: str = "",
    status_code: int = 200,
) -> Response:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = rounds.prospectus_of(round_)
    if not service.has_stage(application, stage) or not signoff.required(prospectus, stage):
        raise HTTPException(status_code=404)
    closes = deadlines.closes_for(session, application, stage)
    actions = service.applicant_actions(prospectus, application, stage, now, closes)
    council = session.get(Council, application.council_code)
    forms: list[tuple[str, tuple[AnswerSection, ...]]] = []
    if stage == "bid":  # the whole application: the expression of interest it grew from too
        forms.append((STAGE_NAMES["eoi"], _sections(session, prospectus, application, "eoi")))
    forms.insert(0, (STAGE_NAMES[stage], _sections(session, prospectus, application, stage)))
    errors = errors or {}
    page = SignOffPage(
        application=application,
        stage=stage,
        stage_name=STAGE_NAMES[stage],
        round=round_,
        place=partnerships.place_of(session, application),
        role=signoff.role_asked(prospectus),
        council=council.official_name if council else application.council_code,
        requested=signoff.requested_words(prospectus, application),
        waiting=signoff.waiting(application, stage),
        warning=signoff.deadline_warning(prospectus, application, stage, now, closes),
        closed=actions.closed,
        deadline=actions.deadline,
        forms=tuple(forms),
        errors=errors,
        error_list=errors_as_list(errors),
        reason=reason,
    )
    return pages.show(request, "sign-off/application.html", page, status_code)


def _tell_sender(
    request: Request,
    session: Session,
    settings: Settings,
    application: Application,
    stage: Stage,
    template: str,
    now: datetime,
    **context: Any,
) -> notify.Message | None:
    """Mail whoever sent it for sign-off what the certifier decided."""
    sender = application.sign_off_requested_by
    if not sender:
        return None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    page = "check_answers" if template == "sign-off-returned" else "application_home"
    params: dict[str, object] = {"application_id": application.id}
    if page == "check_answers":
        params["stage"] = stage
    message = notify.compose(
        settings.templates_dir,
        template,
        to=sender,
        place=partnerships.place_of(session, application).name,
        stage_name=STAGE_NAMES[stage],
        round=round_.title,
        reference=application.reference,
        link=settings.resolved_portal_base_url + path_for(request, page, **params),
        **context,
    )
    return notify.send_after_commit(message, settings=settings, session=session, now=now)


@router.get("")
def sign_off_home(
    request: Request, user: Certifier, session: SessionDep, pages: PagesDep, clock: ClockDep
) -> Response:
    now = clock()
    council = session.get(Council, user.council_code) if user.council_code else None
    listed = []
    for application in signoff.awaiting(session, user):
        stage = signoff.stage_waiting(application)
        assert stage is not None
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        prospectus = rounds.prospectus_of(round_)
        listed.append(
            Waiting(
                href=path_for(request, "sign_off_page", application_id=application.id, stage=stage),
                place=partnerships.place_of(session, application).name,
                round=round_.title,
                stage_name=STAGE_NAMES[stage],
                requested=opening(signoff.requested_words(prospectus, application)),
                warning=signoff.deadline_warning(
                    prospectus,
                    application,
                    stage,
                    now,
                    deadlines.closes_for(session, application, stage),
                ),
            )
        )
    page = SignOffList(
        council=council.name if council else "",
        waiting=tuple(listed),
        notice=request.session.pop(NOTICE, None),
    )
    return pages.show(request, "sign-off/index.html", page)


@router.get("/{application_id}/{stage}")
def sign_off_page(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Certifier,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    application = _mine(session, user, application_id)
    return _render(request, pages, session, application, stage, clock())


@router.post("/{application_id}/{stage}/approve")
def approve_sign_off(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Certifier,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    declaration: ShortField = "",
) -> Response:
    application = _mine(session, user, application_id)
    now = clock()
    if declaration != "agreed":
        errors = {"declaration": "Confirm that you approve it on behalf of the council"}
        return _render(
            request, pages, session, application, stage, now, errors=errors, status_code=400
        )
    try:
        signoff.approve(session, application=application, stage=stage, certifier=user, now=now)
    except DeadlinePassed:
        errors = {"declaration": "The deadline has passed: it can no longer be submitted"}
        return _render(
            request, pages, session, application, stage, now, errors=errors, status_code=400
        )
    except (ValidationFailed, CbflowError) as exc:
        errors = {"declaration": opening(str(exc))}
        return _render(
            request, pages, session, application, stage, now, errors=errors, status_code=409
        )
    mail = _tell_sender(
        request,
        session,
        settings,
        application,
        stage,
        "sign-off-approved",
        now,
        certifier=user.name,
    )
    request.session[NOTICE] = (
        f"You have signed off {partnerships.place_of(session, application).name}’s "
        f"{STAGE_NAMES[stage].lower()}: it is submitted."
    )
    session.commit()  # submitted before it is acknowledged, and before its receipt is asked for
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    after = BackgroundTasks()  # once the answer has gone: the mail, then the receipt's run
    if mail is not None:
        after.add_task(in_own_thread, notify.deliver, mail, settings)
    after.add_task(ask_for_receipt, request, round_.slug, clock)
    answer = RedirectResponse(path_for(request, "sign_off_home"), status_code=303)
    answer.background = after
    return answer


@router.post("/{application_id}/{stage}/return")
def return_sign_off(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Certifier,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    reason: ReasonField = "",
) -> Response:
    application = _mine(session, user, application_id)
    now = clock()
    try:
        signoff.give_back(
            session, application=application, stage=stage, certifier=user, reason=reason, now=now
        )
    except ValidationFailed as failed:
        return _render(
            request,
            pages,
            session,
            application,
            stage,
            now,
            errors=failed.errors,
            reason=reason,
            status_code=400,
        )
    except CbflowError as exc:
        errors = {"reason": opening(str(exc))}
        return _render(
            request, pages, session, application, stage, now, errors=errors, status_code=409
        )
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    deadline = service.applicant_actions(
        rounds.prospectus_of(round_),
        application,
        stage,
        now,
        deadlines.closes_for(session, application, stage),
    ).deadline
    mail = _tell_sender(
        request,
        session,
        settings,
        application,
        stage,
        "sign-off-returned",
        now,
        certifier=user.name,
        reason=reason.strip(),
        deadline=deadline,
    )
    request.session[NOTICE] = (
        f"You have returned {partnerships.place_of(session, application).name}’s "
        f"{STAGE_NAMES[stage].lower()} to the council with your reason."
    )
    return mail_after(
        RedirectResponse(path_for(request, "sign_off_home"), status_code=303), mail, settings
    )
