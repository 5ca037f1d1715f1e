"""A return's form: drawn with its draft, "Continue" to check what was typed, "Save and come
back later" to keep it as the draft, and the choice of whose answers to keep after a colleague's
change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import money
from cbflow.forms import validate_answers
from cbflow.models import ReturnRecord
from cbflow.services import drafts, implementation
from cbflow.services.drafts import EditConflict
from cbflow.web import forms_ui
from cbflow.web.applications import BUSY, BUSY_ERRORS
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.returns.shared import (
    Applicant,
    ReturnPost,
    Returns,
    ReturnsCommon,
    again_for,
    conflict_page,
    conflict_page_from,
    context_of,
    page_of,
    read_posted,
    refusal,
    render_form,
    summary,
)
from cbflow.web.security import as_id
from cbflow.web.templating import Pages

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class ReturnCheckPage(ReturnsCommon):
    record: ReturnRecord
    period_name: str
    sections: list[dict[str, Any]]  # the answers as summary lists
    hidden: list[tuple[str, str]]  # what was typed, and the draft's version, to submit
    payment: str | None


@router.get("/{application_id}/returns/{period}")
def return_form(
    request: Request,
    application_id: int,
    period: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = context_of(request, session, user, application_id)
    record_ = ctx.record(period)
    raw = {q.id: forms_ui.to_raw(q, record_.draft.get(q.id)) for q in ctx.form.questions()}
    return render_form(request, pages, session, ctx, record_, raw, {}, now=clock())


@router.post("/{application_id}/returns/{period}")
async def check_return(
    request: Request,
    application_id: int,
    period: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    """The form's buttons: "Continue" checks what was typed, then shows it to confirm; "Save
    and come back later" keeps it as the draft. Also the table buttons (add or remove a row,
    without JavaScript), "Change" on the check page, and the choice of whose answers to keep
    after a conflict."""
    post = ReturnPost(user, application_id, period, await request.form(), clock())
    # off the event loop: a save waits for the return's lock
    return await run_in_threadpool(_check_return, request, pages, session, post)


def _check_return(request: Request, pages: Pages, session: Session, post: ReturnPost) -> Response:
    ctx = context_of(request, session, post.user, post.application_id)
    record_ = ctx.record(post.period)
    now = post.now
    if ctx.actions(record_, now).submitted:
        address = ctx.url("return_submitted", period=post.period)
        return RedirectResponse(address, status_code=303)
    posted = post.form
    shown = forms_ui.read_base(posted)
    raw, answers, errors = read_posted(ctx, posted)
    action = str(posted.get("action") or "check")

    again = again_for(request, pages, session, ctx, record_, raw, now, shown)

    if action.startswith(("add:", "remove:")):
        verb, _, target = action.partition(":")
        question_id, _, index = target.partition(":")
        rows = raw.get(question_id)
        if isinstance(rows, list):
            if verb == "add":
                rows.append({})
            elif (row := as_id(index)) is not None and row < len(rows):
                rows.pop(row)
        return again({})
    refused = refusal(ctx, record_, now)
    if refused:
        return again({}, 400, refused)
    if action == "change":
        return again({})
    if action in ("save", "resolve"):
        return _save_draft(request, pages, session, ctx, record_, post, shown, raw, errors)
    if not errors:
        try:
            answers = validate_answers(ctx.form, answers, complete=True)
        except ValidationFailed as failed:
            errors = failed.errors
    if errors:
        return again(errors, 400)
    hidden = [pair for q in ctx.form.questions() for pair in forms_ui.raw_as_fields(q, raw[q.id])]
    hidden += list(forms_ui.carried(shown).items())  # the submission is checked against it
    payment = implementation.payment_for(ctx.prospectus, answers) if ctx.payments else None
    page = page_of(
        ReturnCheckPage,
        ctx.page(),
        record=record_,
        period_name=ctx.period_name(record_),
        sections=summary(session, ctx.form, answers),
        hidden=hidden,
        payment=money(payment) if payment is not None else None,
    )
    return pages.show(request, "application/return-check.html", page)


def _save_draft(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Returns,
    record_: ReturnRecord,
    post: ReturnPost,
    shown: drafts.Base,
    raw: dict[str, Any],
    errors: dict[str, str],
) -> Response:
    """Keep what was typed as the return's draft ("Save and come back later", or the choice of
    whose answers to keep), then go back to the returns (or, after a choice, to the form)."""
    questions = list(ctx.form.questions())
    keep_theirs: set[str] = set()
    if post.form.get("action") == "resolve":
        asked = forms_ui.asked(post.form, questions)
        keep_theirs, choices = forms_ui.keep_theirs(post.form, asked)
        missing = forms_ui.unchosen(questions, asked, choices)
        if missing:
            return conflict_page(
                request, pages, session, ctx, record_, raw, asked, shown, 400, missing, choices
            )

    again = again_for(request, pages, session, ctx, record_, raw, post.now, shown)

    if errors:
        return again(errors, 400)
    given = {}
    for question in questions:
        given[question.id] = forms_ui.from_raw(question, raw[question.id])
    try:
        implementation.save_return_draft(
            session,
            record_=record_,
            answers=given,
            questions=[q.id for q in questions if q.id not in keep_theirs],
            base=shown,
            actor=post.user.email,
            now=post.now,
        )
    except ValidationFailed as failed:
        return again(failed.errors, 400)
    except EditConflict as conflict:
        return conflict_page_from(request, pages, session, ctx, record_, raw, conflict)
    except CbflowError as exc:
        return again({}, 400, f"Your answers were not saved: {exc}.")
    except BUSY_ERRORS:
        session.rollback()
        return again({}, 503, BUSY)
    if post.form.get("action") == "resolve":
        return RedirectResponse(ctx.url("return_form", period=record_.period), status_code=303)
    return RedirectResponse(ctx.url("returns_list"), status_code=303)
