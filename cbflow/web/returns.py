"""A selected council's implementation returns: each period with its due date and status, and the
return form the prospectus sets (`stages.implementation.returns.form`), drawn and checked as the
EOI and bid forms are, then a check-your-answers page before the one submission.

What was typed travels from the form to the check page in hidden fields and is checked again
when submitted, so nothing half-done is stored with the returns the progress reports read. "Save
and come back later" keeps a draft apart from them (`ReturnRecord.draft`), which several officers
may edit: each save and the submission carry the version of the draft their page showed, and a
colleague's newer answer is never overwritten (cbflow.services.drafts): the person sees both and
chooses.
Like every page under /applications/{id}, the application's own council only: anything else is
404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.forms import display_answer, is_shown, pence_to_money, validate_answers
from cbflow.lifecycle import AppState
from cbflow.models import Application, ReturnRecord, Round, User
from cbflow.prospectus import Form, Prospectus
from cbflow.services import councils as councils_service
from cbflow.services import drafts, implementation, offers, rounds
from cbflow.services.applications import local_deadline, local_time
from cbflow.services.drafts import EditConflict
from cbflow.web import forms_ui
from cbflow.web.answers import conflict_view
from cbflow.web.applications import BUSY, BUSY_ERRORS, RETURNS_STATES, own_application
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.security import as_id
from cbflow.web.templating import Pages

router = APIRouter(prefix="/applications")
NOT_SUBMITTED = (
    "Your return was not submitted: the service is busy. Wait a moment, then select Continue again."
)

Applicant = Annotated[User, require_role("applicant")]


def _day(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _money(pence: int) -> str:
    return f"£{pence_to_money(pence):,.2f}"


@dataclass
class Status:
    """A return's status: words first, the tag's colour only repeats them."""

    text: str
    tag: str
    detail: str
    open: bool  # can be made now


def status_of(record_: ReturnRecord, prospectus: Prospectus, now: datetime) -> Status:
    due = local_deadline(record_.due, prospectus)
    if record_.submitted_at is not None:
        late = record_.submitted_at > record_.due
        when = local_time(record_.submitted_at, prospectus)
        return Status(
            "Submitted late" if late else "Submitted",
            "govuk-tag--green",
            f"Submitted at {when}",
            False,
        )
    opens = implementation.return_opens(record_, prospectus)
    if now < opens:
        return Status("Not yet open", "govuk-tag--grey", f"Opens on {_day(opens.date())}", False)
    if now >= record_.due:
        return Status("Overdue", "govuk-tag--red", f"Was due by {due}", True)
    return Status("Due", "govuk-tag--yellow", f"Due by {due}", True)


class Returns:
    """An application's returns: its round, prospectus and the returns form."""

    def __init__(self, session: Session, application: Application) -> None:
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        self.prospectus = rounds.prospectus_of(round_)
        stage = self.prospectus.stages.implementation
        if application.state not in RETURNS_STATES or stage is None or stage.returns is None:
            raise HTTPException(status_code=404)
        self.application = application
        self.round = round_
        self.form: Form = stage.returns.form
        self.records = implementation.returns_of(session, application)
        self.base = f"/applications/{application.id}/returns"
        self.payments = bool(stage.payments)
        self.place = councils_service.council_names(session).get(
            application.council_code, application.council_code
        )

    @property
    def implementing(self) -> bool:
        return self.application.state == AppState.IMPLEMENTING

    def record(self, period: int) -> ReturnRecord:
        for record_ in self.records:
            if record_.period == period:
                return record_
        raise HTTPException(status_code=404)

    def page(self, **extra: Any) -> dict[str, Any]:
        return {
            "application": self.application,
            "round": self.round,
            "place": self.place,
            "base": self.base,
            "implementing": self.implementing,
        } | extra

    def period_name(self, record_: ReturnRecord) -> str:
        return f"{_day(record_.period_start)} to {_day(record_.period_end)}"


def _context(session: Session, user: User, application_id: int) -> Returns:
    return Returns(session, own_application(session, user, application_id))


@router.get("/{application_id}/returns")
def returns_list(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = _context(session, user, application_id)
    now = clock()
    rows = []
    for record_ in ctx.records:
        status = status_of(record_, ctx.prospectus, now)
        rows.append(
            {
                "period": record_.period,
                "dates": ctx.period_name(record_),
                "due": local_deadline(record_.due, ctx.prospectus),
                "status": status,
                "href": f"{ctx.base}/{record_.period}",
                "action": "View"
                if record_.submitted_at
                else ("Make return" if status.open and ctx.implementing else None),
            }
        )
    return pages.render(
        request,
        "application/returns.html",
        **ctx.page(
            rows=rows,
            milestones=implementation.milestones_of(session, ctx.application),
            offered=offers.has_offer(ctx.application),
            acceptance=offers.acceptance(session, ctx.application, ctx.prospectus),
        ),
    )


def _summary(session: Session, form: Form, answers: dict[str, Any]) -> list[dict[str, Any]]:
    names = councils_service.council_names(session)
    sections = []
    for section in form.sections:
        rows = [
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
        ]
        sections.append({"title": section.title, "rows": rows})
    return sections


def _render_form(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Returns,
    record_: ReturnRecord,
    raw: dict[str, Any],
    errors: dict[str, str],
    *,
    now: datetime,
    status_code: int = 200,
    problem: str | None = None,
    shown: drafts.Base | None = None,
) -> Response:
    """The return's form with `raw` in its fields, carrying `shown` (by default the draft as
    read now): the draft's version and answers its saves are checked against."""
    asks = forms_ui.asks_for_council(q for s in ctx.form.sections for q in s.questions)
    councils = councils_service.council_choices(session) if asks else []
    shown = shown or _shown(ctx, record_)
    sections = [
        {
            "section": section,
            "fields": forms_ui.section_fields(section, raw, errors, councils),
        }
        for section in ctx.form.sections
    ]
    anchors = {q.id: forms_ui.error_anchor(q) for q in ctx.form.questions()}
    status = status_of(record_, ctx.prospectus, now)
    return pages.render(
        request,
        "application/return-form.html",
        status_code=status_code,
        **ctx.page(
            record=record_,
            period_name=ctx.period_name(record_),
            status=status,
            sections=sections,
            errors=errors,
            error_list=[
                {"text": message, "href": f"#{anchors.get(qid, qid)}"}
                for qid, message in errors.items()
            ],
            problem=problem,
            # the fields' table macro asks these: rows can be added while the form can be sent
            editable=ctx.implementing and status.open,
            changeable=ctx.implementing and status.open,
            answers=_summary(session, ctx.form, record_.answers) if record_.submitted_at else [],
            shown=forms_ui.carried(shown),
        ),
    )


def _shown(ctx: Returns, record_: ReturnRecord) -> drafts.Base:
    """What the return's form drawn now shows: the draft's version and answers."""
    stored = implementation.stored_draft(record_)
    ids = [q.id for q in ctx.form.questions()]
    return drafts.Base(stored.version, drafts.digests(stored.answers, ids))


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
    ctx = _context(session, user, application_id)
    record_ = ctx.record(period)
    raw = {q.id: forms_ui.to_raw(q, record_.draft.get(q.id)) for q in ctx.form.questions()}
    return _render_form(request, pages, session, ctx, record_, raw, {}, now=clock())


def _read(ctx: Returns, posted: FormData) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """What was posted: (raw as typed, answers, errors of what cannot be an answer)."""
    raw: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for question in ctx.form.questions():
        raw[question.id] = forms_ui.read_raw(question, posted)
        try:
            value = forms_ui.from_raw(question, raw[question.id])
        except forms_ui.Unreadable as exc:
            errors[question.id] = f"{question.label}: {exc}"
            continue
        if value is not None:
            answers[question.id] = value
    return raw, answers, errors


def _refusal(ctx: Returns, record_: ReturnRecord, now: datetime) -> str | None:
    """Why this return cannot be made now, if it cannot."""
    if not ctx.implementing:
        return "Returns can no longer be made: implementation has ended."
    status = status_of(record_, ctx.prospectus, now)
    if not status.open:
        return f"This return cannot be made yet. {status.detail}."
    return None


def _again(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Returns,
    record_: ReturnRecord,
    raw: dict[str, Any],
    now: datetime,
    shown: drafts.Base,
) -> Callable[..., Response]:
    """`again(errors, status=200, problem=None)`: the form again, with what was typed, its
    errors in the form's order, and the base it came with."""

    def again(errors: dict[str, str], status: int = 200, problem: str | None = None) -> Response:
        ordered = {q.id: errors[q.id] for q in ctx.form.questions() if q.id in errors}
        return _render_form(
            request,
            pages,
            session,
            ctx,
            record_,
            raw,
            ordered,
            now=now,
            status_code=status,
            problem=problem,
            shown=shown,
        )

    return again


@dataclass(frozen=True)
class ReturnPost:
    """A return form's post, as read on the event loop."""

    user: User
    application_id: int
    period: int
    form: FormData
    now: datetime


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
    ctx = _context(session, post.user, post.application_id)
    record_ = ctx.record(post.period)
    now = post.now
    if record_.submitted_at is not None:
        return RedirectResponse(f"{ctx.base}/{post.period}/submitted", status_code=303)
    posted = post.form
    shown = forms_ui.read_base(posted)
    raw, answers, errors = _read(ctx, posted)
    action = str(posted.get("action") or "check")

    again = _again(request, pages, session, ctx, record_, raw, now, shown)

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
    refusal = _refusal(ctx, record_, now)
    if refusal:
        return again({}, 400, refusal)
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
    return pages.render(
        request,
        "application/return-check.html",
        **ctx.page(
            record=record_,
            period_name=ctx.period_name(record_),
            sections=_summary(session, ctx.form, answers),
            hidden=hidden,
            payment=_money(payment) if payment is not None else None,
        ),
    )


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
            return _conflict_page(
                request, pages, session, ctx, record_, raw, asked, shown, 400, missing, choices
            )

    again = _again(request, pages, session, ctx, record_, raw, post.now, shown)

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
        return _conflict(request, pages, session, ctx, record_, raw, conflict)
    except CbflowError as exc:
        return again({}, 400, f"Your answers were not saved: {exc}.")
    except BUSY_ERRORS:
        session.rollback()
        return again({}, 503, BUSY)
    if post.form.get("action") == "resolve":
        return RedirectResponse(f"{ctx.base}/{record_.period}", status_code=303)
    return RedirectResponse(ctx.base, status_code=303)


def _conflict(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Returns,
    record_: ReturnRecord,
    raw: dict[str, Any],
    conflict: EditConflict,
) -> Response:
    """The page that asks whose answers to keep, from the draft as it is now: the person's own
    answers where they changed them, the colleague's where they did not."""
    stored = implementation.stored_draft(record_)
    unseen = {c.question_id: c.theirs for c in conflict.unseen}
    for question in ctx.form.questions():
        if question.id in unseen:
            raw[question.id] = forms_ui.to_raw(question, unseen[question.id])
    shown = drafts.Base(stored.version, drafts.digests(stored.answers, list(raw)))
    asked = [c.question_id for c in conflict.changes]
    return _conflict_page(request, pages, session, ctx, record_, raw, asked, shown, 409)


def _conflict_page(
    request: Request,
    pages: Pages,
    session: Session,
    ctx: Returns,
    record_: ReturnRecord,
    raw: dict[str, Any],
    asked: list[str],
    shown: drafts.Base,
    status_code: int,
    errors: dict[str, str] | None = None,
    choices: dict[str, Any] | None = None,
) -> Response:
    view = conflict_view(
        session,
        ctx.prospectus,
        list(ctx.form.questions()),
        implementation.stored_draft(record_),
        raw,
        asked,
        shown,
        errors=errors,
        choices=choices,
    )
    return pages.render(
        request,
        "application/conflict.html",
        status_code=status_code,
        **ctx.page(
            caption=f"Return for period {record_.period}: {ctx.period_name(record_)}",
            title=f"Return for period {record_.period}: {ctx.round.title}",
            action=f"{ctx.base}/{record_.period}",
            back={"text": "Back to your returns", "href": ctx.base},
            **view,
        ),
    )


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
    ctx = _context(session, post.user, post.application_id)
    record_ = ctx.record(post.period)
    confirmation = RedirectResponse(f"{ctx.base}/{post.period}/submitted", status_code=303)
    if record_.submitted_at is not None:  # sent again: the first submission stands
        return confirmation
    now = post.now
    shown = forms_ui.read_base(post.form)
    raw, answers, errors = _read(ctx, post.form)

    again = _again(request, pages, session, ctx, record_, raw, now, shown)

    refusal = _refusal(ctx, record_, now)
    if refusal:
        return again({}, 400, refusal)
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
            return _conflict(request, pages, session, ctx, record_, raw, conflict)
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
    ctx = _context(session, user, application_id)
    record_ = ctx.record(period)
    if record_.submitted_at is None:
        return RedirectResponse(f"{ctx.base}/{period}", status_code=303)
    payment = record_.payment_pence if ctx.payments else None
    return pages.render(
        request,
        "application/return-submitted.html",
        **ctx.page(
            record=record_,
            period_name=ctx.period_name(record_),
            submitted_at=local_time(record_.submitted_at, ctx.prospectus),
            late=record_.submitted_at > record_.due,
            payment=_money(payment) if payment is not None else None,
            sections=_summary(session, ctx.form, record_.answers),
        ),
    )
