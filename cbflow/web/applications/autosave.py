"""A section page's autosave: what its script sends a moment after typing stops, answered in
JSON."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.prospectus import FileQuestion
from cbflow.services import applications as service
from cbflow.services import drafts
from cbflow.services.applications import Stage
from cbflow.services.drafts import Change, EditConflict
from cbflow.web import forms_ui
from cbflow.web.answers import names_of
from cbflow.web.applications.sections import Post, answers_of
from cbflow.web.applications.shared import BUSY_ERRORS, Applicant, Context, own_application
from cbflow.web.deps import ClockDep, SessionDep

router = APIRouter(prefix="/applications")
logger = logging.getLogger(__name__)


@router.post("/{application_id}/{stage}/section/{section_id}/autosave")
async def autosave_section(
    request: Request,
    application_id: int,
    stage: Stage,
    section_id: str,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
) -> JSONResponse:
    """What the section page's script sends a moment after typing stops, and on leaving: the
    draft is saved as "Save and continue" saves it (nothing need be complete), except that an
    answer that cannot be saved keeps its stored value while the rest are saved. Files are left
    to the Save button. Never after the deadline, never once submitted. A colleague's change
    to an answer the person changed too is a conflict (409): nothing is saved, and "Save and
    continue" then shows both answers to choose from. The answer gives the version and answers
    the page now shows, which its next save carries."""
    posted = await request.form()
    post = Post(user, application_id, stage, section_id, posted, {}, clock())
    # off the event loop, as save_section
    return await run_in_threadpool(_autosave, request, session, post)


def _autosave(request: Request, session: Session, post: Post) -> JSONResponse:
    ctx = Context(
        request, session, own_application(session, post.user, post.application_id), post.stage
    )
    section = ctx.section(post.section_id)
    actions = ctx.actions(post.now)
    if actions.refusal is not None:  # submitted or withdrawn, or the deadline has passed
        return _not_saved(409, actions.refusal)
    shown = forms_ui.read_base(post.form)
    raw = {
        q.id: forms_ui.read_raw(q, post.form)
        for q in section.questions
        if not isinstance(q, FileQuestion)
    }
    given, errors = answers_of(section, raw)
    questions = [q for q in raw if q not in errors]
    for _ in range(2):  # a second try without the answers the first one refused
        try:
            saved = service.save_answers(
                session,
                application=ctx.application,
                stage=ctx.stage,
                answers=given,
                questions=questions,
                base=shown,
                actor=post.user.email,
                now=post.now,
            )
            break
        except ValidationFailed as failed:
            errors |= failed.errors
            questions = [q for q in questions if q not in failed.errors]
        except DeadlinePassed:
            return _not_saved(409, f"the deadline has passed: it was {actions.deadline}")
        except EditConflict as conflict:
            return _conflict_answer(session, ctx, conflict)
        except CbflowError:
            return _not_saved(409, f"this {actions.stage_name.lower()} can no longer be changed")
        except BUSY_ERRORS:
            logger.warning("an autosave of %s waited too long for the draft's lock", ctx.base)
            session.rollback()
            return _not_saved(
                503, "the service is busy. Your answers will be saved again in a moment"
            )
    else:
        return _not_saved(422, "; ".join(errors.values()), errors)
    at = post.now.astimezone(ctx.prospectus.zone)
    message = f"Saved at {at:%H:%M}"
    if errors:
        message += ", except: " + "; ".join(
            errors[q.id] for q in section.questions if q.id in errors
        )
    if saved.unseen:
        people = names_of(session, {c.by for c in saved.unseen})
        message += ". " + "; ".join(
            f"{people[c.by]} changed “{_label(ctx, c.question_id)}” at "
            f"{c.at.astimezone(ctx.prospectus.zone):%H:%M}"
            for c in saved.unseen
        )
        message += ": reload the page to see their answers"
    now_shown = drafts.Base(saved.version, {**shown.digests, **saved.digests})
    return JSONResponse(
        {
            "saved": True,
            "message": message,
            "errors": errors,
            "version": now_shown.version,
            "base": now_shown.encoded(),
        }
    )


def _label(ctx: Context, question_id: str) -> str:
    question = ctx.form.question(question_id)
    return question.label if question is not None else question_id


def _conflict_answer(session: Session, ctx: Context, conflict: EditConflict) -> JSONResponse:
    people = names_of(session, {c.by for c in conflict.changes})
    latest: dict[str, Change] = {}
    for change in sorted(conflict.changes, key=lambda c: c.at):
        latest[change.by] = change
    who = " and ".join(
        f"{people[c.by]} at {c.at.astimezone(ctx.prospectus.zone):%H:%M}" for c in latest.values()
    )
    return JSONResponse(
        {
            "saved": False,
            "message": f"Not saved: changed by {who}. "
            "Select Save and continue to choose which answers to keep",
            "errors": {},
            "conflict": {
                "version": conflict.version,
                "questions": [
                    {
                        "id": c.question_id,
                        "label": _label(ctx, c.question_id),
                        "by": people[c.by],
                        "at": c.at.astimezone(ctx.prospectus.zone).isoformat(),
                    }
                    for c in conflict.changes
                ],
            },
        },
        status_code=409,
    )


def _not_saved(status: int, why: str, errors: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"saved": False, "message": f"Not saved: {why}", "errors": errors or {}},
        status_code=status,
        headers={"Retry-After": "5"} if status == 503 else None,
    )
