"""A place's model, from its implementation pages: every version published, and "Publish a new
version of your model" once it has met a milestone that has no version (cbflow.web.versioning).
The application's own councils only: anything else is 404."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.models import Application, Round
from cbflow.services import replication, rounds
from cbflow.web.applications import own_application
from cbflow.web.clarifying import mail_after_all
from cbflow.web.deps import ClockDep, FormDep, PagesDep, SessionDep, SettingsDep
from cbflow.web.returns.shared import Applicant
from cbflow.web.templating import Pages, path_for
from cbflow.web.versioning import VersionForm, VersionRow, publish, version_form, version_rows

router = APIRouter(prefix="/applications")

NOTICE = "model_version_notice"


@dataclass(frozen=True)
class VersionPage:
    application: Application
    round: Round
    place: str
    versions: tuple[VersionRow, ...]
    form: VersionForm
    notice: str | None  # what the last post did


def _place(session: SessionDep, user: Applicant, application_id: int) -> Application:
    """The council's own selected place, in a round that publishes its places as models."""
    application = own_application(session, user, application_id)
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    if rounds.prospectus_of(round_).stages.replication is None:
        raise HTTPException(status_code=404)
    if replication.latest_model(session, application) is None:
        raise HTTPException(status_code=404)
    return application


def _render(
    request: Request,
    pages: Pages,
    session: SessionDep,
    application: Application,
    form: VersionForm,
    status_code: int = 200,
) -> Response:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    latest = replication.latest_model(session, application)
    assert latest is not None
    page = VersionPage(
        application=application,
        round=round_,
        place=latest.bundle["council"]["name"],
        versions=version_rows(session, application),
        form=form,
        notice=request.session.pop(NOTICE, None) if status_code == 200 else None,
    )
    return pages.show(request, "application/model-version.html", page, status_code)


@router.get("/{application_id}/model")
def model_versions(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
) -> Response:
    application = _place(session, user, application_id)
    return _render(request, pages, session, application, version_form(session, application))


@router.post("/{application_id}/model")
def publish_model_version(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    posted: FormDep,
) -> Response:
    application = _place(session, user, application_id)
    done = publish(session, settings, application, posted, actor=user.email, now=clock())
    if done.model is None:
        assert done.form is not None
        return _render(request, pages, session, application, done.form, done.status)
    request.session[NOTICE] = f"Version {done.model.version} of your model is published."
    back = path_for(request, "model_versions", application_id=application_id)
    return mail_after_all(RedirectResponse(back, status_code=303), done.mail, settings)
