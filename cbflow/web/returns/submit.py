"""A return's submission, once checked, and its confirmation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_time, money
from cbflow.models import ReturnRecord
from cbflow.services import implementation
from cbflow.services.drafts import EditConflict
from cbflow.web import forms_ui
from cbflow.web.applications import BUSY, BUSY_ERRORS
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.returns.shared import (
    Applicant,
    ReturnPost,
    ReturnsCommon,
    again_for,
    conflict_page_from,
    context_of,
    page_of,
    read_posted,
    refusal,
    summary,
)
from cbflow.web.templating import Pages

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class ReturnSubmittedPage(ReturnsCommon):
    record: ReturnRecord
    period_name: str
    submitted_at: str
    late: bool
    payment: str | None
    sections: list[dict[str, Any]]  # the answers as summary lists


@router.post("/{application_id}/returns/{period}/submit")
async def submit_return(
    request: Request,
    application_id: int,
    period: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    post = ReturnPost(user, application_id, period, await request.form(), clock())
    # off the event loop: the submission waits for the return's lock
    return await run_in_threadpool(_submit_return, request, pages, session, post)


def _submit_return(request: Request, pages: Pages, session: Session, post: ReturnPost) -> Response:
    ctx = context_of(request, session, post.user, post.application_id)
    record_ = ctx.record(post.period)
    address = ctx.url("return_submitted", period=post.period)
    confirmation = RedirectResponse(address, status_code=303)
    now = post.now
    if ctx.actions(record_, now).submitted:  # sent again: the first submission stands
        return confirmation
    shown = forms_ui.read_base(post.form)
    raw, answers, errors = read_posted(ctx, post.form)

    again = again_for(request, pages, session, ctx, record_, raw, now, shown)

    refused = refusal(ctx, record_, now)
    if refused:
        return again({}, 400, refused)
    if not errors:
        try:
            implementation.submit_return(
                session,
                record_=record_,
                answers=answers,
                actor=post.user.email,
                now=now,
                base=shown,
            )
        except ValidationFailed as failed:
            errors = failed.errors
        except EditConflict as conflict:
            return conflict_page_from(request, pages, session, ctx, record_, raw, conflict)
        except CbflowError as exc:
            return again({}, 400, f"The return was not submitted: {exc}.")
        except BUSY_ERRORS:
            session.rollback()
            return again(
                {}, 503, BUSY.replace("answers were not saved", "return was not submitted")
            )
    if errors:
        return again(errors, 400)
    return confirmation


@router.get("/{application_id}/returns/{period}/submitted")
def return_submitted(
    request: Request,
    application_id: int,
    period: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
) -> Response:
    ctx = context_of(request, session, user, application_id)
    record_ = ctx.record(period)
    if record_.submitted_at is None:
        return RedirectResponse(ctx.url("return_form", period=period), status_code=303)
    payment = record_.payment_pence if ctx.payments else None
    page = page_of(
        ReturnSubmittedPage,
        ctx.page(),
        record=record_,
        period_name=ctx.period_name(record_),
        submitted_at=local_time(record_.submitted_at, ctx.prospectus),
        late=record_.submitted_at > record_.due,
        payment=money(payment) if payment is not None else None,
        sections=summary(session, ctx.form, record_.answers),
    )
    return pages.show(request, "application/return-submitted.html", page)
