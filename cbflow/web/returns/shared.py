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
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlmodel import Session
from starlette.datastructures import FormData

from cbflow.formatting import local_deadline, local_time, long_date
from cbflow.forms import display_answer, is_shown
from cbflow.models import Application, ReturnRecord, Round, User
from cbflow.prospectus import Form, Prospectus
from cbflow.services import councils as councils_service
from cbflow.services import drafts, implementation, rounds
from cbflow.services.drafts import EditConflict
from cbflow.services.implementation import ReturnActions
from cbflow.web import forms_ui
from cbflow.web.answers import conflict_view
from cbflow.web.applications import own_application
from cbflow.web.auth import require_role
from cbflow.web.templating import Pages, path_for

NOT_SUBMITTED = (
    "Your return was not submitted: the service is busy. Wait a moment, then select Continue again."
)

Applicant = Annotated[User, require_role("applicant")]
P = TypeVar("P")


@dataclass
class Status:
    """A return's status: words first, the tag's colour only repeats them."""

    text: str
    tag: str
    detail: str
    open: bool  # can be made now


def status_of(record_: ReturnRecord, prospectus: Prospectus, actions: ReturnActions) -> Status:
    """The words for what implementation.return_actions decided of the return."""
    due = local_deadline(record_.due, prospectus)
    if actions.submitted:
        assert record_.submitted_at is not None
        late = record_.submitted_at > record_.due
        when = local_time(record_.submitted_at, prospectus)
        return Status(
            "Submitted late" if late else "Submitted",
            "govuk-tag--green",
            f"Submitted at {when}",
            False,
        )
    if actions.not_yet_open:
        detail = f"Opens on {long_date(actions.opens.date())}"
        return Status("Not yet open", "govuk-tag--grey", detail, actions.open)
    if actions.overdue:
        return Status("Overdue", "govuk-tag--red", f"Was due by {due}", actions.open)
    return Status("Due", "govuk-tag--yellow", f"Due by {due}", actions.open)


class Returns:
    """An application's returns: its round, prospectus and the returns form."""

    def __init__(self, request: Request, session: Session, application: Application) -> None:
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        self.prospectus = rounds.prospectus_of(round_)
        stage = self.prospectus.stages.implementation
        readable = implementation.returns_readable(application)
        if not readable or stage is None or stage.returns is None:
            raise HTTPException(status_code=404)
        self.request = request
        self.application = application
        self.round = round_
        self.form: Form = stage.returns.form
        self.records = implementation.returns_of(session, application)
        self.payments = bool(stage.payments)
        self.place = councils_service.council_names(session).get(
            application.council_code, application.council_code
        )

    def url(self, name: str, /, **params: object) -> str:
        """The address of one of the application's returns pages."""
        return path_for(self.request, name, application_id=self.application.id, **params)

    def actions(self, record_: ReturnRecord, now: datetime) -> ReturnActions:
        """What the council may do with the return now."""
        return implementation.return_actions(self.application, record_, self.prospectus, now)

    def status(self, record_: ReturnRecord, now: datetime) -> Status:
        return status_of(record_, self.prospectus, self.actions(record_, now))

    @property
    def implementing(self) -> bool:
        """Returns are being made (once implementation ends they are only read)."""
        return implementation.returns_being_made(self.application)

    def record(self, period: int) -> ReturnRecord:
        for record_ in self.records:
            if record_.period == period:
                return record_
        raise HTTPException(status_code=404)

    def page(self) -> ReturnsCommon:
        return ReturnsCommon(
            application=self.application,
            round=self.round,
            place=self.place,
            implementing=self.implementing,
        )

    def period_name(self, record_: ReturnRecord) -> str:
        return f"{long_date(record_.period_start)} to {long_date(record_.period_end)}"


def context_of(request: Request, session: Session, user: User, application_id: int) -> Returns:
    return Returns(request, session, own_application(session, user, application_id))


@dataclass(frozen=True)
class ReturnsCommon:
    """What every returns page shows."""

    application: Application
    round: Round
    place: str
    implementing: bool


def page_of(cls: type[P], common: ReturnsCommon, **extra: Any) -> P:
    """A returns page of type `cls`: what every returns page shows, and its own."""
    shared = {f.name: getattr(common, f.name) for f in fields(common)}
    return cls(**shared, **extra)


@dataclass(frozen=True)
class ReturnFormPage(ReturnsCommon):
    record: ReturnRecord
    period_name: str
    status: Status
    sections: list[dict[str, Any]]  # each section with its fields
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    editable: bool  # the return can be made now: the form is shown
    changeable: bool  # a table's rows can be added and removed (fields.html)
    answers: list[dict[str, Any]]  # once submitted, its answers as summary lists
    shown: dict[str, str]  # the hidden fields that carry the draft's version it shows


def summary(session: Session, form: Form, answers: dict[str, Any]) -> list[dict[str, Any]]:
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


def render_form(
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
    shown = shown or shown_now(ctx, record_)
    sections = [
        {
            "section": section,
            "fields": forms_ui.section_fields(section, raw, errors, councils),
        }
        for section in ctx.form.sections
    ]
    anchors = {q.id: forms_ui.error_anchor(q) for q in ctx.form.questions()}
    actions = ctx.actions(record_, now)
    page = page_of(
        ReturnFormPage,
        ctx.page(),
        record=record_,
        period_name=ctx.period_name(record_),
        status=status_of(record_, ctx.prospectus, actions),
        sections=sections,
        errors=errors,
        error_list=[
            {"text": message, "href": f"#{anchors.get(qid, qid)}"}
            for qid, message in errors.items()
        ],
        problem=problem,
        editable=actions.can_make,
        # rows can be added while the form can be sent
        changeable=actions.can_make,
        answers=summary(session, ctx.form, record_.answers) if actions.submitted else [],
        shown=forms_ui.carried(shown),
    )
    return pages.show(request, "application/return-form.html", page, status_code)


def shown_now(ctx: Returns, record_: ReturnRecord) -> drafts.Base:
    """What the return's form drawn now shows: the draft's version and answers."""
    stored = implementation.stored_draft(record_)
    ids = [q.id for q in ctx.form.questions()]
    return drafts.Base(stored.version, drafts.digests(stored.answers, ids))


def read_posted(
    ctx: Returns, posted: FormData
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
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


def refusal(ctx: Returns, record_: ReturnRecord, now: datetime) -> str | None:
    """Why this return cannot be made now, if it cannot."""
    actions = ctx.actions(record_, now)
    if not actions.implementing:
        return "Returns can no longer be made: implementation has ended."
    if not actions.can_make:
        return (
            f"This return cannot be made yet. {status_of(record_, ctx.prospectus, actions).detail}."
        )
    return None


def again_for(
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
        return render_form(
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


def conflict_page_from(
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
    return conflict_page(request, pages, session, ctx, record_, raw, asked, shown, 409)


def conflict_page(
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
        caption=f"Return for period {record_.period}: {ctx.period_name(record_)}",
        title=f"Return for period {record_.period}: {ctx.round.title}",
        action=ctx.url("check_return", period=record_.period),
        back={"text": "Back to your returns", "href": ctx.url("returns_list")},
        **view,
    )
