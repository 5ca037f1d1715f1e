"""A council applicant's pages: the rounds open to their council, their applications, and each
application's forms (task list, one page per section, check your answers, submit, receipt).

Every page under /applications/{id} is for the application's own council only: anything else
is 404, so nobody learns whether another council's application exists."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlmodel import Session, col, select
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cbflow.clock import Clock
from cbflow.errors import CbflowError, DeadlinePassed, ValidationFailed
from cbflow.flowruns import ReceiptBatches
from cbflow.forms import display_answer, is_shown, validate_answers
from cbflow.lifecycle import FUNDED, AppState
from cbflow.models import Application, Council, Document, Round, User
from cbflow.prospectus import FileQuestion, Prospectus, Section
from cbflow.prospectus import Form as ProspectusForm
from cbflow.services import applications as service
from cbflow.services import councils as councils_service
from cbflow.services import drafts, rounds
from cbflow.services.applications import Stage
from cbflow.services.drafts import Change, EditConflict
from cbflow.web import forms_ui
from cbflow.web.answers import conflict_view, names_of
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep, ShortField, in_own_thread
from cbflow.web.security import as_id
from cbflow.web.templating import Pages

router = APIRouter(prefix="/applications")
logger = logging.getLogger(__name__)

Applicant = Annotated[User, require_role("applicant")]

APP_STATES = {
    "eoi_draft": "Expression of interest in progress",
    "eoi_submitted": "Expression of interest submitted",
    "sift_pass": "Expression of interest passed the sift",
    "sift_refer": "Expression of interest with staff",
    "sift_fail": "Not taken forward",
    "invited": "Invited to bid",
    "bid_draft": "Bid in progress",
    "bid_submitted": "Bid submitted",
    "under_assessment": "Bid being assessed",
    "moderated": "Bid assessed",
    "selected": "Selected",
    "reserve": "On the reserve list",
    "unsuccessful": "Not selected",
    "implementing": "Implementing",
    "completed": "Completed",
    "published": "Published as a model",
    "withdrawn": "Withdrawn",
}
STAGE_NAMES = {"eoi": "Expression of interest", "bid": "Bid"}
BID_STATES = frozenset({AppState.INVITED, AppState.BID_DRAFT})
# returns are made while implementing; afterwards they can still be read
RETURNS_STATES = frozenset({AppState.IMPLEMENTING, AppState.COMPLETED, AppState.PUBLISHED})


def _council_of(user: User) -> str:
    if not user.council_code:  # an applicant account without a council can do nothing here
        raise HTTPException(status_code=403)
    return user.council_code


def _current_stage(application: Application) -> Stage:
    """The form a council is working on: the bid once invited, otherwise the EOI."""
    return "bid" if application.state in BID_STATES or application.bid_answers else "eoi"


def _home_of(application: Application) -> str:
    """An application's page: its returns once implementing, its grant offer once selected,
    otherwise its current form."""
    if application.state in RETURNS_STATES:
        return f"/applications/{application.id}/returns"
    if application.state == AppState.SELECTED and application.decided_at is not None:
        return f"/applications/{application.id}/offer"
    return f"/applications/{application.id}/{_current_stage(application)}"


def _offer_status(application: Application) -> dict[str, str] | None:
    """A selected place's grant offer, as the list of applications links to it."""
    if application.state not in FUNDED or application.decided_at is None:
        return None
    return {
        "href": f"/applications/{application.id}/offer",
        "text": "Grant offer accepted"
        if application.offer_accepted_at
        else "Grant offer to accept",
    }


def own_application(session: Session, user: User, application_id: int) -> Application:
    application = session.get(Application, application_id)
    if application is None or application.council_code != _council_of(user):
        raise HTTPException(status_code=404)
    return application


class Context:
    """An application at one stage: its round, prospectus, form and answers."""

    def __init__(self, session: Session, application: Application, stage: Stage) -> None:
        if stage == "bid" and application.state not in BID_STATES and not application.bid_answers:
            raise HTTPException(status_code=404)
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        self.application = application
        self.stage = stage
        self.round = round_
        self.prospectus: Prospectus = rounds.prospectus_of(round_)
        try:
            self.form: ProspectusForm = service.form_of(self.prospectus, stage)
        except CbflowError:
            raise HTTPException(status_code=404) from None
        self.base = f"/applications/{application.id}/{stage}"
        self.place = councils_service.council_names(session).get(
            application.council_code, application.council_code
        )

    @property
    def answers(self) -> dict[str, Any]:
        """The answers as last read (a save reads them afresh under its lock)."""
        a = self.application
        return a.eoi_answers if self.stage == "eoi" else a.bid_answers

    def shown(self, section: Section) -> drafts.Base:
        """What a page of this section drawn now shows: the version and its answers."""
        stored = service.stored_draft(self.application, self.stage)
        ids = [q.id for q in section.questions]
        return drafts.Base(stored.version, drafts.digests(stored.answers, ids))

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES[self.stage]

    @property
    def submitted(self) -> bool:
        a = self.application
        return (a.eoi_submitted_at if self.stage == "eoi" else a.bid_submitted_at) is not None

    @property
    def editable(self) -> bool:
        state = AppState(self.application.state)
        return state == AppState.EOI_DRAFT if self.stage == "eoi" else state in BID_STATES

    def deadline(self) -> str:
        window = service.window_of(self.prospectus, self.stage)
        return service.local_deadline(window.closes_at(self.prospectus.zone), self.prospectus)

    def closed(self, now: datetime) -> bool:
        window = service.window_of(self.prospectus, self.stage)
        return now >= window.closes_at(self.prospectus.zone)

    def section(self, section_id: str) -> Section:
        for section in self.form.sections:
            if section.id == section_id:
                return section
        raise HTTPException(status_code=404)

    def page(self, **extra: Any) -> dict[str, Any]:
        return {
            "application": self.application,
            "stage": self.stage,
            "stage_name": self.stage_name,
            "round": self.round,
            "place": self.place,
            "base": self.base,
            "deadline": self.deadline(),
            "submitted": self.submitted,
            "editable": self.editable,
        } | extra


def _complete_errors(session: Session, ctx: Context) -> dict[str, str]:
    try:
        validate_answers(
            ctx.form, ctx.answers, complete=True, councils=service.council_codes(session)
        )
    except ValidationFailed as failed:
        return failed.errors
    return {}


def _section_status(section: Section, answers: dict[str, Any], errors: dict[str, str]) -> str:
    ids = {q.id for q in section.questions}
    if not ids & answers.keys():
        return "Not started"
    return "In progress" if ids & errors.keys() else "Completed"


# ---------------------------------------------------------------------------------------------
# the applicant's home


@router.get("")
def applications_home(
    request: Request, user: Applicant, session: SessionDep, pages: PagesDep, clock: ClockDep
) -> Response:
    council_code = _council_of(user)
    council = session.get(Council, council_code)
    assert council is not None
    now = clock()
    mine = list(
        session.exec(
            select(Application)
            .where(Application.council_code == council_code)
            .order_by(col(Application.id))
        )
    )
    started = {a.round_id for a in mine if a.adopted_from_model_id is None}
    all_rounds = rounds.all_rounds(session)
    open_rounds = []
    for round_ in all_rounds:
        prospectus = rounds.prospectus_of(round_)
        types = prospectus.eligibility.council_types
        if types is not None and council.type not in types:
            continue
        window = prospectus.timetable.eoi
        if not window.is_open(prospectus.zone, now):
            continue
        open_rounds.append(
            {
                "slug": round_.slug,
                "title": round_.title,
                "deadline": service.local_deadline(window.closes_at(prospectus.zone), prospectus),
                "started": round_.id in started,
            }
        )
    titles = {r.id: r.title for r in all_rounds}
    listed = [
        {
            "id": a.id,
            "reference": a.reference,
            "round": titles.get(a.round_id, ""),
            "state": APP_STATES.get(a.state, a.state),
            "href": _home_of(a),
            "offer": _offer_status(a),
        }
        for a in mine
    ]
    return pages.render(
        request,
        "application/index.html",
        council=council,
        open_rounds=open_rounds,
        applications=listed,
    )


@router.post("/start")
def start(
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    round_slug: Annotated[str, Form(alias="round")] = "",
) -> Response:
    council_code = _council_of(user)
    try:
        round_ = rounds.get_round(session, round_slug)
        prospectus = rounds.prospectus_of(round_)
        service.check_window(prospectus, "eoi", clock())
        application, _ = service.start_application(
            session, round_=round_, council_code=council_code, actor=user.email, now=clock()
        )
    except CbflowError:
        raise HTTPException(status_code=404) from None
    return RedirectResponse(f"/applications/{application.id}/eoi", status_code=303)


@router.get("/{application_id}")
def application_home(application_id: int, user: Applicant, session: SessionDep) -> Response:
    application = own_application(session, user, application_id)
    return RedirectResponse(_home_of(application), status_code=303)


# ---------------------------------------------------------------------------------------------
# task list, sections


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
    ctx = Context(session, own_application(session, user, application_id), stage)
    errors = _complete_errors(session, ctx)
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
                "href": f"{ctx.base}/section/{section.id}",
                "status": {"tag": tag} if tag else {"text": status},
            }
        )
    done = statuses.count("Completed")
    return pages.render(
        request,
        "application/task-list.html",
        **ctx.page(
            items=items,
            done=done,
            total=len(ctx.form.sections),
            closed=ctx.closed(clock()),
            ready=not errors,
        ),
    )


# a save that could not have the draft's lock in time (cbflow.db's "database is locked", or
# PostgreSQL's lock or pool time-out): nothing was saved, and the person is told so
BUSY_ERRORS = (OperationalError, SQLAlchemyTimeoutError)
BUSY = (
    "Your answers were not saved: the service is busy. Wait a moment, then select "
    "Save and continue again."
)


def _render_section(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    section: Section,
    raw: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
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
    return pages.render(
        request,
        "application/section.html",
        status_code=status_code,
        **ctx.page(
            section=section,
            fields=fields,
            errors=errors,
            error_list=summary,
            multipart=multipart,
            problem=problem,
            closed=closed,
            unsaved=unsaved,
            shown=forms_ui.carried(shown),
        ),
    )


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
    ctx = Context(session, own_application(session, user, application_id), stage)
    section = ctx.section(section_id)
    errors: dict[str, str] = {}
    if check:  # sent back from "check your answers": show what stops the submission
        ids = {q.id for q in section.questions}
        errors = {k: v for k, v in _complete_errors(session, ctx).items() if k in ids}
    raw = forms_ui.raw_of_section(section, ctx.answers)
    return _render_section(
        request,
        pages,
        session,
        ctx,
        section,
        raw,
        errors,
        status_code=400 if errors else 200,
        closed=ctx.closed(clock()),
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
    ctx = Context(session, own_application(session, post.user, post.application_id), post.stage)
    section = ctx.section(post.section_id)
    posted = post.form
    shown = forms_ui.read_base(posted)
    raw = {q.id: forms_ui.read_raw(q, posted) for q in section.questions}
    action = str(posted.get("action") or "save")

    def again(errors: dict[str, str], status: int, **extra: Any) -> Response:
        """The page again, with what was typed and the base it came with."""
        return _render_section(
            request, pages, session, ctx, section, raw, errors, status, shown=shown, **extra
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

    if not ctx.editable:
        raise HTTPException(status_code=404)
    errors: dict[str, str] = {}
    files: set[str] = set()  # the file questions this post answers
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
                raw[question.id] = forms_ui.store_upload(folder, upload)
                files.add(question.id)
            elif (kept := forms_ui.kept_upload(posted, question.id, folder)) is not None:
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
    given, unreadable = _answers_of(section, raw)
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
        name = STAGE_NAMES[ctx.stage].lower()
        problem = f"This {name} can no longer be changed. Your answers were not saved."
        return again({}, 409, problem=problem)
    except BUSY_ERRORS:
        logger.warning("a save of %s waited too long for the draft's lock", ctx.base)
        session.rollback()
        return again({}, 503, problem=BUSY)
    following = _next_section(ctx, section)
    target = f"{ctx.base}/section/{following.id}" if following else f"{ctx.base}/check"
    if posted.get("then") == "task-list":
        target = ctx.base
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
        **ctx.page(
            caption=f"{ctx.stage_name}: {ctx.round.title}",
            title=f"{section.title}: {ctx.stage_name}",
            action=f"{ctx.base}/section/{section.id}",
            back={"text": "Back to the task list", "href": ctx.base},
            **view,
        ),
    )


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
    return await run_in_threadpool(_autosave, session, post)


def _autosave(session: Session, post: Post) -> JSONResponse:
    ctx = Context(session, own_application(session, post.user, post.application_id), post.stage)
    section = ctx.section(post.section_id)
    name = STAGE_NAMES[ctx.stage].lower()
    if not ctx.editable:
        return _not_saved(409, f"this {name} can no longer be changed")
    if ctx.closed(post.now):
        return _not_saved(409, f"the deadline has passed: it was {ctx.deadline()}")
    shown = forms_ui.read_base(post.form)
    raw = {
        q.id: forms_ui.read_raw(q, post.form)
        for q in section.questions
        if not isinstance(q, FileQuestion)
    }
    given, errors = _answers_of(section, raw)
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
            return _not_saved(409, f"the deadline has passed: it was {ctx.deadline()}")
        except EditConflict as conflict:
            return _conflict_answer(session, ctx, conflict)
        except CbflowError:
            return _not_saved(409, f"this {name} can no longer be changed")
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


def _answers_of(section: Section, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
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


# ---------------------------------------------------------------------------------------------
# check your answers, submit, confirmation, receipt


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
    ctx = Context(session, own_application(session, user, application_id), stage)
    return _render_check(request, pages, session, ctx, closed=ctx.closed(clock()))


def _render_check(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Context,
    *,
    closed: bool,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    names = councils_service.council_names(session)
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
                                "href": f"{ctx.base}/section/{section.id}#"
                                f"{forms_ui.error_anchor(question)}",
                                "text": "Change",
                                "visuallyHiddenText": question.label.lower(),
                            }
                        ]
                    }
                    if ctx.editable
                    else {},
                }
            )
        sections.append({"title": section.title, "rows": rows})
    errors = errors or {}
    return pages.render(
        request,
        "application/check.html",
        status_code=status_code,
        **ctx.page(
            sections=sections,
            closed=closed,
            errors=errors,
            error_list=[{"text": m, "href": f"#{k}"} for k, m in errors.items()],
        ),
    )


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
    ctx = Context(session, application, stage)
    confirmation = RedirectResponse(f"{ctx.base}/submitted", status_code=303)
    if ctx.submitted:  # a retried or double-clicked submission: the first one stands
        return confirmation
    now = clock()
    if ctx.closed(now):
        return _render_check(request, pages, session, ctx, closed=True, status_code=400)
    if declaration != "agreed":
        return _render_check(
            request,
            pages,
            session,
            ctx,
            closed=False,
            errors={"declaration": "Confirm that the information you have given is correct"},
            status_code=400,
        )
    try:
        application, _ = service.submit(
            session, application=application, stage=stage, actor=user.email, now=now
        )
    except ValidationFailed as failed:
        first = next(
            s
            for s in ctx.form.sections
            if {q.id for q in s.questions} & failed.errors.keys() or s is ctx.form.sections[-1]
        )
        return RedirectResponse(f"{ctx.base}/section/{first.id}?check=1", status_code=303)
    except DeadlinePassed:
        return _render_check(request, pages, session, ctx, closed=True, status_code=400)
    # the submission is durable before it is acknowledged, and before its receipt is asked for
    session.commit()
    # the receipt is a flow's work: asked for once the answer is on its way, so the person
    # waits neither for Prefect nor for the PDF
    confirmation.background = BackgroundTask(_ask_for_receipt, request, ctx.round.slug, clock)
    return confirmation


async def _ask_for_receipt(request: Request, slug: str, clock: Clock) -> None:
    batches: ReceiptBatches = request.app.state.receipt_batches
    now = clock()
    if not batches.asked(slug, now):  # most submissions: asked already, no thread needed
        await in_own_thread(batches.request, slug, now)  # the routes go on while Prefect answers


def _receipt(session: Session, ctx: Context) -> Document | None:
    return session.exec(
        select(Document).where(
            Document.application_id == ctx.application.id,
            Document.kind == f"{ctx.stage}_receipt",
        )
    ).first()


@router.get("/{application_id}/{stage}/submitted")
def submitted(
    request: Request,
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
) -> Response:
    ctx = Context(session, own_application(session, user, application_id), stage)
    if not ctx.submitted:
        return RedirectResponse(ctx.base, status_code=303)
    return pages.render(
        request,
        "application/submitted.html",
        **ctx.page(receipt=_receipt(session, ctx) is not None),
    )


@router.get("/{application_id}/{stage}/receipt.pdf")
def receipt(
    application_id: int,
    stage: Stage,
    user: Applicant,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    ctx = Context(session, own_application(session, user, application_id), stage)
    document = _receipt(session, ctx)
    if document is None:
        raise HTTPException(status_code=404)
    path = Path(document.path)
    path = path if path.is_absolute() else settings.documents_dir / path
    if not path.is_file():
        raise HTTPException(status_code=404)
    name = f"{ctx.application.reference.replace('/', '-')}-{stage}-receipt.pdf"
    return FileResponse(path, media_type="application/pdf", filename=name)
