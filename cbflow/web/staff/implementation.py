"""Implementation: the places' returns, milestones and payments; starting implementation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session

from cbflow.charts import bar_chart
from cbflow.errors import ValidationFailed
from cbflow.flowlist import COMPLETE_ROUND, PUBLISH_MODEL, RETURNS_CYCLE, START_IMPLEMENTATION
from cbflow.formatting import money_or_blank, pence_to_money
from cbflow.lifecycle import FUNDED
from cbflow.models import (
    Application,
    MilestoneRecord,
    PublishedModel,
    ReturnRecord,
    Round,
)
from cbflow.prospectus import Prospectus
from cbflow.services import (
    implementation,
    replication,
    rounds,
)
from cbflow.services.implementation import ReturnStatus
from cbflow.settings import Settings
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.staff.places import place_names
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    RunRow,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    runs_of,
    stage_router,
    started_runs,
)
from cbflow.web.templating import Pages, path_for

router = stage_router()


# how each return's status shows: its words and its tag's colour
RETURN_TAGS = {
    ReturnStatus.OVERDUE: ("Overdue", "govuk-tag--red"),
    ReturnStatus.SUBMITTED: ("Submitted", "govuk-tag--green"),
    ReturnStatus.LATE: ("Submitted late", "govuk-tag--yellow"),
    ReturnStatus.DUE: ("Due", "govuk-tag--blue"),
    ReturnStatus.NOT_YET_DUE: ("Not yet due", "govuk-tag--grey"),
}


@dataclass(frozen=True)
class ReturnCell:
    record: ReturnRecord
    status: ReturnStatus
    tag: dict[str, str]

    @classmethod
    def of(cls, record_: ReturnRecord, now: datetime, prospectus: Prospectus) -> ReturnCell:
        status = implementation.return_status(record_, now, prospectus)
        text, classes = RETURN_TAGS[status]
        return cls(record_, status, {"text": text, "classes": classes})


@dataclass(frozen=True)
class MilestoneCell:
    record: MilestoneRecord
    error: str  # why the day typed to mark it met was refused, or ""
    typed: str  # the day typed, shown again with its error

    @classmethod
    def of(cls, record_: MilestoneRecord, error: tuple[int, str, str] | None) -> MilestoneCell:
        if error is not None and error[0] == record_.id:
            return cls(record_, error[1], error[2])
        return cls(record_, "", "")


@dataclass(frozen=True)
class PlaceRow:
    application: Application
    council: str
    state: str
    returns: list[ReturnCell]
    milestones: list[MilestoneCell]
    paid: str  # paid by results so far ("" when the round pays no results)
    model: PublishedModel | None  # its latest published model
    actions: replication.PublishActions
    can_version: bool  # a milestone met has no version of its model yet


@dataclass(frozen=True, kw_only=True)
class ImplementationPage(RoundPage):
    actions: implementation.ImplementationActions
    rows: list[PlaceRow]
    periods: list[str]
    overdue: int
    chart: Markup | None
    runs: list[RunRow]


@router.get("/rounds/{slug}/implementation")
def implementation_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    return _render(request, session, settings, pages, round_or_404(session, slug), clock())


def _render(
    request: Request,
    session: Session,
    settings: Settings,
    pages: Pages,
    round_: Round,
    now: datetime,
    *,
    error: tuple[int, str, str] | None = None,  # a milestone's id, the error, the day typed
    status_code: int = 200,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    stage = prospectus.stages.implementation
    if stage is None:
        raise HTTPException(status_code=404)
    names = place_names(session, round_.id)
    places = rounds.applications_of(session, round_, *FUNDED)
    rows: list[PlaceRow] = []
    periods: list[str] = []
    payments: list[tuple[str, float]] = []
    for application in places:
        returns = implementation.returns_of(session, application)
        if not periods:
            periods = [f"{r.period_start:%b %Y} to {r.period_end:%b %Y}" for r in returns]
        paid = sum(r.payment_pence or 0 for r in returns)
        payments.append((names.of(application, ""), float(pence_to_money(paid))))
        rows.append(
            PlaceRow(
                application=application,
                council=names.of(application),
                state=APP_STATES.get(application.state, application.state),
                returns=[ReturnCell.of(r, now, prospectus) for r in returns],
                milestones=[
                    MilestoneCell.of(m, error)
                    for m in implementation.milestones_of(session, application)
                ],
                paid=money_or_blank(paid) if stage.payments else "",
                model=replication.latest_model(session, application),
                actions=replication.publish_actions(application, prospectus),
                can_version=replication.version_refusal(session, application) is None,
            )
        )
    overdue = sum(1 for r in rows for x in r.returns if x.status == ReturnStatus.OVERDUE)
    chart = (
        bar_chart("Paid by results so far", payments, unit="£")
        if stage.payments and payments
        else None
    )
    return pages.show(
        request,
        "staff/implementation.html",
        ImplementationPage(
            **round_header(request, round_, prospectus, "implementation"),
            actions=implementation.implementation_actions(round_),
            rows=rows,
            periods=periods,
            overdue=overdue,
            chart=chart,
            runs=runs_of(
                started_runs(session, settings, round_),
                START_IMPLEMENTATION,
                RETURNS_CYCLE,
                PUBLISH_MODEL,
                COMPLETE_ROUND,
            ),
        ),
        status_code,
    )


@router.post("/rounds/{slug}/implementation/start")
def start_implementation(slug: str, desk: DeskDep, nonce: ShortField = "") -> Response:
    round_ = round_or_404(desk.session, slug)
    actions = implementation.implementation_actions(round_)
    back = path_for(desk.request, "implementation_page", slug=slug)
    if not actions.can_start:
        return desk.refuse(START_IMPLEMENTATION, actions.start_refusal, back)
    return desk.start(START_IMPLEMENTATION, {"slug": slug}, round_=round_, nonce=nonce, back=back)


@router.post("/rounds/{slug}/implementation/milestones/{milestone_id}/met")
def mark_milestone_met(
    request: Request,
    slug: str,
    milestone_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    met_on: ShortField = "",
) -> Response:
    """Staff mark one of a place's milestones met, on the day it was met (audited)."""
    round_ = round_or_404(session, slug)
    milestone = session.get(MilestoneRecord, milestone_id)
    if milestone is None:
        raise HTTPException(status_code=404)
    application_or_404(session, round_, milestone.application_id)
    now = clock()
    typed = met_on.strip()[:10]
    try:
        day = date.fromisoformat(typed)
    except ValueError:
        problem = "Enter the day it was met as a date, for example 2012-07-06"
        return _render(
            request,
            session,
            settings,
            pages,
            round_,
            now,
            error=(milestone_id, problem, typed),
            status_code=400,
        )
    try:
        implementation.mark_met(session, milestone=milestone, met_on=day, actor=user.email, now=now)
    except ValidationFailed as failed:
        return _render(
            request,
            session,
            settings,
            pages,
            round_,
            now,
            error=(milestone_id, failed.errors["met_on"], typed),
            status_code=400,
        )
    except implementation.AlreadyMet as exc:
        return _render(
            request,
            session,
            settings,
            pages,
            round_,
            now,
            error=(milestone_id, str(exc), typed),
            status_code=409,
        )
    back = path_for(request, "implementation_page", slug=slug)
    return RedirectResponse(f"{back}#milestone-{milestone_id}", status_code=303)
