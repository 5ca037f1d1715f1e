"""An application's stage once filled in: check your answers, the declaration and submission,
the confirmation, and the receipt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session, select
from starlette.background import BackgroundTask

from cbflow import notify
from cbflow.clock import Clock
from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.flowruns import ReceiptBatches
from cbflow.forms import display_answer, is_shown
from cbflow.models import Document
from cbflow.services import applications as service
from cbflow.services import councils as councils_service
from cbflow.services import reopening, signoff
from cbflow.services.applications import Stage
from cbflow.services.documents import receipt_key
from cbflow.web import forms_ui
from cbflow.web.applications.shared import (
    Applicant,
    Context,
    FormPage,
    own_application,
    page_of,
)
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
    in_own_thread,
    mail_after,
)
from cbflow.web.stored import stored_file
from cbflow.web.templating import Pages, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class CheckPage(FormPage):
    sections: list[dict[str, Any]]  # each with its title and GOV.UK summary list rows
    errors: dict[str, str]
    error_list: list[dict[str, str]]


@dataclass(frozen=True)
class SubmittedPage(FormPage):
    receipt: bool  # made already, to download
    version: int  # the version that counts (a form reopened and submitted again: 2, ...)
    replaces: int | None  # the version it replaces


@router.get("/{application_id}/{stage}/check")
def check_answers(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    now = clock()
    return _render_check(request, pages, session, ctx, now=now, closed=ctx.actions(now).closed)


def _render_check(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    *,
    now: datetime,
    closed: bool,
    errors: dict[str, str] | None = None,
    waiting: service.NotReadyToSubmit | None = None,
    status_code: int = 200,
) -> Response:
    """The answers to check and the declaration. `waiting`: what still stops it being
    submitted besides its answers (the partnership, the partners), each linking to the page
    that puts it right."""
    names = councils_service.council_names(session)
    common = ctx.page(now, closed=closed)
    sections = []
    for section in ctx.form.sections:
        rows = []
        for question in section.questions:
            if not is_shown(question, ctx.answers):
                continue
            rows.append(
                {
                    "key": {"text": question.label},
                    "value": {
                        "html": Markup("<br>").join(
                            display_answer(
                                question, ctx.answers.get(question.id), names
                            ).splitlines()
                            or ["Not answered"]
                        )
                    },
                    "actions": {
                        "items": [
                            {
                                "href": ctx.url("section_page", section_id=section.id)
                                + f"#{forms_ui.error_anchor(question)}",
                                "text": "Change",
                                "visuallyHiddenText": question.label.lower(),
                            }
                        ]
                    }
                    if common.actions.open_to_change
                    else {},
                }
            )
        sections.append({"title": section.title, "rows": rows})
    errors = errors or {}
    page = page_of(
        CheckPage,
        common,
        sections=sections,
        errors=errors,
        error_list=[{"text": m, "href": f"#{k}"} for k, m in errors.items()]
        + [
            {"text": opening(text), "href": ctx.url_of_concern(concern)}
            for text, concern in zip(
                waiting.problems if waiting else [],
                waiting.concerns if waiting else [],
                strict=True,
            )
        ],
    )
    return pages.show(request, "application/check.html", page, status_code)


@router.post("/{application_id}/{stage}/submit")
def submit(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    declaration: ShortField = "",
) -> Response:
    application = own_application(session, user, application_id)
    ctx = Context(request, session, application, stage)
    confirmation = RedirectResponse(ctx.url("submitted"), status_code=303)
    now = clock()
    actions = ctx.actions(now)
    if actions.submitted:  # a retried or double-clicked submission: the first one stands
        return confirmation
    if actions.closed:
        return _render_check(request, pages, session, ctx, now=now, closed=True, status_code=400)
    if declaration != "agreed":
        return _render_check(
            request,
            pages,
            session,
            ctx,
            now=now,
            closed=False,
            errors={"declaration": "Confirm that the information you have given is correct"},
            status_code=400,
        )
    try:
        application, _ = service.submit(
            session, application=application, stage=stage, actor=user.email, now=now
        )
    except ValidationFailed as failed:
        return RedirectResponse(_first_problem(ctx, failed), status_code=303)
    except service.SignOffRequired as exc:
        errors = {"declaration": opening(str(exc))}
        return _render_check(
            request, pages, session, ctx, now=now, closed=False, errors=errors, status_code=400
        )
    except (DeadlinePassed, service.NotReadyToSubmit) as refusal:
        return _not_taken(request, pages, session, ctx, now, refusal)
    # the submission is durable before it is acknowledged, and before its receipt is asked for
    session.commit()
    # the receipt is a flow's work: asked for once the answer is on its way, so the person
    # waits neither for Prefect nor for the PDF
    confirmation.background = BackgroundTask(ask_for_receipt, request, ctx.round.slug, clock)
    return confirmation


def _not_taken(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    now: datetime,
    refusal: DeadlinePassed | service.NotReadyToSubmit,
) -> Response:
    """The check page again (400), saying why a submission or a sending for sign-off was not
    taken: the deadline has passed, or something besides the answers is not ready."""
    if isinstance(refusal, DeadlinePassed):
        return _render_check(request, pages, session, ctx, now=now, closed=True, status_code=400)
    return _render_check(
        request, pages, session, ctx, now=now, closed=False, waiting=refusal, status_code=400
    )


def _first_problem(ctx: Context, failed: ValidationFailed) -> str:
    """The first section with a problem, to go back to and put it right."""
    first = next(
        s
        for s in ctx.form.sections
        if {q.id for q in s.questions} & failed.errors.keys() or s is ctx.form.sections[-1]
    )
    return ctx.url("section_page", section_id=first.id) + "?check=1"


@router.post("/{application_id}/{stage}/sign-off")
def send_for_sign_off(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    certifier: ShortField = "",
) -> Response:
    """Send the stage's form, complete, to the certifier chosen, and mail them."""
    application = own_application(session, user, application_id)
    ctx = Context(request, session, application, stage)
    now = clock()
    chosen_id = int(certifier) if certifier.isdigit() and len(certifier) < 10 else None
    try:
        chosen = signoff.send(
            session,
            application=application,
            stage=stage,
            certifier_id=chosen_id,
            actor=user.email,
            now=now,
        )
    except ValidationFailed as failed:
        if "certifier" in failed.errors:
            return _render_check(
                request,
                pages,
                session,
                ctx,
                now=now,
                closed=False,
                errors=failed.errors,
                status_code=400,
            )
        return RedirectResponse(_first_problem(ctx, failed), status_code=303)
    except (DeadlinePassed, service.NotReadyToSubmit) as refusal:
        return _not_taken(request, pages, session, ctx, now, refusal)
    except CbflowError as exc:
        errors = {"certifier": opening(str(exc))}
        return _render_check(
            request, pages, session, ctx, now=now, closed=False, errors=errors, status_code=409
        )
    link = settings.resolved_portal_base_url + path_for(
        request, "sign_off_page", application_id=application.id, stage=stage
    )
    message = notify.compose(
        settings.templates_dir,
        "sign-off-request",
        to=chosen.email,
        name=chosen.name,
        sender=user.name,
        place=ctx.place,
        stage_name=ctx.stage_name,
        round=ctx.round.title,
        role=signoff.role_asked(ctx.prospectus),
        link=link,
        deadline=ctx.actions(now).deadline,
    )
    mail = notify.send_after_commit(message, settings=settings, session=session, now=now)
    return mail_after(RedirectResponse(ctx.url("check_answers"), status_code=303), mail, settings)


async def ask_for_receipt(request: Request, slug: str, clock: Clock) -> None:
    batches: ReceiptBatches = request.app.state.receipt_batches
    now = clock()
    if not batches.asked(slug, now):  # most submissions: asked already, no thread needed
        await in_own_thread(batches.request, slug, now)  # the routes go on while Prefect answers


def _receipt(session: Session, ctx: Context, version: int) -> Document | None:
    """The receipt of the version that counts now."""
    key = receipt_key(ctx.application.reference, ctx.stage, version)
    return session.exec(select(Document).where(Document.key == key)).first()


@router.get("/{application_id}/{stage}/submitted")
def submitted(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    common = ctx.page(clock())
    if not common.actions.can_see_receipt:
        return RedirectResponse(ctx.url("task_list"), status_code=303)
    version = reopening.current_version(session, ctx.application, stage)
    page = page_of(
        SubmittedPage,
        common,
        receipt=_receipt(session, ctx, version) is not None,
        version=version,
        replaces=version - 1 if version > 1 else None,
    )
    return pages.show(request, "application/submitted.html", page)


@router.get("/{application_id}/{stage}/receipt.pdf")
def receipt(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    version = reopening.current_version(session, ctx.application, stage)
    document = _receipt(session, ctx, version)
    if document is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", document.path, session)
    numbered = f"-v{version}" if version > 1 else ""
    name = f"{ctx.application.reference.replace('/', '-')}-{stage}-receipt{numbered}.pdf"
    return FileResponse(path, media_type="application/pdf", filename=name)
