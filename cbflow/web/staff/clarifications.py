"""Staff ask a council for clarification of named answers of its application under assessment,
as an assessor may; the staff page of the application lists its requests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import ValidationFailed
from cbflow.formatting import local_deadline
from cbflow.models import Application, Round
from cbflow.prospectus import Prospectus
from cbflow.services import clarifications, rounds
from cbflow.services.clarifications import ClarificationRefused
from cbflow.services.partnerships import place_of
from cbflow.web.clarifying import (
    AskForm,
    RequestView,
    ask,
    ask_form,
    mail_after_all,
    read_ask,
    request_views,
    schedule,
)
from cbflow.web.deps import ClockDep, FormDep, PagesDep, SessionDep, SettingsDep
from cbflow.web.staff.shared import (
    RoundPage,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.templating import Pages, path_for
from cbflow.wording import opening

router = stage_router()

NOTICE = "staff_clarification_notice"


@dataclass(frozen=True, kw_only=True)
class StaffClarifyPage(RoundPage):
    application: Application
    place: str
    form: AskForm
    can_ask: bool
    problem: str | None


@dataclass(frozen=True)
class StaffRequests:
    """An application's clarification requests on its staff page."""

    views: tuple[RequestView, ...]  # the latest first
    can_ask: bool  # under assessment: one may be asked
    notice: str | None  # what the last ask did


def requests_of(
    request: Request, session: Session, application: Application, prospectus: Prospectus
) -> StaffRequests:
    notice = request.session.pop(NOTICE, None)
    return StaffRequests(
        views=request_views(
            session, prospectus, clarifications.of_application(session, application)
        ),
        can_ask=clarifications.under_assessment(application, prospectus),
        notice=notice if isinstance(notice, str) else None,
    )


def _render(
    request: Request,
    pages: Pages,
    round_: Round,
    prospectus: Prospectus,
    application: Application,
    place: str,
    form: AskForm,
    status_code: int = 200,
    problem: str | None = None,
) -> Response:
    page = StaffClarifyPage(
        **round_header(request, round_, prospectus, "applications"),
        application=application,
        place=place,
        form=form,
        can_ask=clarifications.under_assessment(application, prospectus),
        problem=problem,
    )
    return pages.show(request, "staff/clarify.html", page, status_code)


@router.get("/rounds/{slug}/applications/{application_id}/clarify")
def staff_clarify_page(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    application = application_or_404(session, round_, application_id)
    place = place_of(session, application).name
    return _render(request, pages, round_, prospectus, application, place, ask_form(prospectus))


@router.post("/rounds/{slug}/applications/{application_id}/clarify")
def staff_ask_clarification(
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
    prospectus = rounds.prospectus_of(round_)
    application = application_or_404(session, round_, application_id)
    place = place_of(session, application).name
    asked = read_ask(posted, prospectus)
    now = clock()
    try:
        clarification = ask(session, application, user, asked, now)
    except ValidationFailed as failed:
        form = ask_form(prospectus, asked, failed.errors)
        return _render(request, pages, round_, prospectus, application, place, form, 400)
    except ClarificationRefused as exc:
        form = ask_form(prospectus, asked)
        problem = opening(f"{exc}.")
        return _render(request, pages, round_, prospectus, application, place, form, 409, problem)
    mail = clarifications.tell(session, settings, clarification, "asked", now=now)
    session.commit()  # asked before its runs are scheduled: a run then finds it
    unscheduled = schedule(settings, clarification, slug)
    request.session[NOTICE] = unscheduled or (
        f"You have asked {place} for clarification. It must answer by "
        f"{local_deadline(clarification.answer_by, prospectus)}."
    )
    back = path_for(request, "application_page", slug=slug, application_id=application_id)
    return mail_after_all(RedirectResponse(back, status_code=303), mail, settings)
