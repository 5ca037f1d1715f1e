"""Replication: publishing a completed place as a model, and the lineage of its adopters."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup

from cbflow.charts import line_chart
from cbflow.flowlist import PUBLISH_MODEL
from cbflow.formatting import local_time
from cbflow.models import (
    PublishedModel,
)
from cbflow.services import (
    replication,
    rounds,
)
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    PagesDep,
    SessionDep,
    ShortField,
)
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.templating import path_for

router = stage_router()


@dataclass(frozen=True)
class AdoptionRow:
    adoption: replication.Adoption
    started: str
    submitted: str
    state: str
    route: str = ""  # how it adopted: the rolling route, or into a round
    typed: str = ""  # "3 answers typed; 8.5 minutes from starting to submitting"


@dataclass(frozen=True, kw_only=True)
class LineagePage(RoundPage):
    report: replication.Lineage
    adoptions: list[AdoptionRow]
    chart: Markup | None


ROUTES = {"adoption": "The rolling route", "competitive": "Into a round"}


def _typed(adoption: replication.Adoption) -> str:
    """What the adoption took: the answers typed, and minutes from starting to submitting."""
    text = f"{adoption.typed} answer{'' if adoption.typed == 1 else 's'} typed"
    seconds = adoption.seconds_to_submit
    if seconds is not None:
        text += f"; {seconds / 60:.1f} minutes from starting to submitting"
    return text


@router.get("/rounds/{slug}/models/{model_id}/lineage")
def lineage_page(
    request: Request,
    slug: str,
    model_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    """Who adopted a published model, how their applications stand, and how they compare."""
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    model = session.get(PublishedModel, model_id)
    if model is None or model.round_id != round_.id:
        raise HTTPException(status_code=404)
    report = replication.lineage(session, model)
    periods = sorted(set(report.original).union(*(a.results for a in report.adoptions)))
    series = {
        f"{report.place.name} (the model)": [
            (f"Return {p}", report.original[p]) for p in periods if p in report.original
        ]
    }
    for adoption in report.adoptions:
        if adoption.results:
            series[adoption.council.name] = [
                (f"Return {p}", adoption.results[p]) for p in periods if p in adoption.results
            ]
    return pages.show(
        request,
        "staff/lineage.html",
        LineagePage(
            **round_header(request, round_, prospectus, "implementation"),
            report=report,
            adoptions=[
                AdoptionRow(
                    adoption=a,
                    started=local_time(a.started_at, prospectus),
                    submitted=local_time(a.submitted_at, prospectus) if a.submitted_at else "",
                    state=APP_STATES.get(a.application.state, a.application.state),
                    route=ROUTES.get(a.route, a.route),
                    typed=_typed(a),
                )
                for a in report.adoptions
            ],
            chart=line_chart(report.measure, series) if report.measure and periods else None,
        ),
    )


@router.post("/rounds/{slug}/implementation/publish/{application_id}")
def publish_model(
    slug: str, application_id: int, desk: DeskDep, nonce: ShortField = ""
) -> Response:
    round_ = round_or_404(desk.session, slug)
    application = application_or_404(desk.session, round_, application_id)
    actions = replication.publish_actions(application, rounds.prospectus_of(round_))
    back = path_for(desk.request, "implementation_page", slug=slug)
    if not actions.can_publish:
        return desk.refuse(PUBLISH_MODEL, actions.refusal, back)
    return desk.start(
        PUBLISH_MODEL,
        {"reference": application.reference},
        round_=round_,
        nonce=nonce,
        back=back,
    )
