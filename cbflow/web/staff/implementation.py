"""Implementation: the places' returns, milestones and payments; starting implementation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from cbflow.charts import bar_chart
from cbflow.forms import pence_to_money
from cbflow.lifecycle import FUNDED, AppState, RoundState
from cbflow.models import (
    ReturnRecord,
)
from cbflow.prospectus import Prospectus
from cbflow.services import (
    implementation,
    replication,
    rounds,
)
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.staff.shared import (
    DeskDep,
    Staff,
    council_names,
    pounds,
    round_context,
    round_or_404,
    runs_of,
    started_runs,
)

router = APIRouter()


def _return_status(record_: ReturnRecord, now: datetime, prospectus: Prospectus) -> str:
    if record_.submitted_at is not None:
        return "late" if record_.submitted_at > record_.due else "submitted"
    opens = datetime.combine(record_.period_end, datetime.min.time(), tzinfo=prospectus.zone)
    if now > record_.due:
        return "overdue"
    return "due" if now >= opens else "not yet due"


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
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    stage = prospectus.stages.implementation
    if stage is None:
        raise HTTPException(status_code=404)
    now = clock()
    names = council_names(session)
    places = rounds.applications_of(session, round_, *FUNDED)
    rows: list[dict[str, Any]] = []
    periods: list[str] = []
    payments: list[tuple[str, float]] = []
    for application in places:
        returns = implementation.returns_of(session, application)
        if not periods:
            periods = [f"{r.period_start:%b %Y} to {r.period_end:%b %Y}" for r in returns]
        paid = sum(r.payment_pence or 0 for r in returns)
        payments.append((names.get(application.council_code, ""), float(pence_to_money(paid))))
        rows.append(
            {
                "application": application,
                "council": names.get(application.council_code, application.council_code),
                "state": APP_STATES.get(application.state, application.state),
                "returns": [
                    {"record": r, "status": _return_status(r, now, prospectus)} for r in returns
                ],
                "milestones": implementation.milestones_of(session, application),
                "paid": pounds(paid) if stage.payments else "",
                "model": replication.latest_model(session, application),
                "publishable": application.state == AppState.COMPLETED
                and prospectus.stages.replication is not None,
            }
        )
    overdue = sum(1 for r in rows for x in r["returns"] if x["status"] == "overdue")
    chart = (
        bar_chart("Paid by results so far", payments, unit="£")
        if stage.payments and payments
        else None
    )
    state = RoundState(round_.state)
    return pages.render(
        request,
        "staff/implementation.html",
        **round_context(
            round_,
            prospectus,
            "implementation",
            rows=rows,
            periods=periods,
            overdue=overdue,
            chart=chart,
            can_start=state == RoundState.DECIDED,
            runs=runs_of(
                started_runs(session, settings, round_),
                "start-implementation",
                "returns-cycle",
                "publish-model",
                "complete-round",
            ),
        ),
    )


@router.post("/rounds/{slug}/implementation/start")
def start_implementation(slug: str, desk: DeskDep, nonce: ShortField = "") -> Response:
    round_ = round_or_404(desk.session, slug)
    if round_.state != RoundState.DECIDED:
        return desk.refuse(
            "start-implementation",
            "implementation starts once the decisions are released, and only once",
            f"/staff/rounds/{slug}/implementation",
        )
    return desk.start(
        "start-implementation",
        {"slug": slug},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/implementation",
    )
