"""An application's returns: each period with its due date and status, its milestones, and its
grant offer's acceptance."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cbflow.formatting import local_deadline
from cbflow.models import MilestoneRecord
from cbflow.services import implementation, offers, replication
from cbflow.services.offers import Acceptance
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.returns.shared import (
    Applicant,
    ReturnsCommon,
    Status,
    context_of,
    page_of,
    status_of,
)

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class ReturnRow:
    period: int
    dates: str
    due: str
    status: Status
    href: str
    action: str | None  # what its link says, if it has one


@dataclass(frozen=True)
class ReturnsPage(ReturnsCommon):
    rows: list[ReturnRow]
    milestones: list[MilestoneRecord]
    offered: bool
    acceptance: Acceptance | None
    model: str | None  # the place's model's page on its implementation pages, once it has one
    can_version: bool  # a milestone met has no version: one can be published
    newer_model: replication.NewerVersion | None  # of the model this place adopted
    followed: bool  # other councils may follow the place: it chooses to share its returns or not


@router.get("/{application_id}/returns")
def returns_list(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    ctx = context_of(request, session, user, application_id)
    now = clock()
    rows = []
    for record_ in ctx.records:
        actions = ctx.actions(record_, now)
        action: str | None = None
        if actions.can_view:
            action = "View"
        elif actions.can_make:
            action = "Make return"
        rows.append(
            ReturnRow(
                period=record_.period,
                dates=ctx.period_name(record_),
                due=local_deadline(record_.due, ctx.prospectus),
                status=status_of(record_, ctx.prospectus, actions),
                href=ctx.url("return_form", period=record_.period),
                action=action,
            )
        )
    page = page_of(
        ReturnsPage,
        ctx.page(),
        rows=rows,
        milestones=implementation.milestones_of(session, ctx.application),
        offered=offers.offer_actions(ctx.application).offered,
        acceptance=offers.acceptance(session, ctx.application, ctx.prospectus),
        model=ctx.url("model_versions")
        if ctx.prospectus.stages.replication and replication.latest_model(session, ctx.application)
        else None,
        can_version=replication.version_refusal(session, ctx.application) is None,
        newer_model=replication.newer_version(session, ctx.application),
        followed=ctx.prospectus.stages.replication is not None,
    )
    return pages.show(request, "application/returns.html", page)
