"""Reopening a submitted form before the deadline, where the prospectus allows it: a page that
says plainly what reopening means (it no longer counts as submitted unless submitted again by
the deadline), and its post."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.errors import CbflowError
from cbflow.formatting import local_time
from cbflow.services import reopening
from cbflow.services.applications import Stage
from cbflow.web.applications.shared import (
    Applicant,
    Context,
    FormPage,
    own_application,
    page_of,
)
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.templating import Pages
from cbflow.wording import opening

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class ReopenPage(FormPage):
    submitted_at: str  # when the version that counts now was submitted ("" if it is not)
    refusal: str  # why it cannot be reopened now ("" when it can)


def _render(
    request: Request,
    pages: Pages,
    ctx: Context,
    now: datetime,
    refusal: str | None,
    status_code: int = 200,
) -> Response:
    submitted = (
        ctx.application.eoi_submitted_at if ctx.stage == "eoi" else ctx.application.bid_submitted_at
    )
    page = page_of(
        ReopenPage,
        ctx.page(now),
        submitted_at=local_time(submitted, ctx.prospectus) if submitted else "",
        refusal=opening(refusal) if refusal else "",
    )
    return pages.show(request, "application/reopen.html", page, status_code)


@router.get("/{application_id}/{stage}/reopen")
def reopen_page(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    """What reopening means, with the button that does it (or why it cannot be done now)."""
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    now = clock()
    return _render(
        request, pages, ctx, now, reopening.refusal(session, ctx.application, stage, now)
    )


@router.post("/{application_id}/{stage}/reopen")
def reopen(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    """Reopen the submitted form, then on to its task list to change it. A repeated post (a
    double click) finds it reopened already and goes on the same way."""
    application = own_application(session, user, application_id)
    ctx = Context(request, session, application, stage)
    now = clock()
    to_task_list = RedirectResponse(ctx.url("task_list"), status_code=303)
    if reopening.reopened(session, application, stage) is not None:
        return to_task_list
    try:
        reopening.reopen(session, application, stage, user.email, now)
    except CbflowError as refused:
        return _render(request, pages, ctx, now, str(refused), status_code=409)
    session.commit()  # reopened before the person is told so
    return to_task_list
