"""Replication: publishing a completed place as a model, a version of a place's model at a
milestone for it (cbflow.web.versioning), and the lineage of its adopters."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from cbflow.charts import line_chart
from cbflow.flowlist import PUBLISH_MODEL
from cbflow.formatting import local_time
from cbflow.models import (
    Application,
    PublishedModel,
    Round,
)
from cbflow.services import (
    replication,
    rounds,
)
from cbflow.web.applications import APP_STATES
from cbflow.web.clarifying import mail_after_all
from cbflow.web.deps import (
    ClockDep,
    FormDep,
    PagesDep,
    SessionDep,
    SettingsDep,
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
from cbflow.web.templating import Pages, path_for
from cbflow.web.versioning import VersionForm, VersionRow, publish, version_form, version_rows

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
    versions: list[VersionRow]
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
            versions=list(
                version_rows(session, _application(session, round_, model.application_id))
            ),
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


# ---------------------------------------------------------------------------------------------
# a version of a place's model at a milestone, published by staff for the place


@dataclass(frozen=True, kw_only=True)
class StaffVersionPage(RoundPage):
    application: Application
    place: str
    versions: tuple[VersionRow, ...]
    form: VersionForm


def _application(session: SessionDep, round_: Round, application_id: int) -> Application:
    application = application_or_404(session, round_, application_id)
    if replication.latest_model(session, application) is None:
        raise HTTPException(status_code=404)
    return application


def _render_version(
    request: Request,
    pages: Pages,
    session: SessionDep,
    round_: Round,
    application: Application,
    form: VersionForm,
    status_code: int = 200,
) -> Response:
    latest = replication.latest_model(session, application)
    assert latest is not None
    page = StaffVersionPage(
        **round_header(request, round_, rounds.prospectus_of(round_), "implementation"),
        application=application,
        place=latest.bundle["council"]["name"],
        versions=version_rows(session, application),
        form=form,
    )
    return pages.show(request, "staff/model-version.html", page, status_code)


@router.get("/rounds/{slug}/implementation/{application_id}/version")
def staff_model_version(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    application = _application(session, round_, application_id)
    form = version_form(session, application)
    return _render_version(request, pages, session, round_, application, form)


@router.post("/rounds/{slug}/implementation/{application_id}/version")
def staff_publish_version(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    user: Staff,
    posted: FormDep,
) -> Response:
    round_ = round_or_404(session, slug)
    application = _application(session, round_, application_id)
    done = publish(session, settings, application, posted, actor=user.email, now=clock())
    if done.model is None:
        assert done.form is not None
        return _render_version(request, pages, session, round_, application, done.form, done.status)
    back = path_for(request, "implementation_page", slug=slug)
    return mail_after_all(RedirectResponse(back, status_code=303), done.mail, settings)
