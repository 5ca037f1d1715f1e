"""An assessor asks the council for clarification of named answers of the application they
assess, with a date to answer by; the scoring page then shows the request, and once answered
the original and changed answers side by side."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.errors import ValidationFailed
from cbflow.formatting import local_deadline
from cbflow.services import clarifications
from cbflow.services.clarifications import ClarificationRefused
from cbflow.web.assessor.shared import NOTICE, ApplicationPage, Assessor, Work
from cbflow.web.clarifying import AskForm, ask, ask_form, mail_after_all, read_ask, schedule
from cbflow.web.deps import ClockDep, FormDep, PagesDep, SessionDep, SettingsDep
from cbflow.web.templating import Pages
from cbflow.wording import opening

router = APIRouter(prefix="/assess")


@dataclass(frozen=True)
class ClarifyPage(ApplicationPage):
    form: AskForm
    can_ask: bool  # the application is being assessed
    problem: str | None


def _render(
    request: Request,
    pages: Pages,
    work: Work,
    form: AskForm,
    status_code: int = 200,
    problem: str | None = None,
) -> Response:
    page = ClarifyPage(
        **work.header(),
        form=form,
        can_ask=clarifications.under_assessment(work.application, work.prospectus),
        problem=problem,
    )
    return pages.show(request, "assess/clarify.html", page, status_code)


@router.get("/{application_id}/clarify")
def clarify_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    work = Work(session, user, application_id)
    return _render(request, pages, work, ask_form(work.prospectus))


@router.post("/{application_id}/clarify")
def ask_clarification(
    request: Request,
    application_id: int,
    user: Assessor,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    posted: FormDep,
) -> Response:
    work = Work(session, user, application_id)
    asked = read_ask(posted, work.prospectus)
    now = clock()
    try:
        clarification = ask(session, work.application, user, asked, now)
    except ValidationFailed as failed:
        form = ask_form(work.prospectus, asked, failed.errors)
        return _render(request, pages, work, form, 400)
    except ClarificationRefused as exc:
        form = ask_form(work.prospectus, asked)
        return _render(request, pages, work, form, 409, problem=opening(f"{exc}."))
    mail = clarifications.tell(session, settings, clarification, "asked", now=now)
    session.commit()  # asked before its runs are scheduled: a run then finds it
    unscheduled = schedule(settings, clarification, work.round.slug)
    request.session[NOTICE] = unscheduled or (
        f"You have asked {work.place.name} for clarification. It must answer by "
        f"{local_deadline(clarification.answer_by, work.prospectus)}: you will be e-mailed "
        "when it does."
    )
    return mail_after_all(RedirectResponse(work.address(request), status_code=303), mail, settings)
