"""An application's form, one stage at a time: the task list, one page per section, and "Save
and continue" (with a table's add and remove buttons, and the choice of whose answers to keep
after a colleague's change)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.models import User
from cbflow.prospectus import FileQuestion, Section
from cbflow.services import applications as service
from cbflow.services import councils as councils_service
from cbflow.services import drafts, partnerships
from cbflow.services.applications import Stage
from cbflow.services.drafts import EditConflict
from cbflow.store import get_store
from cbflow.web import forms_ui
from cbflow.web.answers import conflict_view
from cbflow.web.applications import partners
from cbflow.web.applications.shared import (
    BUSY,
    BUSY_ERRORS,
    Applicant,
    Context,
    FormPage,
    complete_errors,
    own_application,
    page_of,
)
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep
from cbflow.web.security import as_id
from cbflow.web.templating import Pages

router = APIRouter(prefix="/applications")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskListPage(FormPage):
    items: list[dict[str, Any]]  # GOV.UK's task list items, one a section
    done: int
    total: int
    ready: bool  # every answer the submission needs is given


@dataclass(frozen=True)
class SectionPage(FormPage):
    section: Section
    fields: list[forms_ui.Field]
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    multipart: bool
    problem: str | None
    unsaved: bool  # what the page shows was typed, not yet saved
    changeable: bool  # a table's rows can be added and removed (fields.html)
    shown: dict[str, str]  # the hidden fields that carry the draft's version it shows


def _section_status(section: Section, answers: dict[str, Any], errors: dict[str, str]) -> str:
    ids = {q.id for q in section.questions}
    if not ids & answers.keys():
        return "Not started"
    return "In progress" if ids & errors.keys() else "Completed"


@router.get("/{application_id}/{stage}")
def task_list(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    errors = complete_errors(session, ctx)
    items = []
    statuses = [_section_status(s, ctx.answers, errors) for s in ctx.form.sections]
    for section, status in zip(ctx.form.sections, statuses, strict=True):
        tag = {
            "Not started": {"text": "Not started", "classes": "govuk-tag--blue"},
            "In progress": {"text": "In progress", "classes": "govuk-tag--light-blue"},
        }.get(status)
        items.append(
            {
                "title": {"text": section.title},
                "href": ctx.url("section_page", section_id=section.id),
                "status": {"tag": tag} if tag else {"text": status},
            }
        )
    partnership = _partnership_task(session, ctx)
    if partnership is not None:
        items.insert(0, partnership)
    partners_row = partners.partners_task(session, ctx)
    if partners_row is not None:
        items.insert(1 if partnership is not None else 0, partners_row)
    done = statuses.count("Completed")
    page = page_of(
        TaskListPage,
        ctx.page(clock()),
        items=items,
        done=done,
        total=len(ctx.form.sections),
        ready=not errors,
    )
    return pages.show(request, "application/task-list.html", page)


def _partnership_task(session: Session, ctx: Context) -> dict[str, Any] | None:
    """The expression of interest's first task in a round that admits partnerships: the
    place's councils (optional where a council may also apply alone)."""
    admits = ctx.prospectus.applicants
    if ctx.stage != "eoi" or admits.partnership is None or ctx.application.adopted_from_model_id:
        return None
    place = partnerships.place_of(session, ctx.application)
    problems = partnerships.submission_problems(session, ctx.application)
    if not place.is_partnership and admits.single_council:
        status: dict[str, Any] = {"text": "Optional"}
    elif problems:
        status = {"tag": {"text": "In progress", "classes": "govuk-tag--light-blue"}}
    else:
        status = {"text": "Completed"}
    task: dict[str, Any] = {
        "title": {"text": "Your partnership"},
        "href": ctx.url_of_partnership(),
        "status": status,
    }
    if place.is_partnership:
        task["hint"] = {"text": f"{place.name}: {len(place.councils)} councils"}
    return task


def _render_section(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    section: Section,
    raw: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
    *,
    now: datetime,
    problem: str | None = None,
    closed: bool = False,
    unsaved: bool = False,
    shown: drafts.Base | None = None,
) -> Response:
    """The section's page with `raw` in its fields. It carries `shown` (by default the draft as
    read now): the version and answers it shows, which its saves are checked against."""
    asks = forms_ui.asks_for_council(section.questions)
    councils = councils_service.council_choices(session) if asks else []
    fields = forms_ui.section_fields(section, raw, errors, councils)
    anchors = {q.id: forms_ui.error_anchor(q) for q in ctx.form.questions()}
    summary = [
        {"text": message, "href": f"#{anchors.get(qid, qid)}"} for qid, message in errors.items()
    ]
    multipart = any(isinstance(q, FileQuestion) for q in section.questions)
    shown = shown or ctx.shown(section)
    common = ctx.page(now, closed=closed)
    page = page_of(
        SectionPage,
        common,
        section=section,
        fields=fields,
        errors=errors,
        error_list=summary,
        multipart=multipart,
        problem=problem,
        unsaved=unsaved,
        changeable=common.actions.can_edit,
        shown=forms_ui.carried(shown),
    )
    return pages.show(request, "application/section.html", page, status_code)


@router.get("/{application_id}/{stage}/section/{section_id}")
def section_page(
    request: Request,
    application_id: int,
    stage: Stage,
    section_id: str,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    check: int = 0,
) -> Response:
    ctx = Context(request, session, own_application(session, user, application_id), stage)
    section = ctx.section(section_id)
    errors: dict[str, str] = {}
    if check:  # sent back from "check your answers": show what stops the submission
        ids = {q.id for q in section.questions}
        errors = {k: v for k, v in complete_errors(session, ctx).items() if k in ids}
    raw = forms_ui.raw_of_section(section, ctx.answers)
    now = clock()
    return _render_section(
        request,
        pages,
        session,
        ctx,
        section,
        raw,
        errors,
        status_code=400 if errors else 200,
        now=now,
        closed=ctx.actions(now).closed,
    )


@router.post("/{application_id}/{stage}/section/{section_id}")
async def save_section(
    request: Request,
    application_id: int,
    stage: Stage,
    section_id: str,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """ "Save and continue", a table's add and remove buttons, and the choice of whose answers
    to keep after a conflict. Saves as cbflow.services.applications.save_answers does: only
    this section's answers the person changed, into the draft as it is when written."""
    posted = await request.form()
    uploads = await forms_ui.read_uploads(posted)
    # off the event loop: waiting for the draft's lock there would stall every request, the
    # one holding the lock (and about to commit) among them
    return await run_in_threadpool(
        _save_section,
        request,
        pages,
        session,
        Post(user, application_id, stage, section_id, posted, uploads, clock()),
        settings.data_dir / "uploads" / str(application_id),
    )


@dataclass(frozen=True)
class Post:
    """A section page's post, as read on the event loop."""

    user: User
    application_id: int
    stage: Stage
    section_id: str
    form: FormData
    uploads: dict[str, forms_ui.Upload]
    now: datetime


def _save_section(
    request: Request, pages: Pages, session: Session, post: Post, folder: Path
) -> Response:
    ctx = Context(
        request, session, own_application(session, post.user, post.application_id), post.stage
    )
    section = ctx.section(post.section_id)
    posted = post.form
    shown = forms_ui.read_base(posted)
    raw = {q.id: forms_ui.read_raw(q, posted) for q in section.questions}
    action = str(posted.get("action") or "save")

    def again(errors: dict[str, str], status: int, **extra: Any) -> Response:
        """The page again, with what was typed and the base it came with."""
        return _render_section(
            request,
            pages,
            session,
            ctx,
            section,
            raw,
            errors,
            status,
            now=post.now,
            shown=shown,
            **extra,
        )

    if action.startswith(("add:", "remove:")):  # a table's buttons, without JavaScript
        verb, _, target = action.partition(":")
        question_id, _, index = target.partition(":")
        rows = raw.get(question_id)
        if isinstance(rows, list):
            if verb == "add":
                rows.append({})
            elif (row := as_id(index)) is not None and row < len(rows):
                rows.pop(row)
        # what was typed is on the page again, not yet saved: the page's script saves it
        return again({}, 200, unsaved=True)

    if not ctx.actions(post.now).open_to_change:
        raise HTTPException(status_code=404)
    errors: dict[str, str] = {}
    files: set[str] = set()  # the file questions this post answers
    uploads = get_store()

    def in_store(digest: str) -> bool:
        return uploads.exists("uploads", _upload_key(post, digest))

    for question in section.questions:
        if isinstance(question, FileQuestion):
            raw[question.id] = ctx.answers.get(question.id)
            upload = post.uploads.get(question.id)
            if upload is not None:
                try:
                    forms_ui.check_upload(question, upload)
                except forms_ui.Unreadable as exc:
                    errors[question.id] = f"{question.label}: {exc}"
                    continue
                saved = forms_ui.store_upload(folder, upload)
                # in the store at once, in a transaction of its own: staff on another host
                # may open it as soon as the answer that names it is saved
                uploads.keep(
                    "uploads", _upload_key(post, saved["sha256"]), folder / saved["sha256"]
                )
                raw[question.id] = saved
                files.add(question.id)
            elif (kept := forms_ui.kept_upload(posted, question.id, folder, in_store)) is not None:
                raw[question.id] = kept
                files.add(question.id)
    keep_theirs: set[str] = set()
    if action == "resolve":  # the choice of whose answers to keep
        asked = forms_ui.asked(posted, section.questions)
        keep_theirs, choices = forms_ui.keep_theirs(posted, asked)
        missing = forms_ui.unchosen(section.questions, asked, choices)
        if missing:
            return _conflict_page(
                request,
                pages,
                session,
                ctx,
                section,
                raw,
                asked,
                shown,
                400,
                errors=missing,
                choices=choices,
                files=files,
            )
    given, unreadable = answers_of(section, raw)
    errors = {q.id: m for q in section.questions if (m := errors.get(q.id) or unreadable.get(q.id))}
    if errors:
        return again(errors, 400)
    questions = [
        q.id
        for q in section.questions
        if (not isinstance(q, FileQuestion) or q.id in files) and q.id not in keep_theirs
    ]
    try:
        service.save_answers(
            session,
            application=ctx.application,
            stage=ctx.stage,
            answers=given,
            questions=questions,
            base=shown,
            actor=post.user.email,
            now=post.now,
        )
    except ValidationFailed as failed:
        return again(failed.errors, 400)
    except DeadlinePassed:
        problem = "The deadline has passed. Your answers were not saved."
        return again({}, 400, problem=problem, closed=True)
    except EditConflict as conflict:
        # the page asks again, from the draft as it is now: its own answers where the person
        # changed them, the colleague's where they did not
        stored = service.stored_draft(ctx.application, ctx.stage)
        unseen = {c.question_id: c.theirs for c in conflict.unseen}
        for question in section.questions:
            if question.id in unseen:
                raw[question.id] = forms_ui.to_raw(question, unseen[question.id])
        now_shown = drafts.Base(stored.version, drafts.digests(stored.answers, list(raw)))
        asked = [c.question_id for c in conflict.changes]
        return _conflict_page(
            request, pages, session, ctx, section, raw, asked, now_shown, 409, files=files
        )
    except CbflowError:  # submitted or withdrawn since the page was drawn
        problem = (
            f"This {ctx.stage_name.lower()} can no longer be changed. Your answers were not saved."
        )
        return again({}, 409, problem=problem)
    except BUSY_ERRORS:
        logger.warning("a save of %s waited too long for the draft's lock", ctx.base)
        session.rollback()
        return again({}, 503, problem=BUSY)
    following = _next_section(ctx, section)
    if posted.get("then") == "task-list":
        target = ctx.url("task_list")
    elif following is not None:
        target = ctx.url("section_page", section_id=following.id)
    else:
        target = ctx.url("check_answers")
    return RedirectResponse(target, status_code=303)


def _conflict_page(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    section: Section,
    raw: dict[str, Any],
    asked: list[str],
    shown: drafts.Base,
    status_code: int,
    *,
    errors: dict[str, str] | None = None,
    choices: Mapping[str, Any] | None = None,
    files: set[str] | None = None,
) -> Response:
    """The page that says who changed which of the person's answers, and when, shows both
    answers and asks which to keep (cbflow.web.answers.conflict_view)."""
    view = conflict_view(
        session,
        ctx.prospectus,
        section.questions,
        service.stored_draft(ctx.application, ctx.stage),
        raw,
        asked,
        shown,
        errors=errors,
        choices=choices,
        files=files,
    )
    return pages.render(
        request,
        "application/conflict.html",
        status_code=status_code,
        caption=f"{ctx.stage_name}: {ctx.round.title}",
        title=f"{section.title}: {ctx.stage_name}",
        action=ctx.url("save_section", section_id=section.id),
        back={"text": "Back to the task list", "href": ctx.url("task_list")},
        **view,
    )


def answers_of(section: Section, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """This section's answers as typed (a blank one: None, no answer), and the questions whose
    typed value cannot be an answer."""
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for question in section.questions:
        if question.id not in raw:
            continue
        try:
            answers[question.id] = forms_ui.from_raw(question, raw[question.id])
        except forms_ui.Unreadable as exc:
            errors[question.id] = f"{question.label}: {exc}"
    return answers, errors


def _next_section(ctx: Context, section: Section) -> Section | None:
    sections = ctx.form.sections
    index = sections.index(section)
    return sections[index + 1] if index + 1 < len(sections) else None


def _upload_key(post: Post, digest: str) -> str:
    """An upload's key in the store: the application's folder and the file's hash."""
    return f"{post.application_id}/{digest}"
